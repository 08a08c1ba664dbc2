package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

func TestHealthz(t *testing.T) {
	g := startGateway(t, nil)
	resp, err := http.Get("http://" + g.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != `{"ok":true,"status":"live"}` {
		t.Fatalf("healthz = %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("content-type %q", ct)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("missing nosniff")
	}
}

// TestUpgradeChecks covers attack rows F1–F3 and G3: the answer comes
// before 101, and compression is never negotiated.
func TestUpgradeChecks(t *testing.T) {
	g := startGateway(t, nil)
	port := g.addr[strings.LastIndex(g.addr, ":")+1:]
	cases := []struct {
		name   string
		host   string
		origin string
		want   int
	}{
		{"plain", "", "", 101},
		{"localhost host", "localhost:" + port, "", 101},
		{"evil origin", "", "https://evil.example", 403},
		{"null origin", "", "null", 403},
		{"rebinding host", "rebind.evil:" + port, "http://rebind.evil:" + port, 403},
		{"rebinding host only", "rebind.evil:" + port, "", 403},
		{"wrong port host", "127.0.0.1:1", "", 403},
		{"own origin", "", "http://" + g.addr, 101},
		{"loopback origin other port", "", "http://127.0.0.1:1", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			d := websocket.Dialer{EnableCompression: true}
			url := g.url
			if tc.host != "" {
				h.Set("Host", tc.host)
			}
			ws, resp, err := d.Dial(url, h)
			if tc.want == 101 {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer ws.Close()
				if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
					t.Fatalf("compression negotiated: %q", ext)
				}
				return
			}
			if err == nil {
				ws.Close()
				t.Fatalf("upgrade succeeded, want %d", tc.want)
			}
			if resp == nil || resp.StatusCode != tc.want {
				t.Fatalf("status = %v, want %d (err %v)", resp, tc.want, err)
			}
		})
	}
}

