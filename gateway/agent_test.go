package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/clawgate/clawgate/agent"
	"github.com/clawgate/clawgate/protocol"
)

// fakeBackend is a scriptable agent.Backend.
type fakeBackend struct {
	mu    sync.Mutex
	calls []agent.Request
	// stream runs each call; nil echoes the prompt in three pieces.
	stream func(ctx context.Context, req agent.Request, emit func(string)) (agent.Result, error)
}

func (f *fakeBackend) Stream(ctx context.Context, req agent.Request, emit func(string)) (agent.Result, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	fn := f.stream
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, req, emit)
	}
	for _, p := range []string{"echo: ", req.Prompt(), "."} {
		emit(p)
	}
	return agent.Result{StopReason: "stop", Usage: &agent.Usage{Input: 1, Output: 2, Total: 3}}, nil
}

func (f *fakeBackend) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// gatedStream emits "partial", then blocks until release is closed or
// ctx ends.
func gatedStream(started chan<- string, release <-chan struct{}) func(context.Context, agent.Request, func(string)) (agent.Result, error) {
	return func(ctx context.Context, req agent.Request, emit func(string)) (agent.Result, error) {
		emit("partial")
		if started != nil {
			started <- req.RunID
		}
		select {
		case <-release:
			emit(" done")
			return agent.Result{StopReason: "stop"}, nil
		case <-ctx.Done():
			return agent.Result{}, context.Cause(ctx)
		}
	}
}

func agentGateway(t *testing.T, fb *fakeBackend, mod func(*Options)) *testGateway {
	t.Helper()
	return startGateway(t, func(o *Options) {
		if fb != nil {
			o.Agent.Backend = fb
		}
		if mod != nil {
			mod(o)
		}
	})
}

// operatorConn is a raw shared-token operator connection that records
// every frame it reads.
type operatorConn struct {
	*rawConn
	t      *testing.T
	frames []map[string]any
	used   map[int]bool // frames an until call already returned
}

func dialOperator(t *testing.T, g *testGateway, scopes ...string) *operatorConn {
	t.Helper()
	rc := g.dialRaw(t, nil)
	rc.challenge()
	p := connectParams(testToken)
	p["scopes"] = append([]string{}, scopes...)
	rc.sendJSON(map[string]any{"type": "req", "id": "c", "method": "connect", "params": p})
	if f := rc.frame(); f["ok"] != true {
		t.Fatalf("connect: %v", f)
	}
	return &operatorConn{rawConn: rc, t: t, used: map[int]bool{}}
}

func (o *operatorConn) req(id, method string, params any) {
	o.t.Helper()
	o.sendJSON(map[string]any{"type": "req", "id": id, "method": method, "params": params})
}

// until returns the first frame, already read or read now, that match
// accepts and no earlier until call returned.
func (o *operatorConn) until(what string, match func(map[string]any) bool) map[string]any {
	o.t.Helper()
	for i, f := range o.frames {
		if !o.used[i] && match(f) {
			o.used[i] = true
			return f
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = o.ws.SetReadDeadline(deadline)
		_, data, err := o.ws.ReadMessage()
		if err != nil {
			var b strings.Builder
			for _, f := range o.frames {
				raw, _ := json.Marshal(f)
				b.WriteString("\n  ")
				b.Write(raw)
			}
			o.t.Fatalf("waiting for %s: %v; frames so far:%s", what, err, b.String())
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			o.t.Fatalf("frame is not JSON: %s", data)
		}
		o.frames = append(o.frames, m)
		if match(m) {
			o.used[len(o.frames)-1] = true
			return m
		}
	}
}

func (o *operatorConn) res(id string) map[string]any {
	o.t.Helper()
	return o.until("res "+id, func(m map[string]any) bool { return m["type"] == "res" && m["id"] == id })
}

func (o *operatorConn) call(id, method string, params any) map[string]any {
	o.t.Helper()
	o.req(id, method, params)
	return o.res(id)
}

// chatState waits for a chat event of the run in state.
func (o *operatorConn) chatState(runID, state string) map[string]any {
	o.t.Helper()
	f := o.until("chat "+state+" of "+runID, func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return m["event"] == "chat" && p["runId"] == runID && p["state"] == state
	})
	return f["payload"].(map[string]any)
}

// events returns the payloads of the recorded events named name for runID.
func (o *operatorConn) events(name, runID string) []map[string]any {
	var out []map[string]any
	for _, f := range o.frames {
		if p, ok := f["payload"].(map[string]any); ok && f["event"] == name && p["runId"] == runID {
			out = append(out, p)
		}
	}
	return out
}

