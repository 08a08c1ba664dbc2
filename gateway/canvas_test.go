package gateway

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/canvas"
	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

type canvasGateway struct {
	*testGateway
	host  *canvas.Host
	clock *testClock
	hostP string // host:port of the canvas listener
}

// startCanvasGateway runs a gateway and a canvas host on its own loopback
// listener, both on the test clock.
func startCanvasGateway(t *testing.T) *canvasGateway {
	t.Helper()
	clock := newTestClock(time.Now())
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	host, err := canvas.New(canvas.Options{Dir: filepath.Join(state, "canvas"), Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: host.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	host.SetBaseURL("http://" + ln.Addr().String())
	t.Cleanup(func() {
		_ = hs.Close()
		<-done
		if err := host.Close(); err != nil {
			t.Errorf("canvas Close: %v", err)
		}
	})
	g := startGateway(t, func(o *Options) {
		o.Now = clock.now
		o.StateDir = state
		o.Canvas.Host = host
	})
	return &canvasGateway{testGateway: g, host: host, clock: clock, hostP: ln.Addr().String()}
}

// node connects a node (protocol 4, or 3).
func (g *canvasGateway) node(t *testing.T, proto int) *client.Client {
	t.Helper()
	return g.dialClient(t, func(o *client.Options) {
		o.Role, o.Scopes, o.ClientID, o.ClientMode = protocol.RoleNode, nil, "node-host", "node"
		if proto == 3 {
			o.MinProtocol, o.MaxProtocol = 3, 3
		}
	})
}

// canvasGet sends GET rawPath (exactly as given) to the canvas listener
// from the source address.
func (g *canvasGateway) canvasGet(t *testing.T, from, rawPath string) (int, http.Header, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", g.hostP)
	if err != nil {
		t.Fatalf("dial canvas from %s: %v", from, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", rawPath, g.hostP)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", rawPath, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// capPath is the path part of a capability URL.
func capPath(t *testing.T, u string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(u, "http://")
	i := strings.Index(rest, "/__openclaw__/cap/")
	if !ok || i < 0 {
		t.Fatalf("not a canvas capability URL: %q", u)
	}
	return rest[i:]
}

// TestCanvasServedToNode: a page written with canvas.put reaches a node
// through the capability URL of its hello-ok (v4 pluginSurfaceUrls.canvas,
// v3 canvasHostUrl), with the CSP; and attack-list row F8 is refused:
// no capability, an expired one, one of an ended node session, one from
// another address, and every traversal form.
func TestCanvasServedToNode(t *testing.T) {
	g := startCanvasGateway(t)
	op := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeWrite} })
	if h := op.Hello(); h.PluginSurfaceURLs != nil || h.CanvasHostURL != "" {
		t.Fatalf("an operator got a canvas URL: %+v %q", h.PluginSurfaceURLs, h.CanvasHostURL)
	}
	put := call(t, op, "canvas.put", map[string]any{"path": "index.html",
		"content": `<!doctype html><html><head><link rel="stylesheet" href="app.css"></head><body><h1>Status board</h1></body></html>`})
	if put["ok"] != true || put["agentId"] != "main" || put["path"] != "index.html" {
		t.Fatalf("canvas.put %v", put)
	}
	call(t, op, "canvas.put", map[string]any{"path": "app.css", "contentBase64": base64.StdEncoding.EncodeToString([]byte("h1{color:teal}"))})
	call(t, op, "canvas.put", map[string]any{"agentId": "ops", "path": "index.html", "content": "<p>ops</p>"})
	if l := call(t, op, "canvas.list", nil); len(l["files"].([]any)) != 2 {
		t.Fatalf("canvas.list %v", l)
	}

	n4 := g.node(t, 4)
	u4 := n4.Hello().PluginSurfaceURLs["canvas"]
	if n4.Hello().CanvasHostURL != "" || !strings.HasPrefix(u4, "http://"+g.hostP+"/__openclaw__/cap/") {
		t.Fatalf("v4 node hello: %+v %q", n4.Hello().PluginSurfaceURLs, n4.Hello().CanvasHostURL)
	}
	p4 := capPath(t, u4)
	code, hd, body := g.canvasGet(t, "127.0.0.1", p4+"/__openclaw__/canvas/main/")
	if code != 200 || !strings.Contains(body, "<h1>Status board</h1>") || hd.Get("Content-Security-Policy") != canvas.CSP {
		t.Fatalf("page: %d %q %q", code, hd.Get("Content-Security-Policy"), body)
	}
	if code, _, body := g.canvasGet(t, "127.0.0.1", p4+"/__openclaw__/canvas/main/app.css"); code != 200 || body != "h1{color:teal}" {
		t.Fatalf("css: %d %q", code, body)
	}
	if code, _, body := g.canvasGet(t, "127.0.0.1", p4+"/__openclaw__/canvas/ops/"); code != 200 || body == "" {
		t.Fatalf("other agent: %d", code)
	}
	// The page never sees the gateway's token.
	if strings.Contains(body, testToken) || strings.Contains(fmt.Sprint(hd), testToken) {
		t.Fatal("gateway token in a canvas response")
	}

	n3 := g.node(t, 3)
	u3 := n3.Hello().CanvasHostURL
	if n3.Hello().Protocol != 3 || n3.Hello().PluginSurfaceURLs != nil || u3 == "" || u3 == u4 {
		t.Fatalf("v3 node hello: %d %+v %q", n3.Hello().Protocol, n3.Hello().PluginSurfaceURLs, u3)
	}
	if code, _, _ := g.canvasGet(t, "127.0.0.1", capPath(t, u3)+"/__openclaw__/canvas/main/index.html"); code != 200 {
		t.Fatalf("v3 page: %d", code)
	}

	page := "/__openclaw__/canvas/main/index.html"
	// Missing capability.
	for _, p := range []string{page, "/__openclaw__/ws", "/__openclaw__/canvas/", "/"} {
		if code, _, _ := g.canvasGet(t, "127.0.0.1", p); code != 401 {
			t.Errorf("GET %s without a capability: %d, want 401", p, code)
		}
	}
	// Another address than the node's.
	if code, _, _ := g.canvasGet(t, "127.0.0.2", p4+page); code != 403 {
		t.Errorf("capability from another address: %d, want 403", code)
	}
	// Every traversal form.
	for _, tr := range []string{
		"/__openclaw__/canvas/main/../../clawgate.db",
		"/__openclaw__/canvas/main/../ops/index.html",
		"/__openclaw__/canvas/main/%2e%2e/%2e%2e/clawgate.db",
		"/__openclaw__/canvas/main/..%2f..%2fclawgate.db",
		"/__openclaw__/canvas/main/..%2F..%2Fclawgate.db",
		"/__openclaw__/canvas/main/%252e%252e/%252e%252e/clawgate.db",
		"/__openclaw__/canvas/main/..%252f..%252fclawgate.db",
		"/__openclaw__/canvas/main/..\\..\\clawgate.db",
		"/__openclaw__/canvas/main/..%5c..%5cclawgate.db",
		"/__openclaw__/canvas/main/%c0%ae%c0%ae/clawgate.db",
		"/__openclaw__/canvas/%2e%2e/clawgate.db",
		"/__openclaw__/canvas/main/./index.html",
		"/__openclaw__/canvas/main//index.html",
	} {
		if code, _, _ := g.canvasGet(t, "127.0.0.1", p4+tr); code != 404 {
			t.Errorf("traversal %s: %d, want 404", tr, code)
		}
	}
	// A symlink out of the canvas root.
	if err := os.Symlink("../../gateway.token", filepath.Join(g.srv.opts.StateDir, "canvas", "main", "token.html")); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := g.canvasGet(t, "127.0.0.1", p4+"/__openclaw__/canvas/main/token.html"); code != 404 {
		t.Errorf("symlink escape: %d, want 404", code)
	}

	// The node session ends: its capability is dead (a new session gets a
	// new one).
	n3.Close()
	waitFor(t, "the v3 node's capability to end", func() bool {
		code, _, _ := g.canvasGet(t, "127.0.0.1", capPath(t, u3)+page)
		return code == 401
	})

	// Unused past its lifetime: expired; refreshing issues a new one.
	g.clock.add(canvas.DefaultTTL + time.Second)
	if code, _, _ := g.canvasGet(t, "127.0.0.1", p4+page); code != 401 {
		t.Fatalf("expired capability: %d, want 401", code)
	}
	ref := call(t, n4, "node.canvas.capability.refresh", map[string]any{})
	tok, _ := ref["canvasCapability"].(string)
	if len(tok) != 22 || msOf(ref["canvasCapabilityExpiresAtMs"]) != g.clock.now().Add(canvas.DefaultTTL).UnixMilli() ||
		!strings.HasSuffix(ref["canvasHostUrl"].(string), "/__openclaw__/cap/"+tok) {
		t.Fatalf("refresh %v", ref)
	}
	if code, _, _ := g.canvasGet(t, "127.0.0.1", capPath(t, ref["canvasHostUrl"].(string))+page); code != 200 {
		t.Fatalf("refreshed capability: %d", code)
	}
	// v4: node.pluginSurface.refresh for the canvas surface rotates it;
	// other surfaces stay with the nodes handler.
	ps := call(t, n4, "node.pluginSurface.refresh", map[string]any{"surface": "canvas"})
	u4b := ps["pluginSurfaceUrls"].(map[string]any)["canvas"].(string)
	if ps["surface"] != "canvas" || u4b == ref["canvasHostUrl"] {
		t.Fatalf("pluginSurface.refresh %v", ps)
	}
	if code, _, _ := g.canvasGet(t, "127.0.0.1", capPath(t, ref["canvasHostUrl"].(string))+page); code != 401 {
		t.Fatalf("rotated-away capability: %d, want 401", code)
	}
	if code, _, _ := g.canvasGet(t, "127.0.0.1", capPath(t, u4b)+page); code != 200 {
		t.Fatalf("rotated capability: %d", code)
	}
	if re := callErr(t, n4, "node.pluginSurface.refresh", map[string]any{"surface": "board"}); re.Code != protocol.ErrUnavailable {
		t.Fatalf("other surface: %v", re)
	}
	// Operators cannot mint node capabilities.
	_, err := op.Call(context.Background(), "node.canvas.capability.refresh", map[string]any{})
	wantRemote(t, err, protocol.ErrInvalidRequest, "unauthorized role: operator", "")
}

// TestCanvasMethods: scopes and refusals of canvas.put/list/remove.
func TestCanvasMethods(t *testing.T) {
	g := startCanvasGateway(t)
	op := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeWrite} })
	for _, tc := range []struct {
		params map[string]any
		msg    string
	}{
		{map[string]any{"path": "../x.html", "content": "x"}, "invalid canvas.put params: " + canvas.ErrBadPath.Error()},
		{map[string]any{"path": "x.exe", "content": "x"}, "invalid canvas.put params: unsupported file type \".exe\""},
		{map[string]any{"path": "x.html"}, "invalid canvas.put params: give exactly one of content and contentBase64"},
		{map[string]any{"path": "x.html", "content": "a", "contentBase64": "YQ=="}, "invalid canvas.put params: give exactly one of content and contentBase64"},
		{map[string]any{"path": "x.html", "contentBase64": "%%%"}, "invalid canvas.put params: contentBase64 is not base64"},
		{map[string]any{"path": "x.html", "content": "x", "agentId": "../main"}, "invalid canvas.put params: at /agentId: must match pattern \"^[a-z0-9][a-z0-9_-]{0,63}$\""},
		{map[string]any{"path": "x.html", "content": "x", "cookie": "1"}, "invalid canvas.put params: at root: unexpected property 'cookie'"},
	} {
		re := callErr(t, op, "canvas.put", tc.params)
		if re.Code != protocol.ErrInvalidRequest || !strings.HasPrefix(re.Message, tc.msg) {
			t.Errorf("canvas.put %v: %s %q, want %q", tc.params, re.Code, re.Message, tc.msg)
		}
	}
	call(t, op, "canvas.put", map[string]any{"path": "a/b.js", "content": "1"})
	if r := call(t, op, "canvas.remove", map[string]any{"path": "a/b.js"}); r["removed"] != true {
		t.Fatalf("remove %v", r)
	}
	if r := call(t, op, "canvas.remove", map[string]any{"path": "a/b.js"}); r["removed"] != false {
		t.Fatalf("remove again %v", r)
	}
	ro := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeRead} })
	call(t, ro, "canvas.list", nil)
	_, err := ro.Call(context.Background(), "canvas.put", map[string]any{"path": "x.html", "content": "x"})
	wantRemote(t, err, protocol.ErrForbidden, "missing scope: operator.write", protocol.DetailMissingScope)
	// Without a canvas host the methods do not exist.
	plain := startGateway(t, nil)
	c := plain.dialClient(t, nil)
	_, err = c.Call(context.Background(), "canvas.put", map[string]any{"path": "x.html", "content": "x"})
	wantRemote(t, err, protocol.ErrInvalidRequest, "unknown method: canvas.put", "")
}

