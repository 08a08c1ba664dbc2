package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

const testToken = "test-token-0123456789abcdef0123456789"

type testGateway struct {
	srv  *Server
	url  string
	addr string
	// remoteURL reaches the same server through a second listener tagged
	// as a remote (TLS-path) arrival, so tests can exercise what non-local
	// peers get without leaving loopback.
	remoteURL string
	stop      func()
}

// startGateway runs a real Server on a loopback port for the test's life.
func startGateway(t testing.TB, mod func(*Options)) *testGateway {
	t.Helper()
	secret, err := authn.NewSharedSecret(testToken)
	if err != nil {
		t.Fatal(err)
	}
	// No memory trims (memtrim.go) unless a test asks: each would collect
	// the whole test process's heap.
	opts := Options{Version: "test", Token: secret, StateDir: t.TempDir(), TrimInterval: -1}
	if testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	remoteLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.AllowedHosts = append(opts.AllowedHosts, remoteLn.Addr().String())
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, Listener{Listener: ln, Path: authn.PathLoopback}, Listener{Listener: remoteLn, Path: authn.PathTLS})
	}()
	g := &testGateway{srv: srv, url: "ws://" + ln.Addr().String(), addr: ln.Addr().String(),
		remoteURL: "ws://" + remoteLn.Addr().String()}
	stopped := false
	g.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of cancel")
		}
	}
	t.Cleanup(g.stop)
	return g
}

// rawConn is a bare WebSocket to the gateway, for wire-level tests.
type rawConn struct {
	t  testing.TB
	ws *websocket.Conn
}

func (g *testGateway) dialRaw(t testing.TB, header http.Header) *rawConn {
	t.Helper()
	return dialRawURL(t, g.url, header)
}

func dialRawURL(t testing.TB, url string, header http.Header) *rawConn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	return &rawConn{t: t, ws: ws}
}

// frame reads one frame as a generic map, failing on close or timeout.
func (r *rawConn) frame() map[string]any {
	r.t.Helper()
	_ = r.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := r.ws.ReadMessage()
	if err != nil {
		r.t.Fatalf("read frame: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		r.t.Fatalf("frame is not JSON: %s", data)
	}
	return m
}

// challenge reads the connect.challenge and returns nonce and ts.
func (r *rawConn) challenge() (string, int64) {
	r.t.Helper()
	f := r.frame()
	if f["event"] != protocol.EventChallenge {
		r.t.Fatalf("first frame is not connect.challenge: %v", f)
	}
	p := f["payload"].(map[string]any)
	return p["nonce"].(string), int64(p["ts"].(float64))
}

func (r *rawConn) sendJSON(v any) {
	r.t.Helper()
	if err := r.ws.WriteJSON(v); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// closeCode reads until the gateway closes and returns its close code and
// reason. Frames before the close are returned too.
func (r *rawConn) closeCode(within time.Duration) (int, string, []map[string]any) {
	r.t.Helper()
	var frames []map[string]any
	_ = r.ws.SetReadDeadline(time.Now().Add(within))
	for {
		_, data, err := r.ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code, ce.Text, frames
			}
			r.t.Fatalf("expected a close frame, got %v after %d frames", err, len(frames))
		}
		var m map[string]any
		_ = json.Unmarshal(data, &m)
		frames = append(frames, m)
	}
}

// connectParams returns minimal valid connect params with the test token.
func connectParams(token string) map[string]any {
	return map[string]any{
		"minProtocol": 4, "maxProtocol": 4,
		"client": map[string]any{"id": "cli", "version": "1.0", "platform": "linux", "mode": "cli"},
		"role":   "operator", "scopes": []string{"operator.read"},
		"auth": map[string]any{"token": token},
	}
}

// dialClient connects with the Go client as a signed device.
func (g *testGateway) dialClient(t testing.TB, mod func(*client.Options)) *client.Client {
	t.Helper()
	id, err := client.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	opts := client.Options{URL: g.url, Token: testToken, Identity: id,
		Scopes: []string{protocol.ScopeAdmin, protocol.ScopeRead, protocol.ScopeWrite}}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, opts)
	if err != nil {
		t.Fatalf("client.Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustContain(t testing.TB, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}

// connectResult runs one raw connect with params and returns the response
// frame (hello-ok or error).
func connectResult(t testing.TB, url string, header http.Header, params map[string]any) map[string]any {
	t.Helper()
	rc := dialRawURL(t, url, header)
	rc.challenge()
	rc.sendJSON(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": params})
	f := rc.frame()
	rc.ws.Close()
	return f
}

// errDetail returns error.details.code of a response frame, or "" for ok.
func errDetail(f map[string]any) string {
	e, ok := f["error"].(map[string]any)
	if !ok {
		return ""
	}
	d, _ := e["details"].(map[string]any)
	s, _ := d["code"].(string)
	return s
}