func payloadOf(t *testing.T, f map[string]any) map[string]any {
	t.Helper()
	if f["ok"] != true {
		t.Fatalf("request failed: %v", f)
	}
	p, _ := f["payload"].(map[string]any)
	return p
}

func errOf(t *testing.T, f map[string]any) (code, msg string) {
	t.Helper()
	e, ok := f["error"].(map[string]any)
	if f["ok"] != false || !ok {
		t.Fatalf("want an error response, got %v", f)
	}
	code, _ = e["code"].(string)
	msg, _ = e["message"].(string)
	return code, msg
}

func messageText(t *testing.T, p map[string]any) string {
	t.Helper()
	m, ok := p["message"].(map[string]any)
	if !ok {
		return ""
	}
	c := m["content"].([]any)[0].(map[string]any)
	return c["text"].(string)
}

var rw = []string{protocol.ScopeRead, protocol.ScopeWrite}

func TestAgentNotConfigured(t *testing.T) {
	g := agentGateway(t, nil, func(o *Options) { o.Agent.NotConfiguredHint = "config: /etc/clawgate.json" })
	op := dialOperator(t, g, rw...)
	for i, m := range []struct {
		method string
		params any
	}{
		{"agent", map[string]any{"message": "hi", "idempotencyKey": "k1"}},
		{"chat.send", map[string]any{"sessionKey": "main", "message": "hi", "idempotencyKey": "k2"}},
	} {
		code, msg := errOf(t, op.call(fmt.Sprint(i), m.method, m.params))
		if code != protocol.ErrUnavailable || !strings.Contains(msg, `"agent"`) || !strings.Contains(msg, "baseUrl") ||
			!strings.Contains(msg, "/etc/clawgate.json") {
			t.Errorf("%s: %s %q", m.method, code, msg)
		}
	}
	// Reads work without a backend.
	h := payloadOf(t, op.call("h", "chat.history", map[string]any{"sessionKey": "main"}))
	if msgs := h["messages"].([]any); len(msgs) != 0 {
		t.Fatalf("history %v", h)
	}
	l := payloadOf(t, op.call("l", "sessions.list", map[string]any{}))
	if l["count"] != float64(0) {
		t.Fatalf("sessions.list %v", l)
	}
	// hello-ok advertises the methods and events.
	c := g.dialClient(t, nil)
	for _, m := range []string{"agent", "agent.wait", "chat.send", "chat.history", "chat.abort", "sessions.list"} {
		if !containsStr(c.Hello().Features.Methods, m) {
			t.Errorf("hello-ok lacks method %s", m)
		}
	}
	for _, e := range []string{"agent", "chat"} {
		if !containsStr(c.Hello().Features.Events, e) {
			t.Errorf("hello-ok lacks event %s", e)
		}
	}
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestAgentTwoResponses: ack, events, final under the same id; a retry
// with the same key gets the ack again and the backend runs once.
func TestAgentTwoResponses(t *testing.T) {
	fb := &fakeBackend{}
	release := make(chan struct{})
	started := make(chan string, 1)
	fb.stream = gatedStream(started, release)
	g := agentGateway(t, fb, nil)
	op := dialOperator(t, g, rw...)
	watcher := dialOperator(t, g, protocol.ScopeRead)

	op.req("a1", "agent", map[string]any{"message": "hello", "idempotencyKey": "run-1", "sessionKey": "s1"})
	ack := payloadOf(t, op.res("a1"))
	if ack["runId"] != "run-1" || ack["status"] != "accepted" || ack["acceptedAt"] == nil {
		t.Fatalf("ack %v", ack)
	}
	<-started
	// A retry mid-run: the same ack, no second run.
	op.req("a2", "agent", map[string]any{"message": "hello", "idempotencyKey": "run-1", "sessionKey": "s1"})
	if again := payloadOf(t, op.res("a2")); again["runId"] != "run-1" || again["status"] != "accepted" || again["acceptedAt"] != ack["acceptedAt"] {
		t.Fatalf("retry ack %v", again)
	}
	close(release)
	final := payloadOf(t, op.res("a1"))
	if final["status"] != "ok" || final["summary"] != "completed" {
		t.Fatalf("final %v", final)
	}
	res := final["result"].(map[string]any)
	if pl := res["payloads"].([]any); len(pl) != 1 || pl[0].(map[string]any)["text"] != "partial done" {
		t.Fatalf("final result %v", res)
	}
	if f2 := payloadOf(t, op.res("a2")); f2["status"] != "ok" {
		t.Fatalf("retry final %v", f2)
	}
	if n := fb.callCount(); n != 1 {
		t.Fatalf("backend ran %d times", n)
	}

	// The watcher (read scope only) saw the run's agent and chat events.
	watcher.chatState("run-1", "final")
	ag := watcher.events("agent", "run-1")
	if len(ag) < 3 {
		t.Fatalf("agent events %v", ag)
	}
	first, last := ag[0], ag[len(ag)-1]
	if first["stream"] != "lifecycle" || first["data"].(map[string]any)["phase"] != "start" ||
		last["stream"] != "lifecycle" || last["data"].(map[string]any)["phase"] != "end" {
		t.Fatalf("lifecycle events %v ... %v", first, last)
	}
	for i, e := range ag {
		if e["seq"] != float64(i+1) {
			t.Fatalf("agent event %d has seq %v", i, e["seq"])
		}
	}
	// agent.wait on the finished run.
	w := payloadOf(t, op.call("w", "agent.wait", map[string]any{"runId": "run-1", "timeoutMs": 1000}))
	if w["status"] != "ok" || w["endedAt"] == nil {
		t.Fatalf("agent.wait %v", w)
	}
	w = payloadOf(t, op.call("w2", "agent.wait", map[string]any{"runId": "nope", "timeoutMs": 50}))
	if w["status"] != "timeout" {
		t.Fatalf("agent.wait unknown %v", w)
	}
	validateOfficial(t, "AgentEvent", ag...)
	validateOfficial(t, "ChatEvent", watcher.events("chat", "run-1")...)
}

// TestChatStreaming: chat.send answers started, then in_flight for the
// same key; deltas are cumulative and throttled; final closes the run and
// the history holds both messages.
func TestChatStreaming(t *testing.T) {
	fb := &fakeBackend{}
	release := make(chan struct{})
	fb.stream = func(ctx context.Context, req agent.Request, emit func(string)) (agent.Result, error) {
		for i := 0; i < 60; i++ {
			emit(fmt.Sprintf("w%d ", i))
			time.Sleep(10 * time.Millisecond)
			if i == 5 {
				<-release
			}
		}
		return agent.Result{StopReason: "stop"}, nil
	}
	g := agentGateway(t, fb, nil)
	op := dialOperator(t, g, rw...)
	start := time.Now()
	send := map[string]any{"sessionKey": "main", "message": "count", "idempotencyKey": "c-1"}
	if p := payloadOf(t, op.call("s1", "chat.send", send)); p["runId"] != "c-1" || p["status"] != "started" {
		t.Fatalf("chat.send %v", p)
	}
	if p := payloadOf(t, op.call("s2", "chat.send", send)); p["status"] != "in_flight" {
		t.Fatalf("repeat chat.send %v", p)
	}
	close(release)
	final := op.chatState("c-1", "final")
	elapsed := time.Since(start)
	var want strings.Builder
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&want, "w%d ", i)
	}
	if messageText(t, final) != want.String() || final["stopReason"] != "stop" {
		t.Fatalf("final %v", final)
	}
	deltas := op.events("chat", "c-1")
	deltas = deltas[:len(deltas)-1]
	if len(deltas) < 2 {
		t.Fatalf("only %d deltas", len(deltas))
	}
	// At most one delta per 150 ms (plus the first, which goes at once).
	if max := int(elapsed/deltaInterval) + 2; len(deltas) > max {
		t.Fatalf("%d deltas in %v, want at most %d", len(deltas), elapsed, max)
	}
	prev, joined := "", ""
	for i, d := range deltas {
		text := messageText(t, d)
		if d["state"] != "delta" || !strings.HasPrefix(text, prev) || d["seq"] != float64(i+1) {
			t.Fatalf("delta %d: %v (previous text %q)", i, d, prev)
		}
		joined += d["deltaText"].(string)
		prev = text
	}
	if joined != prev {
		t.Fatalf("deltaText pieces %q do not add up to %q", joined, prev)
	}
	if final["seq"] != float64(len(deltas)+1) {
		t.Fatalf("final seq %v after %d deltas", final["seq"], len(deltas))
	}
	if p := payloadOf(t, op.call("s3", "chat.send", send)); p["status"] != "ok" {
		t.Fatalf("chat.send after the run: %v", p)
	}
	h := payloadOf(t, op.call("h", "chat.history", map[string]any{"sessionKey": "main"}))
	msgs := h["messages"].([]any)
	if len(msgs) != 2 || h["sessionId"] == "" {
		t.Fatalf("history %v", h)
	}
	u, a := msgs[0].(map[string]any), msgs[1].(map[string]any)
	if u["role"] != "user" || messageText(t, map[string]any{"message": u}) != "count" ||
		a["role"] != "assistant" || messageText(t, map[string]any{"message": a}) != want.String() || a["runId"] != "c-1" {
		t.Fatalf("history messages %v", msgs)
	}
	l := payloadOf(t, op.call("l", "sessions.list", map[string]any{"includeLastMessage": true}))
	rows := l["sessions"].([]any)
	if len(rows) != 1 || rows[0].(map[string]any)["key"] != "main" || rows[0].(map[string]any)["lastMessagePreview"] == nil {
		t.Fatalf("sessions.list %v", l)
	}
	validateOfficial(t, "ChatEvent", op.events("chat", "c-1")...)
}