func TestMethodsOverGoClient(t *testing.T) {
	g := startGateway(t, nil)
	c := g.dialClient(t, nil)
	ctx := context.Background()
	h := c.Hello()
	if h.Type != "hello-ok" || h.Protocol != 4 || h.Server.ConnID == "" {
		t.Fatalf("hello = %+v", h)
	}
	if h.Policy.MaxPayload != protocol.MaxPayload || h.Policy.TickIntervalMs != protocol.TickIntervalMs {
		t.Errorf("policy = %+v", h.Policy)
	}
	for _, m := range []string{"health", "status", "system-presence", "last-heartbeat"} {
		found := false
		for _, n := range h.Features.Methods {
			found = found || n == m
		}
		if !found {
			t.Errorf("features.methods lacks %s", m)
		}
	}
	raw, err := c.Call(ctx, "health", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	var hs protocol.HealthSummary
	if err := json.Unmarshal(raw, &hs); err != nil || !hs.OK || hs.Ts == 0 {
		t.Fatalf("health = %s (%v)", raw, err)
	}
	raw, err = c.Call(ctx, "status", nil)
	if err != nil {
		t.Fatal(err)
	}
	var st protocol.StatusResult
	if err := json.Unmarshal(raw, &st); err != nil || st.RuntimeVersion != "test" || st.Connections.Total != 1 {
		t.Fatalf("status = %s", raw)
	}
	if st.ProcessMemory == nil || st.ProcessMemory.HeapUsedBytes == 0 {
		t.Errorf("admin status lacks processMemory: %s", raw)
	}
	raw, err = c.Call(ctx, "system-presence", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pres []protocol.PresenceEntry
	if err := json.Unmarshal(raw, &pres); err != nil || len(pres) == 0 || pres[0].Reason != "self" || pres[0].Mode != "gateway" {
		t.Fatalf("presence = %s", raw)
	}
	_, err = c.Call(ctx, "no.such.method", nil)
	wantRemote(t, err, protocol.ErrInvalidRequest, "unknown method: no.such.method", "")
	_, err = c.Call(ctx, "health", map[string]any{"bogus": 1})
	wantRemote(t, err, protocol.ErrInvalidRequest, "invalid health params: at root: unexpected property 'bogus'", "")
	_, err = c.Call(ctx, "connect", nil)
	wantRemote(t, err, protocol.ErrInvalidRequest, "connect is only valid as the first request", "")
}

func wantRemote(t *testing.T, err error, code, msg, detail string) {
	t.Helper()
	var re *client.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("want remote error %s, got %v", code, err)
	}
	if re.Code != code || re.Message != msg || re.DetailCode() != detail {
		t.Fatalf("got %s %q %q, want %s %q %q", re.Code, re.Message, re.DetailCode(), code, msg, detail)
	}
}

// TestScopeGating: missing scope answers FORBIDDEN/MISSING_SCOPE and the
// 11th consecutive refusal closes the socket (A22). A device-less shared
// token never holds admin (A12).
func TestScopeGating(t *testing.T) {
	g := startGateway(t, nil)
	c := g.dialClient(t, func(o *client.Options) { o.Identity = nil; o.Scopes = []string{"operator.admin", "operator.read"} })
	if got := c.Hello().Auth.Scopes; len(got) != 1 || got[0] != protocol.ScopeRead {
		t.Fatalf("device-less scopes = %v, want [operator.read]", got)
	}
	ctx := context.Background()
	if _, err := c.Call(ctx, "status", nil); err != nil {
		t.Fatalf("read method refused: %v", err)
	}
	for i := 0; i < 11; i++ {
		_, err := c.Call(ctx, "device.pair.list", nil)
		if i < 10 {
			wantRemote(t, err, protocol.ErrForbidden, "missing scope: operator.pairing", protocol.DetailMissingScope)
		}
	}
	select {
	case <-c.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("socket not closed after 11 unauthorized calls")
	}
	var ce *client.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != protocol.ClosePolicy || ce.Reason != "repeated unauthorized calls" {
		t.Fatalf("close = %v", c.Err())
	}
}

// TestStrictFrames covers A20: duplicate keys, case variants, deep
// nesting, huge numbers and unknown fields, before and after the handshake.
func TestStrictFrames(t *testing.T) {
	g := startGateway(t, nil)
	pre := []struct{ name, frame, reason string }{
		{"duplicate key", `{"type":"req","id":"1","method":"connect","method":"connect","params":{}}`, `invalid request frame: duplicate key: "method"`},
		{"case variant", `{"type":"req","id":"1","method":"connect","Method":"x","params":{}}`, `invalid request frame: case-variant key: "method" and "Method"`},
		{"deep", `{"type":"req","id":"1","method":"connect","params":` + strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000) + `}`, "invalid request frame: nesting too deep"},
	}
	for _, tc := range pre {
		t.Run("preauth "+tc.name, func(t *testing.T) {
			rc := g.dialRaw(t, nil)
			rc.challenge()
			_ = rc.ws.WriteMessage(websocket.TextMessage, []byte(tc.frame))
			code, reason, _ := rc.closeCode(3 * time.Second)
			if code != 1008 || reason != tc.reason {
				t.Fatalf("close %d %q, want 1008 %q", code, reason, tc.reason)
			}
		})
	}
	connectCases := []struct{ name, mutate, msg string }{
		{"unknown field", `"extra":1`, "invalid connect params: at root: unexpected property 'extra'"},
		{"huge number", `"minProtocol":1e999`, "invalid connect params: at /minProtocol: must be integer"},
		{"pipe in platform", `"client":{"id":"cli","version":"1","platform":"linux|operator","mode":"cli"}`, `invalid connect params: at /client/platform: must match pattern "^[^|\\x00-\\x1f\\x7f]*$"`},
		{"newline in role", `"role":"operator\n"`, `invalid connect params: at /role: must match pattern "^[^|\\x00-\\x1f\\x7f]*$"`},
	}
	for _, tc := range connectCases {
		t.Run("connect "+tc.name, func(t *testing.T) {
			rc := g.dialRaw(t, nil)
			rc.challenge()
			base := `"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"},"auth":{"token":"` + testToken + `"}`
			params := `{"minProtocol":4,` + base + `,` + tc.mutate + `}`
			if strings.HasPrefix(tc.mutate, `"minProtocol"`) {
				params = `{` + tc.mutate + `,` + base + `}`
			}
			if strings.HasPrefix(tc.mutate, `"client"`) {
				params = `{"minProtocol":4,"maxProtocol":4,` + tc.mutate + `,"auth":{"token":"` + testToken + `"}}`
			}
			_ = rc.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"req","id":"c1","method":"connect","params":`+params+`}`))
			code, _, frames := rc.closeCode(3 * time.Second)
			if code != 1008 || len(frames) != 1 {
				t.Fatalf("close %d frames %v", code, frames)
			}
			if msg := frames[0]["error"].(map[string]any)["message"]; msg != tc.msg {
				t.Fatalf("message %q, want %q", msg, tc.msg)
			}
		})
	}
	t.Run("post-auth invalid frames keep the socket", func(t *testing.T) {
		rc := g.dialRaw(t, nil)
		rc.challenge()
		rc.sendJSON(map[string]any{"type": "req", "id": "c", "method": "connect", "params": connectParams(testToken)})
		if f := rc.frame(); f["ok"] != true {
			t.Fatalf("connect: %v", f)
		}
		for _, bad := range []string{`not json`, `{"type":"req","id":"a","method":"health","method":"x"}`, `{"type":"req","id":"b"}`, `{"type":"req","id":"c","method":"health","Params":{}}`} {
			_ = rc.ws.WriteMessage(websocket.TextMessage, []byte(bad))
			f := rc.frame()
			for f["type"] == "event" {
				f = rc.frame()
			}
			if f["ok"] != false || !strings.HasPrefix(f["error"].(map[string]any)["message"].(string), "invalid request frame") {
				t.Fatalf("%s → %v", bad, f)
			}
		}
		rc.sendJSON(map[string]any{"type": "req", "id": "h", "method": "health"})
		f := rc.frame()
		for f["type"] == "event" {
			f = rc.frame()
		}
		if f["id"] != "h" || f["ok"] != true {
			t.Fatalf("health after bad frames: %v", f)
		}
	})
	t.Run("invalid utf8 closes 1007", func(t *testing.T) {
		rc := g.dialRaw(t, nil)
		rc.challenge()
		_ = rc.ws.WriteMessage(websocket.TextMessage, []byte{'{', 0xff, 0xfe, '}'})
		code, _, _ := rc.closeCode(3 * time.Second)
		if code != 1007 {
			t.Fatalf("close %d, want 1007", code)
		}
	})
}

// TestPresenceAndSeq: a client's arrival and departure reach others as
// presence events with per-connection seq and rising stateVersion.
func TestPresenceAndSeq(t *testing.T) {
	g := startGateway(t, nil)
	var mu sync.Mutex
	var events []client.Event
	watcher := g.dialClient(t, func(o *client.Options) {
		o.ClientMode = "ui"
		o.ClientID = "openclaw-tui"
		o.OnEvent = func(e client.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
	})
	_ = watcher
	other := g.dialClient(t, func(o *client.Options) { o.ClientMode = "ui"; o.ClientID = "openclaw-tui"; o.DisplayName = "phone" })
	hasPhone := func(e client.Event) bool {
		var p protocol.PresencePayload
		_ = json.Unmarshal(e.Payload, &p)
		for _, x := range p.Presence {
			if x.Host == "phone" {
				return true
			}
		}
		return false
	}
	// Presence changes are coalesced per window; leave once the join shows.
	for joined := false; !joined; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		for _, e := range events {
			joined = joined || hasPhone(e)
		}
		mu.Unlock()
	}
	other.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		joined, left := false, false
		for _, e := range events {
			if hasPhone(e) {
				joined = true
			} else if joined {
				left = true
			}
		}
		mu.Unlock()
		if left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("did not see the phone join and leave")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var lastSeq, lastPV uint64
	for i, e := range events {
		if e.Name != protocol.EventPresence || e.Seq == nil || e.StateVersion == nil {
			t.Fatalf("event %d = %+v", i, e)
		}
		if *e.Seq != lastSeq+1 || e.StateVersion.Presence <= lastPV {
			t.Fatalf("event %d seq %d pv %d after %d/%d", i, *e.Seq, e.StateVersion.Presence, lastSeq, lastPV)
		}
		lastSeq, lastPV = *e.Seq, e.StateVersion.Presence
	}
}

// TestShutdown: clients get the shutdown event, then close 1012.
func TestShutdown(t *testing.T) {
	g := startGateway(t, nil)
	got := make(chan string, 4)
	c := g.dialClient(t, func(o *client.Options) { o.OnEvent = func(e client.Event) { got <- e.Name } })
	g.stop()
	select {
	case name := <-got:
		if name != protocol.EventShutdown {
			t.Fatalf("first event %q, want shutdown", name)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no shutdown event")
	}
	<-c.Done()
	var ce *client.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != protocol.CloseServiceRestart {
		t.Fatalf("close = %v, want 1012", c.Err())
	}
}

// TestSlowConsumer: a client that stops reading is closed with 1008 slow
// consumer, while a reading client keeps getting every event in order.
//
// The verdict is by bytes, but the frame write in flight to the stopped
// client still ends at writeTimeout (the socket is dropped, 1006, no 1008
// can follow). So the bytes from "socket buffers full" to "queue over the
// bound" must flow well within writeTimeout at whatever pace a loaded
// machine gives the reading client, which paces the broadcast: the bound
// is small next to what the kernel buffers (256 KiB against some 4 MB), so
// that last stretch is a few percent of the run, not a quarter of it.
func TestSlowConsumer(t *testing.T) {
	const bound = 256 << 10
	g := startGateway(t, func(o *Options) { o.MaxBufferedBytes = bound })
	var mu sync.Mutex
	var seqs []uint64
	good := g.dialClient(t, func(o *client.Options) {
		o.OnEvent = func(e client.Event) {
			if e.Seq != nil {
				mu.Lock()
				seqs = append(seqs, *e.Seq)
				mu.Unlock()
			}
		}
	})
	_ = good
	ws, _, err := websocket.DefaultDialer.Dial(g.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	slow := &rawConn{t: t, ws: ws}
	slow.challenge()
	slow.sendJSON(map[string]any{"type": "req", "id": "c", "method": "connect", "params": connectParams(testToken)})
	if f := slow.frame(); f["ok"] != true {
		t.Fatalf("slow connect: %v", f)
	}
	// Stop reading on the slow socket while up to 32 MB of events flow:
	// far more than kernel buffers plus the queue bound absorb.
	const max = 8000
	big := strings.Repeat("x", 4096)
	sent := make(chan struct{})
	total := 0 // events broadcast; read after <-sent
	go func() {
		defer close(sent)
		extra := 0
		for i := 0; i < max && extra < 100; i++ {
			total = i + 1
			if g.srv.metrics.slowConsumers.Load() > 0 {
				extra++ // keep going a little: others must still get everything
			}
			g.srv.bus.broadcast(protocol.EventTick, map[string]any{"ts": i, "pad": big}, nil, nil)
			// Flow control by the test, not by timing: never run more than
			// 16 events (64 KiB, a quarter of the bound) ahead of the
			// reading client, however slowly a loaded machine schedules
			// it. The non-reading client gets no such courtesy.
			for {
				mu.Lock()
				behind := i + 1 - len(seqs)
				mu.Unlock()
				if behind < 16 || g.srv.metrics.slowConsumers.Load() > 1 {
					break
				}
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	// Once the gateway gives up on the slow client, it starts reading again
	// and must find, after what the kernel buffered, the 1008 close.
	for g.srv.metrics.slowConsumers.Load() == 0 {
		select {
		case <-sent:
			t.Fatal("all events sent and the non-reading client was never closed")
		case <-time.After(5 * time.Millisecond):
		}
	}
	// What the kernel buffered is megabytes: read it without decoding, so
	// a loaded machine gets through it fast, waiting up to 15 s per frame.
	frames := 0
	var ce *websocket.CloseError
	for {
		_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, r, err := ws.NextReader()
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if errors.As(err, &ce) {
			break
		}
		if err != nil {
			t.Fatalf("expected a close frame, got %v after %d frames", err, frames)
		}
		frames++
	}
	if ce.Code != 1008 || ce.Text != "slow consumer" {
		t.Fatalf("slow close = %d %q after %d frames", ce.Code, ce.Text, frames)
	}
	<-sent
	t.Logf("slow client read %d frames before the close; %d broadcast", frames, total)
	if n := g.srv.metrics.slowConsumers.Load(); n != 1 {
		t.Fatalf("slow consumers closed = %d, want 1 (the reading client must never be)", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(seqs)
		mu.Unlock()
		if n >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) < total {
		t.Fatalf("good client got %d of %d events", len(seqs), total)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("gap in good client's seq at %d: %d after %d", i, seqs[i], seqs[i-1])
		}
	}
}

// TestPreauthCap: beyond the per-IP budget of unauthenticated sockets the
// upgrade gets 503 before 101 (G8).
func TestPreauthCap(t *testing.T) {
	g := startGateway(t, func(o *Options) { o.MaxPreauthPerIP = 3 })
	var held []*rawConn
	for i := 0; i < 3; i++ {
		rc := g.dialRaw(t, nil)
		rc.challenge()
		held = append(held, rc)
	}
	_, resp, err := websocket.DefaultDialer.Dial(g.url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("4th preauth socket: err %v resp %v", err, resp)
	}
	_ = held
	for _, rc := range held {
		rc.ws.Close()
	}
	// Slots come back when those sockets go; authenticated sockets do not
	// count against the budget.
	deadline := time.Now().Add(3 * time.Second)
	for {
		g.srv.mu.RLock()
		n := g.srv.preauth["127.0.0.1"]
		g.srv.mu.RUnlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("preauth slots not released: %d", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 5; i++ {
		g.dialClient(t, nil)
	}
	g.dialRaw(t, nil).challenge()
}

func TestDedupeCache(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	d := newDedupeCache(3, time.Minute, clock)
	calls := 0
	fn := func() (any, error) { calls++; return fmt.Sprint("r", calls), nil }
	ctx := context.Background()
	r1, _, c1 := d.do(ctx, "send:a", fn)
	r2, _, c2 := d.do(ctx, "send:a", fn)
	if r1 != "r1" || r2 != "r1" || c1 || !c2 || calls != 1 {
		t.Fatalf("retry not cached: %v %v %v %v calls=%d", r1, r2, c1, c2, calls)
	}
	// Concurrent duplicates coalesce into one call.
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]any, 10)
	slow := func() (any, error) { <-release; calls++; return "slow", nil }
	for i := range results {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], _, _ = d.do(ctx, "send:b", slow) }()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if calls != 2 {
		t.Fatalf("concurrent duplicates ran %d times", calls-1)
	}
	for _, r := range results {
		if r != "slow" {
			t.Fatalf("result %v", r)
		}
	}
	// Bounded: the oldest entry is evicted.
	d.do(ctx, "send:c", fn)
	d.do(ctx, "send:d", fn)
	if d.len() > 3 {
		t.Fatalf("cache holds %d > 3", d.len())
	}
	// Expiry: after the TTL the key runs again.
	now = now.Add(2 * time.Minute)
	d.sweep()
	if d.len() != 0 {
		t.Fatalf("sweep left %d", d.len())
	}
	before := calls
	d.do(ctx, "send:d", fn)
	if calls != before+1 {
		t.Fatalf("expired key not re-run")
	}
}
