package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/providers"
)

// stubLogin is a WebLoginer whose state the test drives.
type stubLogin struct {
	mu         sync.Mutex
	st         WebLoginState
	changed    chan struct{}
	watchers   []func(WebLoginState)
	notRunning bool
	forced     bool
}

func newStubLogin() *stubLogin {
	return &stubLogin{changed: make(chan struct{}),
		st: WebLoginState{Channel: "whatsapp", AccountID: "default", Status: "needs-relink", Message: "needs re-link"}}
}

func (l *stubLogin) set(fn func(*WebLoginState)) {
	l.mu.Lock()
	fn(&l.st)
	st, ws := l.st, append([]func(WebLoginState){}, l.watchers...)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	for _, w := range ws {
		w(st)
	}
}

func (l *stubLogin) check(channel, account string) error {
	switch {
	case channel != "" && channel != "whatsapp":
		return ErrWebLoginUnsupported
	case account != "" && account != "default":
		return providers.ErrUnknownAccount
	case l.notRunning:
		return ErrWebLoginNotRunning
	}
	return nil
}

func (l *stubLogin) WebLoginStart(ctx context.Context, channel, account string, force bool) (WebLoginState, error) {
	if err := l.check(channel, account); err != nil {
		return WebLoginState{}, err
	}
	l.mu.Lock()
	l.forced = force
	connected := l.st.Connected
	l.mu.Unlock()
	if !connected || force {
		l.set(func(st *WebLoginState) {
			st.Status, st.QR, st.Connected, st.Message = "qr", "2@ref1,bm9pc2U=,aWRlbnRpdHk=,YWR2", false, "scan this code"
		})
	}
	return l.WebLoginStatus(channel, account)
}

func (l *stubLogin) WebLoginWait(ctx context.Context, channel, account, current string) (WebLoginState, error) {
	if err := l.check(channel, account); err != nil {
		return WebLoginState{}, err
	}
	for {
		l.mu.Lock()
		st, ch := l.st, l.changed
		l.mu.Unlock()
		if st.Connected || st.Status == "timeout" || (st.QR != "" && st.QR != current) {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, nil
		}
	}
}