// TestChatAbort: chat.abort ends the run as aborted with its partial
// text, records it, and the agent caller gets its final.
func TestChatAbort(t *testing.T) {
	fb := &fakeBackend{}
	started := make(chan string, 1)
	fb.stream = gatedStream(started, make(chan struct{}))
	g := agentGateway(t, fb, nil)
	op := dialOperator(t, g, rw...)

	op.req("a", "agent", map[string]any{"message": "long task", "idempotencyKey": "ab-1", "sessionKey": "main"})
	payloadOf(t, op.res("a"))
	<-started
	ab := payloadOf(t, op.call("x", "chat.abort", map[string]any{"sessionKey": "main"}))
	if ab["ok"] != true || ab["aborted"] != true || fmt.Sprint(ab["runIds"]) != "[ab-1]" {
		t.Fatalf("chat.abort %v", ab)
	}
	ev := op.chatState("ab-1", "aborted")
	if messageText(t, ev) != "partial" {
		t.Fatalf("aborted event %v", ev)
	}
	final := payloadOf(t, op.res("a"))
	if final["status"] != "ok" || final["summary"] != "aborted" ||
		final["result"].(map[string]any)["meta"].(map[string]any)["aborted"] != true {
		t.Fatalf("final %v", final)
	}
	w := payloadOf(t, op.call("w", "agent.wait", map[string]any{"runId": "ab-1"}))
	if w["aborted"] != true {
		t.Fatalf("agent.wait %v", w)
	}
	h := payloadOf(t, op.call("h", "chat.history", map[string]any{"sessionKey": "main"}))
	msgs := h["messages"].([]any)
	if last := msgs[len(msgs)-1].(map[string]any); last["stopReason"] != "aborted" {
		t.Fatalf("history %v", msgs)
	}
	// Nothing left to abort; "/stop" through chat.send is the same call.
	ab = payloadOf(t, op.call("y", "chat.send", map[string]any{"sessionKey": "main", "message": "/stop", "idempotencyKey": "z"}))
	if ab["aborted"] != false {
		t.Fatalf("second abort %v", ab)
	}
	validateOfficial(t, "ChatEvent", op.events("chat", "ab-1")...)
}