// TestCanvasLiveReload: a node's page socket hears "reload" when the
// operator writes, and is closed when the node's session ends.
func TestCanvasLiveReload(t *testing.T) {
	g := startCanvasGateway(t)
	op := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeWrite} })
	n := g.node(t, 4)
	u := n.Hello().PluginSurfaceURLs["canvas"]
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(u, "http")+"/__openclaw__/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	call(t, op, "canvas.put", map[string]any{"path": "index.html", "content": "<p>v2</p>"})
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "reload" {
		t.Fatalf("live reload: %q %v", msg, err)
	}
	n.Close()
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1008 {
		t.Fatalf("after the node left: %v", err)
	}
}

// TestCanvasBrowserRenders loads a canvas page in headless Chromium
// through a node's capability URL and checks the screenshot: the external
// stylesheet and same-origin script ran, the inline script was blocked by
// the CSP. The screenshot is kept in testdata-artifacts/.
func TestCanvasBrowserRenders(t *testing.T) {
	bin := ""
	for _, p := range []string{os.Getenv("CLAWGATE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		if os.Getenv("CLAWGATE_REQUIRE_COMPAT") == "1" {
			t.Fatal("chromium not found (scripts/deps.sh installs it)")
		}
		t.Skip("chromium not found; run scripts/deps.sh")
	}
	g := startCanvasGateway(t)
	op := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeWrite} })
	for path, content := range map[string]string{
		"index.html": `<!doctype html><html><head><meta charset="utf-8"><title>canvas</title>` +
			`<link rel="stylesheet" href="style.css"><script src="app.js" defer></script></head>` +
			`<body><h1>clawgate canvas</h1>` +
			`<script>document.body.style.background = "rgb(255, 0, 0)";</script></body></html>`,
		"style.css": `html, body { margin: 0; height: 100%; background: rgb(30, 144, 255); }` +
			`h1 { font: 32px sans-serif; color: white; margin: 0; padding: 16px; }`,
		"app.js": `const box = document.createElement("div");` +
			`box.id = "box"; box.style.cssText = "width:300px;height:200px;background:rgb(255,136,0);margin:16px";` +
			`document.body.appendChild(box);`,
	} {
		call(t, op, "canvas.put", map[string]any{"path": path, "content": content})
	}
	n := g.node(t, 4)
	url := n.Hello().PluginSurfaceURLs["canvas"] + "/__openclaw__/canvas/main/"

	dir := os.Getenv("CLAWGATE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "testdata-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "canvas-page.png")
	_ = os.Remove(shot)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), "--window-size=800,600",
		"--screenshot="+shot, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, out)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	blue, orange, red := countColor(img, 30, 144, 255), countColor(img, 255, 136, 0), countColor(img, 255, 0, 0)
	total := img.Bounds().Dx() * img.Bounds().Dy()
	t.Logf("screenshot %s: %dx%d, blue %d, orange %d, red %d", shot, img.Bounds().Dx(), img.Bounds().Dy(), blue, orange, red)
	if blue < total/2 {
		t.Errorf("stylesheet not applied: %d of %d pixels are the page blue", blue, total)
	}
	if orange < 300*200*9/10 {
		t.Errorf("same-origin script did not run: %d orange pixels", orange)
	}
	if red != 0 {
		t.Errorf("inline script ran despite the CSP: %d red pixels", red)
	}
}