func (l *stubLogin) WebLoginStatus(channel, account string) (WebLoginState, error) {
	if err := l.check(channel, account); err != nil {
		return WebLoginState{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st, nil
}

func (l *stubLogin) WatchWebLogin(fn func(WebLoginState)) func() {
	l.mu.Lock()
	l.watchers = append(l.watchers, fn)
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		l.watchers = nil
		l.mu.Unlock()
	}
}

// loginHub is the hub cmd/clawgate builds: the Supervisor plus the facet.
type loginHub struct {
	*providers.Supervisor
	*stubLogin
}

func startWebLogin(t *testing.T) (*testGateway, *stubLogin) {
	t.Helper()
	sup, err := providers.NewSupervisor(providers.Options{MinBackoff: 10 * time.Millisecond},
		providers.Account{Provider: newChanProvider("whatsapp")})
	if err != nil {
		t.Fatal(err)
	}
	login := newStubLogin()
	g := startGateway(t, func(o *Options) { o.Providers = loginHub{sup, login} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return g, login
}

func decodePNG(t *testing.T, url string) {
	t.Helper()
	b64, ok := strings.CutPrefix(url, "data:image/png;base64,")
	if !ok {
		t.Fatalf("qrDataUrl %.40q is not a PNG data URL", url)
	}
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("qrDataUrl does not hold a PNG: %v", err)
	}
}

func TestWebLoginQRFlow(t *testing.T) {
	g, login := startWebLogin(t)
	var adminEvents, readEvents chanEvents
	admin := g.dialClient(t, func(o *client.Options) { o.OnEvent = adminEvents.on })
	if ev := admin.Hello().Features.Events; !containsStr(ev, EventWebLogin) || !containsStr(ev, EventSessionMessage) {
		t.Errorf("hello-ok events %v lack web.login or session.message", ev)
	}
	reader := g.dialClient(t, func(o *client.Options) {
		o.Scopes = []string{protocol.ScopeRead, protocol.ScopeWrite}
		o.OnEvent = readEvents.on
	})

	// Admin only.
	if _, err := callJSON(t, reader, "web.login.start", map[string]any{}); err == nil {
		t.Fatal("web.login.start with read/write scopes succeeded")
	} else if code, _ := remoteCode(err); code != protocol.ErrForbidden {
		t.Fatalf("web.login.start with read/write scopes: %v", err)
	}

	start, err := callJSON(t, admin, "web.login.start", map[string]any{"channel": "whatsapp", "timeoutMs": 5000})
	if err != nil {
		t.Fatal(err)
	}
	url, _ := start["qrDataUrl"].(string)
	decodePNG(t, url)
	if start["connected"] != false || start["sessionKey"] != "web-login:whatsapp:default" || start["message"] != "scan this code" {
		t.Fatalf("start = %v", start)
	}

	// wait with the code the client shows returns when the code rotates.
	waited := make(chan map[string]any, 1)
	go func() {
		res, err := callJSON(t, admin, "web.login.wait", map[string]any{"sessionKey": start["sessionKey"],
			"currentQrDataUrl": url, "timeoutMs": 10000})
		if err != nil {
			t.Error(err)
		}
		waited <- res
	}()
	select {
	case res := <-waited:
		t.Fatalf("wait returned before the code changed: %v", res)
	case <-time.After(200 * time.Millisecond):
	}
	login.set(func(st *WebLoginState) { st.QR = "2@ref2,bm9pc2U=,aWRlbnRpdHk=,YWR2" })
	res := <-waited
	next, _ := res["qrDataUrl"].(string)
	decodePNG(t, next)
	if next == url || res["connected"] != false {
		t.Fatalf("wait after rotation = %v", res)
	}

	// Success.
	go func() {
		res, err := callJSON(t, admin, "web.login.wait", map[string]any{"currentQrDataUrl": next, "timeoutMs": 10000})
		if err != nil {
			t.Error(err)
		}
		waited <- res
	}()
	time.Sleep(50 * time.Millisecond)
	login.set(func(st *WebLoginState) {
		st.Status, st.Connected, st.QR, st.Message = "connected", true, "", "connected"
	})
	if res := <-waited; res["connected"] != true || res["qrDataUrl"] != nil {
		t.Fatalf("wait at success = %v", res)
	}
	evs := adminEvents.wait(t, EventWebLogin, 2)
	var last webLoginEvent
	if err := json.Unmarshal(evs[len(evs)-1].Payload, &last); err != nil || last.Status != "connected" || !last.Connected ||
		last.Channel != "whatsapp" || last.AccountID != "default" {
		t.Fatalf("last web.login event = %s (%v)", evs[len(evs)-1].Payload, err)
	}
	for _, e := range evs {
		if strings.Contains(string(e.Payload), "ref1") || strings.Contains(string(e.Payload), "ref2") {
			t.Fatalf("a web.login event carries the QR code: %s", e.Payload)
		}
	}
	// Timeout and logout are events too.
	login.set(func(st *WebLoginState) { st.Status, st.Connected, st.Message = "timeout", false, "expired" })
	login.set(func(st *WebLoginState) { st.Status, st.Message = "needs-relink", "logged out from the phone" })
	evs = adminEvents.wait(t, EventWebLogin, 4)
	if !strings.Contains(string(evs[2].Payload), `"timeout"`) || !strings.Contains(string(evs[3].Payload), "logged out") {
		t.Fatalf("events = %s / %s", evs[2].Payload, evs[3].Payload)
	}
	if n := len(readEvents.named(EventWebLogin)); n != 0 {
		t.Fatalf("a read-scope client got %d web.login events", n)
	}

	// Already linked: start says so without a code, unless forced.
	login.set(func(st *WebLoginState) {
		st.Status, st.Connected, st.QR, st.Message = "connected", true, "", "already linked"
	})
	if res, err := callJSON(t, admin, "web.login.start", map[string]any{}); err != nil || res["connected"] != true ||
		res["qrDataUrl"] != nil {
		t.Fatalf("start on a linked account = %v, %v", res, err)
	}
	if res, err := callJSON(t, admin, "web.login.start", map[string]any{"force": true}); err != nil || res["qrDataUrl"] == nil {
		t.Fatalf("forced start = %v, %v", res, err)
	}
}

func TestWebLoginRefusals(t *testing.T) {
	g, login := startWebLogin(t)
	admin := g.dialClient(t, nil)
	cases := []struct {
		name       string
		method     string
		params     map[string]any
		code, text string
	}{
		{"unknown property", "web.login.start", map[string]any{"qr": true}, protocol.ErrInvalidRequest, "invalid web.login.start params"},
		{"not a data URL", "web.login.wait", map[string]any{"currentQrDataUrl": "javascript:alert(1)"},
			protocol.ErrInvalidRequest, "invalid web.login.wait params"},
		{"negative timeout", "web.login.wait", map[string]any{"timeoutMs": -1}, protocol.ErrInvalidRequest, "invalid"},
		{"channel without QR login", "web.login.start", map[string]any{"channel": "telegram"},
			protocol.ErrInvalidRequest, "not supported by provider"},
		{"unknown account", "web.login.wait", map[string]any{"accountId": "work"}, protocol.ErrInvalidRequest, "unknown channel"},
		{"foreign session key", "web.login.wait", map[string]any{"sessionKey": "agent:main"}, protocol.ErrInvalidRequest, "sessionKey"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := callJSON(t, admin, tc.method, tc.params)
			code, _ := remoteCode(err)
			if code != tc.code || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("%s: %v; want %s containing %q", tc.method, err, tc.code, tc.text)
			}
		})
	}
	login.mu.Lock()
	login.notRunning = true
	login.mu.Unlock()
	_, err := callJSON(t, admin, "web.login.start", nil)
	if code, _ := remoteCode(err); code != protocol.ErrUnavailable || !strings.Contains(err.Error(), "restart the gateway") {
		t.Fatalf("start on a stopped account: %v", err)
	}
}

func TestWebLoginWithoutProvider(t *testing.T) {
	g := startGateway(t, nil)
	admin := g.dialClient(t, nil)
	_, err := callJSON(t, admin, "web.login.start", map[string]any{})
	if code, _ := remoteCode(err); code != protocol.ErrInvalidRequest || !strings.Contains(err.Error(), "web login provider is not available") {
		t.Fatalf("web.login.start with no QR channel: %v", err)
	}
}