// TestAgentErrors: a backend failure becomes a chat error event with its
// kind and an ok:false final; a run timeout is AGENT_TIMEOUT.
func TestAgentErrors(t *testing.T) {
	fb := &fakeBackend{}
	fb.stream = func(ctx context.Context, req agent.Request, emit func(string)) (agent.Result, error) {
		if req.Prompt() == "slow" {
			<-ctx.Done()
			return agent.Result{}, context.Cause(ctx)
		}
		emit("half")
		return agent.Result{}, &agent.HTTPError{Status: 429, Message: "slow down"}
	}
	g := agentGateway(t, fb, nil)
	op := dialOperator(t, g, rw...)

	op.req("a", "agent", map[string]any{"message": "hi", "idempotencyKey": "e-1"})
	payloadOf(t, op.res("a"))
	ev := op.chatState("e-1", "error")
	if ev["errorKind"] != "rate_limit" || !strings.Contains(ev["errorMessage"].(string), "slow down") || ev["sessionKey"] != "main" {
		t.Fatalf("error event %v", ev)
	}
	f := op.res("a")
	code, msg := errOf(t, f)
	if code != protocol.ErrUnavailable || !strings.Contains(msg, "429") || f["payload"].(map[string]any)["status"] != "error" {
		t.Fatalf("final %v", f)
	}
	if w := payloadOf(t, op.call("w", "agent.wait", map[string]any{"runId": "e-1"})); w["status"] != "error" {
		t.Fatalf("agent.wait %v", w)
	}

	op.req("b", "agent", map[string]any{"message": "slow", "idempotencyKey": "e-2", "timeout": 1})
	payloadOf(t, op.res("b"))
	if ev := op.chatState("e-2", "error"); ev["errorKind"] != "timeout" {
		t.Fatalf("timeout event %v", ev)
	}
	if code, _ := errOf(t, op.res("b")); code != protocol.ErrAgentTimeout {
		t.Fatalf("timeout final code %s", code)
	}
	validateOfficial(t, "ChatEvent", op.events("chat", "e-1")...)
	validateOfficial(t, "AgentEvent", op.events("agent", "e-1")...)
}

