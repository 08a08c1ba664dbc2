package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// TestHeartbeatPeriodic: heartbeats run on their period as agent turns in
// the main session and reach every connection (nodes included) as
// heartbeat events; last-heartbeat returns the latest; set-heartbeats
// turns them off and on.
func TestHeartbeatPeriodic(t *testing.T) {
	clock := newTestClock(time.Now())
	g := startCronGateway(t, clock, func(o *Options) { o.Automation.HeartbeatEvery = 20 * time.Millisecond })
	g.turns.mu.Lock()
	g.turns.reply = "HEARTBEAT_OK"
	g.turns.mu.Unlock()
	ev := &nodeEvents{}
	op := g.dialClient(t, func(o *client.Options) { o.OnEvent = ev.add })
	nodeEv := &nodeEvents{}
	g.dialClient(t, func(o *client.Options) {
		o.Role, o.Scopes, o.ClientID, o.ClientMode, o.OnEvent = protocol.RoleNode, nil, "node-host", "node", nodeEv.add
	})
	if !containsStr(op.Hello().Features.Events, "heartbeat") || !containsStr(op.Hello().Features.Events, "cron") {
		t.Fatalf("hello-ok events lack heartbeat/cron: %v", op.Hello().Features.Events)
	}
	waitFor(t, "two heartbeats at the operator and the node", func() bool {
		return len(ev.named("heartbeat")) >= 2 && len(nodeEv.named("heartbeat")) >= 2
	})
	for _, p := range ev.named("heartbeat") {
		if p["status"] != "ok-token" || p["sessionKey"] != "main" || p["ts"] == nil {
			t.Fatalf("heartbeat %v", p)
		}
	}
	for _, c := range g.turns.all() {
		if c.session != "main" || !strings.Contains(c.message, "HEARTBEAT_OK") {
			t.Fatalf("turn %+v", c)
		}
	}
	last := call(t, op, "last-heartbeat", nil)
	if last["status"] != "ok-token" {
		t.Fatalf("last-heartbeat %v", last)
	}

	// Off: no more turns. (A beat already past its check may finish.)
	if r := call(t, op, "set-heartbeats", map[string]any{"enabled": false}); r["ok"] != true || r["enabled"] != false {
		t.Fatalf("set-heartbeats %v", r)
	}
	time.Sleep(50 * time.Millisecond)
	n := g.turns.count()
	time.Sleep(200 * time.Millisecond) // ten periods
	if m := g.turns.count(); m != n {
		t.Fatalf("%d heartbeat turns while heartbeats were off", m-n)
	}
	// A wake while off says why nothing ran.
	call(t, op, "wake", map[string]any{"mode": "now", "text": "anyone?"})
	waitFor(t, "the disabled notice", func() bool {
		l := ev.named("heartbeat")
		return l[len(l)-1]["reason"] == "disabled"
	})
	// On again.
	call(t, op, "set-heartbeats", map[string]any{"enabled": true})
	waitFor(t, "heartbeats to resume", func() bool { return g.turns.count() > n })
	// The queued wake text went with the first heartbeat after.
	found := false
	for _, c := range g.turns.all() {
		found = found || strings.Contains(c.message, "- anyone?")
	}
	if !found {
		t.Fatal("the text queued while heartbeats were off never reached the agent")
	}
	// set-heartbeats is admin-only and needs a boolean.
	re := callErr(t, op, "set-heartbeats", map[string]any{})
	if re.Message != "invalid set-heartbeats params: must have required property 'enabled'" {
		t.Fatalf("set-heartbeats {}: %v", re)
	}
	ro := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeRead} })
	call(t, ro, "last-heartbeat", nil)
	_, err := ro.Call(context.Background(), "set-heartbeats", map[string]any{"enabled": false})
	wantRemote(t, err, protocol.ErrForbidden, "missing scope: operator.admin", protocol.DetailMissingScope)
}