// countColor counts pixels within a small distance of (r, g, b).
func countColor(img image.Image, r, g, b int) int {
	n := 0
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			d := abs(int(pr>>8)-r) + abs(int(pg>>8)-g) + abs(int(pb>>8)-b)
			if d <= 12 {
				n++
			}
		}
	}
	return n
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// TestCanvasBase: where a node is sent depends on how it arrived: the
// loopback base, the tailnet base (never through Funnel), or nowhere.
func TestCanvasBase(t *testing.T) {
	host, err := canvas.New(canvas.Options{Dir: filepath.Join(t.TempDir(), "canvas")})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	host.SetBaseURL("http://127.0.0.1:18793")
	tailnet := ""
	s := &Server{opts: Options{Canvas: CanvasOptions{Host: host, TailnetURL: func() string { return tailnet }}}}
	for _, tc := range []struct {
		name    string
		arrival Arrival
		tailnet string
		want    string
	}{
		{"loopback", Arrival{Path: authn.PathLoopback}, "", "http://127.0.0.1:18793"},
		{"tailnet down", Arrival{Path: authn.PathTailnet}, "", ""},
		{"tailnet", Arrival{Path: authn.PathTailnet, Peer: &PeerIdentity{NodeID: "n"}}, "http://gw.ts.net:18793", "http://gw.ts.net:18793"},
		{"funnel", Arrival{Path: authn.PathTailnet, Peer: &PeerIdentity{Funnel: true}}, "http://gw.ts.net:18793", ""},
		{"tls", Arrival{Path: authn.PathTLS}, "http://gw.ts.net:18793", ""},
	} {
		tailnet = tc.tailnet
		if got := s.canvasBase(&Conn{arrival: tc.arrival}); got != tc.want {
			t.Errorf("%s: base %q, want %q", tc.name, got, tc.want)
		}
	}
}