// TestChatParamsAndScopes: bad params get INVALID_REQUEST, writes need
// write scope, and chat/agent events reach only read-scoped operators.
func TestChatParamsAndScopes(t *testing.T) {
	fb := &fakeBackend{}
	g := agentGateway(t, fb, nil)
	op := dialOperator(t, g, rw...)
	bad := []struct {
		method string
		params map[string]any
		want   string
	}{
		{"chat.send", map[string]any{"sessionKey": "main", "message": "x"}, "idempotencyKey"},
		{"chat.send", map[string]any{"sessionKey": strings.Repeat("k", 513), "message": "x", "idempotencyKey": "i"}, "sessionKey"},
		{"chat.send", map[string]any{"sessionKey": "a\nb", "message": "x", "idempotencyKey": "i"}, "control characters"},
		{"chat.send", map[string]any{"sessionKey": "main", "message": "  ", "idempotencyKey": "i"}, "message or attachment required"},
		{"chat.send", map[string]any{"sessionKey": "main", "message": "x", "idempotencyKey": "i", "bogus": 1}, "unexpected property"},
		{"chat.send", map[string]any{"sessionKey": "main", "message": "x", "idempotencyKey": "i",
			"attachments": []any{map[string]any{"type": "image"}}}, "attachments are not supported"},
		{"agent", map[string]any{"message": "", "idempotencyKey": "i"}, "message"},
		{"agent", map[string]any{"message": strings.Repeat("x", maxMessageRunes+1), "idempotencyKey": "i"}, "too long"},
		{"chat.history", map[string]any{"sessionKey": "main", "limit": 1001}, "limit"},
		{"agent.wait", map[string]any{}, "runId"},
	}
	for i, c := range bad {
		code, msg := errOf(t, op.call(fmt.Sprint("b", i), c.method, c.params))
		if code != protocol.ErrInvalidRequest || !strings.Contains(msg, c.want) {
			t.Errorf("%s %v: %s %q, want INVALID_REQUEST mentioning %q", c.method, c.params, code, msg, c.want)
		}
	}
	if fb.callCount() != 0 {
		t.Fatal("a refused request reached the backend")
	}

	reader := dialOperator(t, g, protocol.ScopeRead)
	blind := dialOperator(t, g) // no scopes: no chat or agent events
	code, _ := errOf(t, reader.call("r", "chat.send", map[string]any{"sessionKey": "main", "message": "x", "idempotencyKey": "r"}))
	if code != protocol.ErrForbidden {
		t.Fatalf("read-only chat.send: %s", code)
	}
	payloadOf(t, op.call("s", "chat.send", map[string]any{"sessionKey": "main", "message": "x", "idempotencyKey": "ok-1"}))
	reader.chatState("ok-1", "final")
	// A later broadcast everyone gets proves blind's queue was flushed.
	g.srv.bus.broadcast(protocol.EventTick, protocol.TickPayload{Ts: 1}, nil, nil)
	blind.until("tick", func(m map[string]any) bool { return m["event"] == "tick" })
	for _, f := range blind.frames {
		if f["event"] == "chat" || f["event"] == "agent" {
			t.Fatalf("scope-less connection received %v", f)
		}
	}
}