// TestWake: wake next-heartbeat queues text; wake now runs a heartbeat at
// once carrying everything queued; a reply the agent wants to share is
// reported (target-none) with its preview kept out of the open event.
func TestWake(t *testing.T) {
	clock := newTestClock(time.Now())
	g := startCronGateway(t, clock, nil) // no periodic heartbeats
	g.turns.mu.Lock()
	g.turns.reply = "The backup finished; 3 files changed."
	g.turns.mu.Unlock()
	ev := &nodeEvents{}
	op := g.dialClient(t, func(o *client.Options) { o.OnEvent = ev.add; o.Scopes = []string{protocol.ScopeWrite} })
	if last, err := op.Call(context.Background(), "last-heartbeat", nil); err != nil || (len(last) != 0 && string(last) != "null") {
		t.Fatalf("last-heartbeat before any = %s %v", last, err)
	}
	if r := call(t, op, "wake", map[string]any{"mode": "next-heartbeat", "text": "backup done"}); r["ok"] != true {
		t.Fatalf("wake %v", r)
	}
	time.Sleep(30 * time.Millisecond)
	if n := g.turns.count(); n != 0 {
		t.Fatalf("next-heartbeat ran %d turns at once", n)
	}
	call(t, op, "wake", map[string]any{"mode": "now", "text": "check the backup"})
	waitFor(t, "the woken heartbeat", func() bool { return len(ev.named("heartbeat")) == 1 })
	c := g.turns.all()
	if len(c) != 1 || c[0].session != "main" || !strings.Contains(c[0].message, "- backup done\n- check the backup") {
		t.Fatalf("turns %+v", c)
	}
	p := ev.named("heartbeat")[0]
	if p["status"] != "skipped" || p["reason"] != "target-none" || p["preview"] != nil || msOf(p["events"]) != 2 {
		t.Fatalf("event %v", p)
	}
	last := call(t, op, "last-heartbeat", nil)
	if last["preview"] != "The backup finished; 3 files changed." {
		t.Fatalf("last-heartbeat %v", last)
	}
	// A wake aimed at a session runs there, at once.
	call(t, op, "wake", map[string]any{"mode": "next-heartbeat", "text": "ping", "sessionKey": "telegram:default:9"})
	waitFor(t, "the session heartbeat", func() bool { return g.turns.count() == 2 })
	if c := g.turns.all()[1]; c.session != "telegram:default:9" {
		t.Fatalf("session wake ran in %q", c.session)
	}
	// A failing agent: failed, with the reason.
	g.turns.mu.Lock()
	g.turns.err = errors.New("model overloaded")
	g.turns.mu.Unlock()
	call(t, op, "wake", map[string]any{"mode": "now", "text": "again"})
	waitFor(t, "the failed heartbeat", func() bool { l := ev.named("heartbeat"); return len(l) == 3 })
	if p := ev.named("heartbeat")[2]; p["status"] != "failed" || !strings.Contains(p["reason"].(string), "model overloaded") {
		t.Fatalf("failed event %v", p)
	}
	// Refusals.
	for _, tc := range []struct {
		params map[string]any
		msg    string
	}{
		{map[string]any{"mode": "later", "text": "x"}, "invalid wake params: at /mode: must match a schema in anyOf"},
		{map[string]any{"mode": "now"}, "invalid wake params: must have required property 'text'"},
		{map[string]any{"mode": "now", "text": "   "}, "invalid wake params: text must not be blank"},
		{map[string]any{"mode": "now", "text": "x", "agentId": "ops"}, "invalid wake params: unknown agentId ops"},
		{map[string]any{"mode": "now", "text": strings.Repeat("x", 20001)}, "invalid wake params: text is longer than 20000 characters"},
	} {
		if re := callErr(t, op, "wake", tc.params); re.Code != protocol.ErrInvalidRequest || re.Message != tc.msg {
			t.Errorf("wake %v: %s %q, want %q", tc.params, re.Code, re.Message, tc.msg)
		}
	}
}

// TestHeartbeatNoAgent: without an agent backend a woken heartbeat says so
// and keeps the queued events.
func TestHeartbeatNoAgent(t *testing.T) {
	g := startCronGateway(t, newTestClock(time.Now()), func(o *Options) { o.Agent.Backend = nil })
	ev := &nodeEvents{}
	op := g.dialClient(t, func(o *client.Options) { o.OnEvent = ev.add })
	call(t, op, "wake", map[string]any{"mode": "now", "text": "hello"})
	p := ev.wait(t, "heartbeat", nil)
	if p["status"] != "skipped" || p["reason"] != "no-agent" {
		t.Fatalf("event %v", p)
	}
	g.srv.auto.beats.mu.Lock()
	kept := g.srv.auto.beats.pending["main"]
	g.srv.auto.beats.mu.Unlock()
	if len(kept) != 1 || kept[0] != "hello" {
		t.Fatalf("pending %v", kept)
	}
}

// TestCronSystemEventWakes: a systemEvent job with wakeMode now hands its
// text to a heartbeat at once.
func TestCronSystemEventWakes(t *testing.T) {
	clock := newTestClock(mustTime(t, "2026-01-05T10:00:00Z"))
	g := startCronGateway(t, clock, nil)
	g.turns.mu.Lock()
	g.turns.reply = "HEARTBEAT_OK"
	g.turns.mu.Unlock()
	op := g.dialClient(t, nil)
	id := call(t, op, "cron.add", map[string]any{"name": "standup", "sessionTarget": "main", "wakeMode": "now",
		"schedule": map[string]any{"kind": "cron", "expr": "0 11 * * *", "tz": "UTC"},
		"payload":  map[string]any{"kind": "systemEvent", "text": "standup in 5 minutes"}})["id"].(string)
	g.advance(mustTime(t, "2026-01-05T11:00:00Z"))
	waitFor(t, "the heartbeat turn", func() bool { return g.turns.count() == 1 })
	if c := g.turns.all()[0]; c.session != "main" || !strings.Contains(c.message, "- standup in 5 minutes") {
		t.Fatalf("turn %+v", c)
	}
	var runs []map[string]any
	waitFor(t, "the run record", func() bool { runs = g.runs(t, op, id); return len(runs) == 1 })
	if runs[0]["status"] != "ok" || runs[0]["summary"] != "queued; heartbeat woken" {
		t.Fatalf("run %v", runs[0])
	}
}

// TestHeartbeatHealth: the health summary reports the heartbeat schedule
// and whether heartbeats are on.
func TestHeartbeatHealth(t *testing.T) {
	g := startCronGateway(t, newTestClock(time.Now()), func(o *Options) { o.Automation.HeartbeatEvery = 90 * time.Minute })
	op := g.dialClient(t, nil)
	check := func(enabled bool) {
		t.Helper()
		h := call(t, op, "health", nil)
		hb := h["agents"].([]any)[0].(map[string]any)["heartbeat"].(map[string]any)
		if msOf(h["heartbeatSeconds"]) != 5400 || hb["every"] != "1h30m" || msOf(hb["everyMs"]) != 5400000 || hb["enabled"] != enabled {
			t.Fatalf("health heartbeat: %v %v", h["heartbeatSeconds"], hb)
		}
	}
	check(true)
	call(t, op, "set-heartbeats", map[string]any{"enabled": false})
	check(false)
	for d, want := range map[time.Duration]string{30 * time.Minute: "30m", time.Hour: "1h", 90 * time.Second: "1m30s", 2*time.Hour + 5*time.Minute: "2h5m"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
