package canvas

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type testHost struct {
	h     *Host
	dir   string
	clock *fakeClock
	base  string
}

// startHost serves a Host on a loopback port.
func startHost(t *testing.T) *testHost {
	t.Helper()
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	dir := filepath.Join(state, "canvas")
	h, err := New(Options{Dir: dir, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	h.SetBaseURL("http://" + ln.Addr().String())
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testHost{h: h, dir: dir, clock: clock, base: h.BaseURL()}
}

type session struct {
	done chan struct{}
	url  string
	cap  Capability
}

func (th *testHost) session(t *testing.T, id string, from string) *session {
	t.Helper()
	s := &session{done: make(chan struct{})}
	c, err := th.h.Mint(Binding{Session: id, Node: "node-" + id, Remote: netip.MustParseAddr(from), Done: s.done})
	if err != nil {
		t.Fatal(err)
	}
	s.cap, s.url = c, ScopedURL(th.h.BaseURL(), c.Token)
	return s
}

// get fetches rawPath (sent exactly as given) from the source address.
func (th *testHost) get(t *testing.T, from, rawPath string) (int, http.Header, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", strings.TrimPrefix(th.base, "http://"))
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", rawPath, strings.TrimPrefix(th.base, "http://"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", rawPath, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// pathOf returns the path of an absolute http URL.
func pathOf(u string) string {
	rest := strings.TrimPrefix(u, "http://")
	return rest[strings.Index(rest, "/"):]
}

func TestServeAndCSP(t *testing.T) {
	th := startHost(t)
	if _, err := th.h.Write("main", "index.html", []byte("<html><body><h1>hi</h1></body></html>")); err != nil {
		t.Fatal(err)
	}
	if _, err := th.h.Write("main", "js/app.js", []byte("console.log(1)")); err != nil {
		t.Fatal(err)
	}
	s := th.session(t, "s1", "127.0.0.1")
	p := pathOf(s.url)
	code, hd, body := th.get(t, "127.0.0.1", p+"/__openclaw__/canvas/main/")
	if code != 200 || !strings.Contains(body, "<h1>hi</h1>") {
		t.Fatalf("index: %d %q", code, body)
	}
	if hd.Get("Content-Security-Policy") != CSP || !strings.Contains(CSP, "script-src 'self'") || strings.Contains(CSP, "unsafe-eval") {
		t.Fatalf("CSP = %q", hd.Get("Content-Security-Policy"))
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
		"Cache-Control": "no-store", "X-Frame-Options": "DENY"} {
		if hd.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, hd.Get(k), v)
		}
	}
	if hd.Get("Set-Cookie") != "" {
		t.Errorf("canvas set a cookie")
	}
	// The live-reload script is injected before </body>, same origin.
	if !strings.Contains(body, `<script src="`+p+`/__openclaw__/live-reload.js" defer></script></body>`) {
		t.Errorf("no live-reload script in %q", body)
	}
	code, hd, body = th.get(t, "127.0.0.1", p+"/__openclaw__/canvas/main/js/app.js")
	if code != 200 || body != "console.log(1)" || !strings.HasPrefix(hd.Get("Content-Type"), "text/javascript") {
		t.Fatalf("app.js: %d %q %q", code, hd.Get("Content-Type"), body)
	}
	code, _, body = th.get(t, "127.0.0.1", p+"/__openclaw__/live-reload.js")
	if code != 200 || !strings.Contains(body, "/__openclaw__/ws") {
		t.Fatalf("live-reload.js: %d", code)
	}
	// The canvas root redirects to the default agent's folder.
	code, hd, _ = th.get(t, "127.0.0.1", p+"/__openclaw__/canvas/")
	if code != http.StatusFound || hd.Get("Location") != p+"/__openclaw__/canvas/main/" {
		t.Fatalf("root: %d %q", code, hd.Get("Location"))
	}
	// Folders 0700, files 0600.
	if fi, err := os.Stat(filepath.Join(th.dir, "main")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("agent folder mode: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(th.dir, "main", "index.html")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v", fi.Mode(), err)
	}
}

// TestRefusals is attack-list row F8: without a live capability of this
// client nothing is served, and no path form leaves the agent's folder.
func TestRefusals(t *testing.T) {
	th := startHost(t)
	if _, err := th.h.Write("main", "index.html", []byte("<p>ok</p>")); err != nil {
		t.Fatal(err)
	}
	if _, err := th.h.Write("other", "index.html", []byte("<p>other</p>")); err != nil {
		t.Fatal(err)
	}
	// Something secret next to the canvas root, and a symlink to it.
	secret := filepath.Join(filepath.Dir(th.dir), "gateway.token")
	if err := os.WriteFile(secret, []byte("SECRET-TOKEN"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../gateway.token", filepath.Join(th.dir, "main", "rel.html")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(th.dir, "main", "abs.html")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..", filepath.Join(th.dir, "main", "up")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(th.dir, "main", ".hidden.html"), []byte("hidden"), 0o600); err != nil {
		t.Fatal(err)
	}

	s := th.session(t, "s1", "127.0.0.1")
	p := pathOf(s.url)
	if code, _, body := th.get(t, "127.0.0.1", p+"/__openclaw__/canvas/main/index.html"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("baseline: %d", code)
	}

	cases := []struct {
		name string
		from string
		path string
		want int
	}{
		{"no capability", "127.0.0.1", "/__openclaw__/canvas/main/index.html", 401},
		{"no capability ws", "127.0.0.1", "/__openclaw__/ws", 401},
		{"bare root", "127.0.0.1", "/", 401},
		{"empty capability", "127.0.0.1", "/__openclaw__/cap//__openclaw__/canvas/main/index.html", 401},
		{"unknown capability", "127.0.0.1", "/__openclaw__/cap/AAAAAAAAAAAAAAAAAAAAAA/__openclaw__/canvas/main/index.html", 401},
		{"capability as query only", "127.0.0.1", "/__openclaw__/canvas/main/index.html?oc_cap=" + s.cap.Token, 401},
		{"another address", "127.0.0.2", p + "/__openclaw__/canvas/main/index.html", 403},
		{"dotdot", "127.0.0.1", p + "/__openclaw__/canvas/main/../../gateway.token", 404},
		{"dotdot into other agent", "127.0.0.1", p + "/__openclaw__/canvas/main/../other/index.html", 404},
		{"encoded dotdot", "127.0.0.1", p + "/__openclaw__/canvas/main/%2e%2e/%2e%2e/gateway.token", 404},
		{"encoded dotdot upper", "127.0.0.1", p + "/__openclaw__/canvas/main/%2E%2E/other/index.html", 404},
		{"dotdot encoded slash", "127.0.0.1", p + "/__openclaw__/canvas/main/..%2f..%2fgateway.token", 404},
		{"dotdot encoded slash upper", "127.0.0.1", p + "/__openclaw__/canvas/main/..%2F..%2Fgateway.token", 404},
		{"double encoded", "127.0.0.1", p + "/__openclaw__/canvas/main/%252e%252e/%252e%252e/gateway.token", 404},
		{"double encoded slash", "127.0.0.1", p + "/__openclaw__/canvas/main/..%252f..%252fgateway.token", 404},
		{"backslash", "127.0.0.1", p + "/__openclaw__/canvas/main/..\\..\\gateway.token", 404},
		{"encoded backslash", "127.0.0.1", p + "/__openclaw__/canvas/main/..%5c..%5cgateway.token", 404},
		{"dot segment", "127.0.0.1", p + "/__openclaw__/canvas/main/./index.html", 404},
		{"empty segment", "127.0.0.1", p + "/__openclaw__/canvas/main//index.html", 404},
		{"nul", "127.0.0.1", p + "/__openclaw__/canvas/main/index.html%00.png", 404},
		{"overlong utf8 dot", "127.0.0.1", p + "/__openclaw__/canvas/main/%c0%ae%c0%ae/gateway.token", 404},
		{"agent dotdot", "127.0.0.1", p + "/__openclaw__/canvas/../gateway.token", 404},
		{"agent encoded dotdot", "127.0.0.1", p + "/__openclaw__/canvas/%2e%2e/gateway.token", 404},
		{"hidden file", "127.0.0.1", p + "/__openclaw__/canvas/main/.hidden.html", 404},
		{"symlink relative escape", "127.0.0.1", p + "/__openclaw__/canvas/main/rel.html", 404},
		{"symlink absolute escape", "127.0.0.1", p + "/__openclaw__/canvas/main/abs.html", 404},
		{"symlink dir escape", "127.0.0.1", p + "/__openclaw__/canvas/main/up/gateway.token", 404},
		{"missing file", "127.0.0.1", p + "/__openclaw__/canvas/main/nope.html", 404},
		{"unknown route", "127.0.0.1", p + "/etc/passwd", 404},
	}
	for _, tc := range cases {
		code, hd, body := th.get(t, tc.from, tc.path)
		if code != tc.want {
			t.Errorf("%s: GET %s from %s = %d, want %d (%q)", tc.name, tc.path, tc.from, code, tc.want, body)
		}
		if strings.Contains(body, "SECRET-TOKEN") {
			t.Errorf("%s: secret leaked", tc.name)
		}
		if hd.Get("Content-Security-Policy") != CSP {
			t.Errorf("%s: no CSP on a refusal", tc.name)
		}
	}
}

func TestCapabilityLifetime(t *testing.T) {
	th := startHost(t)
	if _, err := th.h.Write("main", "index.html", []byte("<p>ok</p>")); err != nil {
		t.Fatal(err)
	}
	page := "/__openclaw__/canvas/main/index.html"

	// Unused for longer than the TTL: expired.
	s := th.session(t, "s1", "127.0.0.1")
	th.clock.add(DefaultTTL + time.Second)
	if code, _, _ := th.get(t, "127.0.0.1", pathOf(s.url)+page); code != 401 {
		t.Fatalf("expired capability: %d, want 401", code)
	}

	// Used within the TTL: the lapse time slides.
	s2 := th.session(t, "s2", "127.0.0.1")
	for range 3 {
		th.clock.add(DefaultTTL - time.Minute)
		if code, _, _ := th.get(t, "127.0.0.1", pathOf(s2.url)+page); code != 200 {
			t.Fatalf("capability in use lapsed: %d", code)
		}
	}

	// Refreshed: the old token is dead, the new one works.
	old := s2.url
	c, err := th.h.Mint(Binding{Session: "s2", Remote: netip.MustParseAddr("127.0.0.1"), Done: s2.done})
	u := ScopedURL(th.base, c.Token)
	if err != nil || c.Token == s2.cap.Token {
		t.Fatalf("refresh: %v", err)
	}
	if code, _, _ := th.get(t, "127.0.0.1", pathOf(old)+page); code != 401 {
		t.Fatalf("refreshed-away capability: %d, want 401", code)
	}
	if code, _, _ := th.get(t, "127.0.0.1", pathOf(u)+page); code != 200 {
		t.Fatalf("refreshed capability: %d", code)
	}

	// The session ends: its capability dies with it, even unexpired.
	close(s2.done)
	if code, _, _ := th.get(t, "127.0.0.1", pathOf(u)+page); code != 401 {
		t.Fatalf("capability of an ended session: %d, want 401", code)
	}
	// Tokens are 128-bit and distinct.
	a, b := th.session(t, "a", "127.0.0.1"), th.session(t, "b", "127.0.0.1")
	if len(a.cap.Token) != 22 || a.cap.Token == b.cap.Token {
		t.Fatalf("tokens %q %q", a.cap.Token, b.cap.Token)
	}
	if _, err := th.h.Mint(Binding{Session: "x"}); err == nil {
		t.Fatal("Mint accepted an incomplete binding")
	}
}

func TestWriteValidation(t *testing.T) {
	th := startHost(t)
	for _, tc := range []struct {
		agent, path string
		want        error
	}{
		{"main", "../x.html", ErrBadPath},
		{"main", "a/../../x.html", ErrBadPath},
		{"main", "/abs.html", ErrBadPath},
		{"main", ".hidden.html", ErrBadPath},
		{"main", "a\\b.html", ErrBadPath},
		{"main", "a%2fb.html", ErrBadPath},
		{"main", "dir/", ErrBadPath},
		{"main", "a//b.html", ErrBadPath},
		{"main", "x.exe", ErrBadType},
		{"main", "noext", ErrBadType},
		{"Main", "x.html", ErrBadAgent},
		{"../main", "x.html", ErrBadAgent},
		{"", "x.html", ErrBadAgent},
		{"main", strings.Repeat("d/", 9) + "x.html", ErrBadPath},
	} {
		if _, err := th.h.Write(tc.agent, tc.path, []byte("x")); !errors.Is(err, tc.want) {
			t.Errorf("Write(%q, %q) = %v, want %v", tc.agent, tc.path, err, tc.want)
		}
	}
	if _, err := th.h.Write("main", "big.txt", make([]byte, DefaultMaxFileBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized write: %v", err)
	}
	// Writes never follow a symlink out of the root.
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(th.dir, "main"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(th.dir, "main", "out")); err != nil {
		t.Fatal(err)
	}
	if _, err := th.h.Write("main", "out/pwn.html", []byte("x")); err == nil {
		t.Error("write through an escaping symlink succeeded")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("file written outside the root: %v", ents)
	}
	// List and Remove.
	if _, err := th.h.Write("main", "a/b.css", []byte("p{}")); err != nil {
		t.Fatal(err)
	}
	files, err := th.h.List("main")
	if err != nil || len(files) != 1 || files[0].Path != "a/b.css" || files[0].Bytes != 3 {
		t.Fatalf("List = %+v, %v", files, err)
	}
	if ok, err := th.h.Remove("main", "a/b.css"); !ok || err != nil {
		t.Fatalf("Remove = %v, %v", ok, err)
	}
	if ok, err := th.h.Remove("main", "a/b.css"); ok || err != nil {
		t.Fatalf("second Remove = %v, %v", ok, err)
	}
}

func TestQuota(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "canvas")
	h, err := New(Options{Dir: dir, MaxAgentFiles: 2, MaxAgentBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.Write("main", "a.txt", []byte("12345")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write("main", "a.txt", []byte("1234567890")); err != nil {
		t.Fatalf("rewrite within quota: %v", err)
	}
	if _, err := h.Write("main", "b.txt", []byte("1")); !errors.Is(err, ErrQuota) {
		t.Fatalf("bytes quota: %v", err)
	}
	if _, err := h.Write("main", "a.txt", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write("main", "b.txt", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write("main", "c.txt", []byte("1")); !errors.Is(err, ErrQuota) {
		t.Fatalf("file quota: %v", err)
	}
	if _, err := h.Write("other", "c.txt", []byte("1")); err != nil {
		t.Fatalf("another agent's quota: %v", err)
	}
	// An open root is refused.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Dir: open}); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("open canvas dir: %v", err)
	}
}

func TestLiveReload(t *testing.T) {
	th := startHost(t)
	s := th.session(t, "s1", "127.0.0.1")
	wsURL := "ws" + strings.TrimPrefix(s.url, "http") + "/__openclaw__/ws"

	// Refused: no capability, another origin.
	if _, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(th.base, "http")+"/__openclaw__/ws", nil); err == nil || resp.StatusCode != 401 {
		t.Fatalf("upgrade without capability: %v", err)
	}
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {"http://evil.example"}}); err == nil || resp.StatusCode != 403 {
		t.Fatalf("upgrade from another origin: %v", err)
	}

	ws, _, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {th.base}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, err := th.h.Write("main", "index.html", []byte("<p>v2</p>")); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, msg, err := ws.ReadMessage()
	if err != nil || mt != websocket.TextMessage || string(msg) != "reload" {
		t.Fatalf("read = %d %q %v", mt, msg, err)
	}
	// A ping is answered.
	pong := make(chan string, 1)
	ws.SetPongHandler(func(d string) error { pong <- d; return nil })
	if err := ws.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	go func() { _, _, _ = ws.ReadMessage() }()
	select {
	case d := <-pong:
		if d != "hi" {
			t.Fatalf("pong %q", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	// The node session ends: the socket is closed with 1008.
	ws2, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	close(s.done)
	_ = ws2.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = ws2.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1008 {
		t.Fatalf("after session end: %v", err)
	}
}

// TestCloseEndsSockets: Close returns only after every socket has ended.
func TestCloseEndsSockets(t *testing.T) {
	th := startHost(t)
	s := th.session(t, "s1", "127.0.0.1")
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.url, "http")+"/__openclaw__/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- th.h.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Close did not return")
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1001 {
		t.Fatalf("after Close: %v", err)
	}
	if _, err := th.h.Write("main", "x.html", nil); !errors.Is(err, ErrHostClosing) {
		t.Fatalf("write after Close: %v", err)
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		dir  bool
		ok   bool
	}{
		{"main/", "main", true, true},
		{"main", "main", true, true},
		{"main/a/b.html", "main/a/b.html", false, true},
		{"main/a%20b.html", "main/a b.html", false, true},
		{"main/a/", "main/a", true, true},
		{"main/%2e%2e/x", "", false, false},
		{"main/..%2fx", "", false, false},
		{"main/%252e%252e/x", "", false, false},
		{"main/%zz", "", false, false},
		{"MAIN/x", "", false, false},
	} {
		name, dir, ok := resolve(tc.in)
		if name != tc.name || dir != tc.dir || ok != tc.ok {
			t.Errorf("resolve(%q) = %q %v %v, want %q %v %v", tc.in, name, dir, ok, tc.name, tc.dir, tc.ok)
		}
	}
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{"main/a.html", "main/%2e%2e/x", "main/..%2f", "x/%252e", "main/a/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		name, _, ok := resolve(in)
		if !ok {
			return
		}
		for _, seg := range strings.Split(name, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\%\x00") || strings.HasPrefix(seg, ".") {
				t.Fatalf("resolve(%q) = %q", in, name)
			}
		}
		if filepath.Clean("/"+name) != "/"+name {
			t.Fatalf("resolve(%q) = %q is not clean", in, name)
		}
	})
}

func TestSameHost(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		bound, got netip.Addr
		want       bool
	}{
		{a("127.0.0.1"), a("127.0.0.1"), true},
		{a("127.0.0.1"), a("::1"), true},
		{a("::ffff:127.0.0.1"), a("::1"), true},
		{a("127.0.0.1"), a("127.0.0.2"), false},
		{a("100.64.0.1"), a("100.64.0.2"), false},
		{netip.Addr{}, a("127.0.0.1"), false},
	} {
		if got := sameHost(tc.bound, tc.got); got != tc.want {
			t.Errorf("sameHost(%v, %v) = %v", tc.bound, tc.got, got)
		}
	}
}

func TestMethods(t *testing.T) {
	th := startHost(t)
	if _, err := th.h.Write("main", "index.html", []byte("<p>ok</p>")); err != nil {
		t.Fatal(err)
	}
	s := th.session(t, "s1", "127.0.0.1")
	req, _ := http.NewRequest(http.MethodPost, s.url+"/__openclaw__/canvas/main/index.html", strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST = %d", resp.StatusCode)
	}
	resp, err = http.Head(s.url + "/__openclaw__/canvas/main/index.html")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != CSP {
		t.Fatalf("HEAD = %d", resp.StatusCode)
	}
}