// TestChatSessionQueue: runs of one session go one at a time, and the
// second sees the first's reply in its context.
func TestChatSessionQueue(t *testing.T) {
	fb := &fakeBackend{}
	release := make(chan struct{})
	started := make(chan string, 2)
	fb.stream = func(ctx context.Context, req agent.Request, emit func(string)) (agent.Result, error) {
		started <- req.RunID
		if req.RunID == "q-1" {
			<-release
		}
		emit("reply to " + req.Prompt())
		return agent.Result{StopReason: "stop"}, nil
	}
	g := agentGateway(t, fb, func(o *Options) { o.Agent.SystemPrompt = "You are terse." })
	op := dialOperator(t, g, rw...)
	payloadOf(t, op.call("1", "chat.send", map[string]any{"sessionKey": "q", "message": "one", "idempotencyKey": "q-1"}))
	if id := <-started; id != "q-1" {
		t.Fatalf("first run %s", id)
	}
	payloadOf(t, op.call("2", "chat.send", map[string]any{"sessionKey": "q", "message": "two", "idempotencyKey": "q-2"}))
	select {
	case id := <-started:
		t.Fatalf("run %s started while q-1 holds the session", id)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	op.chatState("q-2", "final")
	fb.mu.Lock()
	second := fb.calls[1].Messages
	fb.mu.Unlock()
	var roles []string
	for _, m := range second {
		roles = append(roles, m.Role+":"+m.Content)
	}
	want := "system:You are terse.|user:one|assistant:reply to one|user:two"
	if got := strings.Join(roles, "|"); got != want {
		t.Fatalf("second run's conversation\n got %s\nwant %s", got, want)
	}
}

// TestAgentShutdownAbortsRuns: stopping the gateway ends a running run as
// aborted, records it, and Serve returns.
func TestAgentShutdownAbortsRuns(t *testing.T) {
	fb := &fakeBackend{}
	started := make(chan string, 1)
	fb.stream = gatedStream(started, make(chan struct{}))
	g := agentGateway(t, fb, nil)
	op := dialOperator(t, g, rw...)
	payloadOf(t, op.call("1", "chat.send", map[string]any{"sessionKey": "main", "message": "hang", "idempotencyKey": "sd-1"}))
	<-started
	g.stop()
	_, msgs, err := g.srv.agents.store().SessionHistory("main", 0)
	if err != nil || len(msgs) != 2 || msgs[1].StopReason != "aborted" || msgs[1].Text != "partial" {
		t.Fatalf("history after shutdown %+v %v", msgs, err)
	}
	if _, _, err := g.srv.agents.start(runSpec{id: "late", sessionKey: "main", message: "x"}); err == nil {
		t.Fatal("a run started after shutdown")
	}
}

// TestWebChatHandler: GET requests that are not upgrades go to the
// configured handler after the Host check; other methods are 404.
func TestWebChatHandler(t *testing.T) {
	g := startGateway(t, func(o *Options) {
		o.WebChat = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("page " + r.URL.Path)) })
	})
	get := func(method, host string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+g.addr+"/app.js", nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, resp.StatusCode)
		buf := make([]byte, 64)
		n, _ := resp.Body.Read(buf)
		return resp.StatusCode, string(buf[:n])
	}
	if code, body := get("GET", ""); code != 200 || body != "page /app.js" {
		t.Fatalf("GET: %d %q", code, body)
	}
	if code, _ := get("GET", "rebind.evil"); code != 403 {
		t.Fatalf("GET with a foreign Host: %d", code)
	}
	if code, _ := get("POST", ""); code != 404 {
		t.Fatalf("POST: %d", code)
	}
}

// validateOfficial checks payloads against a definition of the official
// protocol.schema.json when CLAWGATE_OPENCLAW_SCHEMA points at it.
func validateOfficial(t *testing.T, def string, payloads ...map[string]any) {
	t.Helper()
	path := os.Getenv("CLAWGATE_OPENCLAW_SCHEMA")
	if path == "" {
		return
	}
	sch := officialSchema(t, path, def)
	for _, p := range payloads {
		raw, _ := json.Marshal(p)
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("%s payload %s does not match the official schema: %v", def, raw, err)
		}
	}
}

var (
	officialMu    sync.Mutex
	officialCache = map[string]*jsonschema.Schema{}
)

func officialSchema(t *testing.T, path, def string) *jsonschema.Schema {
	t.Helper()
	officialMu.Lock()
	defer officialMu.Unlock()
	if s := officialCache[def]; s != nil {
		return s
	}
	// Compile the one definition on its own: the whole document has ECMA
	// patterns Go's regexp cannot compile (test/compat translates them),
	// and the event definitions reference nothing else.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Definitions map[string]json.RawMessage `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || doc.Definitions[def] == nil {
		t.Fatalf("official schema has no definition %s (%v)", def, err)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(doc.Definitions[def])))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	id := "https://openclaw.ai/" + def + ".json"
	if err := c.AddResource(id, v); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		t.Fatalf("compile %s: %v", def, err)
	}
	officialCache[def] = s
	return s
}
