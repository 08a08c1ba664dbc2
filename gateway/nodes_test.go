package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/store/bolt"
)

// Nodes through the wire: a real gateway with a real pairing.Manager over a
// bbolt file, real Go clients as operators and as nodes.

// nodeGateway is a gateway with pairing and a settable clock offset.
type nodeGateway struct {
	*testGateway
	pm     *pairing.Manager
	offset atomic.Int64 // added to time.Now, in nanoseconds
}

func startNodeGateway(t testing.TB, mod func(*Options)) *nodeGateway {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "clawgate.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := pairing.New(db, pairing.Options{})
	if err != nil {
		_ = db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pm.Close(); err != nil {
			t.Errorf("pairing.Close: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("bolt.Close: %v", err)
		}
	})
	ng := &nodeGateway{pm: pm}
	ng.testGateway = startGateway(t, func(o *Options) {
		o.Pairing = pm
		o.Now = func() time.Time { return time.Now().Add(time.Duration(ng.offset.Load())) }
		if mod != nil {
			mod(o)
		}
	})
	return ng
}

// operator connects a local signed operator device (approved silently)
// with scopes.
func (g *nodeGateway) operator(t testing.TB, scopes ...string) (*client.Client, *nodeEvents) {
	t.Helper()
	ev := &nodeEvents{}
	c := g.dialClient(t, func(o *client.Options) {
		o.Scopes = scopes
		o.OnEvent = ev.add
	})
	return c, ev
}

// nodeEvents records events a client received.
type nodeEvents struct {
	mu  sync.Mutex
	evs []client.Event
}

func (l *nodeEvents) add(e client.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

// named returns the payloads of the events called name.
func (l *nodeEvents) named(name string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, e := range l.evs {
		if e.Name == name {
			var p map[string]any
			_ = json.Unmarshal(e.Payload, &p)
			out = append(out, p)
		}
	}
	return out
}

func (l *nodeEvents) wait(t testing.TB, name string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range l.named(name) {
			if match == nil || match(p) {
				return p
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no %s event arrived", name)
	return nil
}

// testNode is a node connection. Invocations it receives are queued on
// requests; answer them with reply.
type testNode struct {
	t        testing.TB
	id       *client.Identity
	c        *client.Client
	requests chan map[string]any
	events   *nodeEvents
}

type nodeSpec struct {
	id       *client.Identity
	commands []string
	caps     []string
	platform string // default "linux"
	family   string // default "Linux"
	name     string
}

func (g *nodeGateway) node(t testing.TB, s nodeSpec) *testNode {
	t.Helper()
	if s.id == nil {
		id, err := client.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		s.id = id
	}
	if s.platform == "" {
		s.platform, s.family = "linux", "Linux"
	}
	n := &testNode{t: t, id: s.id, requests: make(chan map[string]any, 64), events: &nodeEvents{}}
	opts := client.Options{URL: g.url, Token: testToken, Identity: s.id, ClientID: "node-host", ClientMode: "node",
		Role: protocol.RoleNode, Platform: s.platform, DeviceFamily: s.family, DisplayName: s.name,
		Commands: s.commands, Caps: s.caps, OnEvent: func(e client.Event) {
			n.events.add(e)
			if e.Name == protocol.EventNodeInvokeRequest {
				var p map[string]any
				_ = json.Unmarshal(e.Payload, &p)
				n.requests <- p
			}
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, opts)
	if err != nil {
		t.Fatalf("node dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	n.c = c
	return n
}

// next waits for the next invocation request.
func (n *testNode) next() map[string]any {
	n.t.Helper()
	select {
	case p := <-n.requests:
		return p
	case <-time.After(5 * time.Second):
		n.t.Fatal("node received no node.invoke.request")
		return nil
	}
}

// none asserts that no invocation request arrived (within a short grace
// for one in flight).
func (n *testNode) none() {
	n.t.Helper()
	select {
	case p := <-n.requests:
		n.t.Fatalf("node received a request meant for another node: %v", p)
	case <-time.After(100 * time.Millisecond):
	}
}

// reply sends node.invoke.result for req with payload (ok) and returns the
// gateway's answer.
func (n *testNode) reply(req map[string]any, ok bool, payload any, nodeErr map[string]any) map[string]any {
	n.t.Helper()
	p := map[string]any{"id": req["id"], "nodeId": n.id.DeviceID, "ok": ok}
	if payload != nil {
		p["payloadJSON"] = string(mustJSON(payload))
	}
	if nodeErr != nil {
		p["error"] = nodeErr
	}
	return nodeCall(n.t, n.c, "node.invoke.result", p)
}

func nodeCall(t testing.TB, c *client.Client, method string, params any) map[string]any {
	t.Helper()
	raw, err := c.Call(context.Background(), method, params)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s result %s: %v", method, raw, err)
	}
	return m
}

// remoteErr asserts a refused call and returns the error.
func remoteErr(t testing.TB, err error) *client.RemoteError {
	t.Helper()
	var re *client.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("want a refused call, got %v", err)
	}
	return re
}

func detailsOf(re *client.RemoteError) map[string]any {
	d, _ := re.Details.(map[string]any)
	return d
}

// approveNode approves the node's pending surface as admin.
func (g *nodeGateway) approveNode(t testing.TB, admin *client.Client, nodeID string) {
	t.Helper()
	l := nodeCall(t, admin, "node.pair.list", map[string]any{})
	for _, p := range l["pending"].([]any) {
		pm := p.(map[string]any)
		if pm["nodeId"] == nodeID {
			nodeCall(t, admin, "node.pair.approve", map[string]any{"requestId": pm["requestId"]})
			return
		}
	}
	t.Fatalf("no pending node request for %s in %v", nodeID, l)
}

// invokeAsync runs node.invoke on its own goroutine.
func invokeAsync(c *client.Client, params map[string]any) <-chan invokeOutcome {
	ch := make(chan invokeOutcome, 1)
	go func() {
		raw, err := c.Call(context.Background(), "node.invoke", params)
		ch <- invokeOutcome{raw, err}
	}()
	return ch
}

type invokeOutcome struct {
	raw json.RawMessage
	err error
}

func (o invokeOutcome) result(t testing.TB) map[string]any {
	t.Helper()
	if o.err != nil {
		t.Fatalf("node.invoke: %v", o.err)
	}
	var m map[string]any
	_ = json.Unmarshal(o.raw, &m)
	return m
}

func await(t testing.TB, ch <-chan invokeOutcome) invokeOutcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(20 * time.Second):
		t.Fatal("node.invoke got no answer")
		return invokeOutcome{}
	}
}

func invokeParamsFor(nodeID, command string, params any) map[string]any {
	m := map[string]any{"nodeId": nodeID, "command": command, "idempotencyKey": "k-" + newUUID()}
	if params != nil {
		m["params"] = params
	}
	return m
}

// readyNode connects a node declaring commands and approves its surface.
func (g *nodeGateway) readyNode(t testing.TB, admin *client.Client, s nodeSpec) *testNode {
	t.Helper()
	n := g.node(t, s)
	g.approveNode(t, admin, n.id.DeviceID)
	n.events.wait(t, protocol.EventNodePairResolved, nil)
	return n
}

// ---------------------------------------------------------------------------

func TestNodeInvokeRoutesToTargetNodeOnly(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, _ := g.operator(t, protocol.ScopeAdmin)
	a := g.readyNode(t, admin, nodeSpec{commands: []string{"system.which", "system.run"}, name: "alpha"})
	b := g.readyNode(t, admin, nodeSpec{commands: []string{"system.which"}, name: "beta"})

	for i := 0; i < 3; i++ {
		target, other := a, b
		if i%2 == 1 {
			target, other = b, a
		}
		ch := invokeAsync(admin, map[string]any{"nodeId": target.id.DeviceID, "command": "system.which",
			"params": map[string]any{"bins": []string{"sh"}}, "timeoutMs": 5000, "idempotencyKey": "idem-1"})
		req := target.next()
		other.none()
		// The request as the node sees it (NodeInvokeRequestEvent).
		if req["nodeId"] != target.id.DeviceID || req["command"] != "system.which" || req["idempotencyKey"] != "idem-1" {
			t.Fatalf("request %v", req)
		}
		if req["paramsJSON"] != `{"bins":["sh"]}` {
			t.Fatalf("paramsJSON %q", req["paramsJSON"])
		}
		if tm, _ := req["timeoutMs"].(float64); tm <= 0 || tm > 5000 {
			t.Fatalf("timeoutMs %v", req["timeoutMs"])
		}
		ack := target.reply(req, true, map[string]any{"bins": map[string]string{"sh": "/bin/sh"}, "from": target.id.DeviceID}, nil)
		if ack["ok"] != true || ack["ignored"] != nil {
			t.Fatalf("result ack %v", ack)
		}
		res := await(t, ch).result(t)
		if res["ok"] != true || res["nodeId"] != target.id.DeviceID || res["command"] != "system.which" {
			t.Fatalf("invoke result %v", res)
		}
		if from := res["payload"].(map[string]any)["from"]; from != target.id.DeviceID {
			t.Fatalf("answer came from %v, want %s", from, target.id.DeviceID)
		}
		if _, ok := res["payloadJSON"].(string); !ok {
			t.Fatalf("payloadJSON %v", res["payloadJSON"])
		}
	}
}

func TestNodeInvokeTimeoutAndLateResult(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, _ := g.operator(t, protocol.ScopeAdmin)
	n := g.readyNode(t, admin, nodeSpec{commands: []string{"system.which"}})

	ch := invokeAsync(admin, map[string]any{"nodeId": n.id.DeviceID, "command": "system.which",
		"timeoutMs": 200, "idempotencyKey": "t1"})
	req := n.next()
	if _, has := req["paramsJSON"]; has {
		t.Fatalf("paramsJSON sent for an invoke without params: %v", req)
	}
	o := await(t, ch)
	re := remoteErr(t, o.err)
	if re.Code != protocol.ErrUnavailable || re.Message != "TIMEOUT: node invoke timed out" {
		t.Fatalf("timeout answer %s %q", re.Code, re.Message)
	}
	ne, _ := detailsOf(re)["nodeError"].(map[string]any)
	if ne["code"] != "TIMEOUT" {
		t.Fatalf("details %v", re.Details)
	}
	// The node answers after the deadline: acknowledged, ignored.
	late := n.reply(req, true, map[string]any{"late": true}, nil)
	if late["ok"] != true || late["ignored"] != true {
		t.Fatalf("late result ack %v, want {ok:true, ignored:true}", late)
	}
	// A result for an id that never existed is ignored the same way.
	bogus := n.reply(map[string]any{"id": "no-such-invoke"}, true, nil, nil)
	if bogus["ignored"] != true {
		t.Fatalf("unknown id ack %v", bogus)
	}
}

func TestNodeInvokeDefaultTimeoutIsThirtySeconds(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, _ := g.operator(t, protocol.ScopeAdmin)
	n := g.readyNode(t, admin, nodeSpec{commands: []string{"system.which"}})
	ch := invokeAsync(admin, invokeParamsFor(n.id.DeviceID, "system.which", nil))
	req := n.next()
	if req["timeoutMs"] != float64(30000) {
		t.Fatalf("timeoutMs = %v, want the 30000 default", req["timeoutMs"])
	}
	n.reply(req, true, map[string]any{}, nil)
	await(t, ch).result(t)
}

func TestNodeInvokeDisconnectFailsPendingAtOnce(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, _ := g.operator(t, protocol.ScopeAdmin)
	n := g.readyNode(t, admin, nodeSpec{commands: []string{"system.which"}})

	start := time.Now()
	ch := invokeAsync(admin, map[string]any{"nodeId": n.id.DeviceID, "command": "system.which",
		"timeoutMs": 600000, "idempotencyKey": "d1"})
	n.next()
	n.c.Close()
	o := await(t, ch)
	re := remoteErr(t, o.err)
	if re.Code != protocol.ErrUnavailable || re.Message != "DISCONNECTED: node disconnected (system.which)" {
		t.Fatalf("answer %s %q", re.Code, re.Message)
	}
	if d := detailsOf(re); d["nodeCommandDispatched"] != true {
		t.Fatalf("details %v", d)
	}
	// Far from the 10-minute timeout: it failed because the node left.
	if time.Since(start) > 5*time.Minute {
		t.Fatal("disconnect did not fail the pending invoke")
	}
	// The node is gone: the next invoke is NOT_CONNECTED.
	_, err := admin.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "system.which", nil))
	re = remoteErr(t, err)
	if re.Code != protocol.ErrUnavailable || re.Message != "node not connected" || re.DetailCode() != protocol.DetailNotConnected {
		t.Fatalf("after disconnect: %s %q %q", re.Code, re.Message, re.DetailCode())
	}
}

func TestNodeInvokeResultFromWrongNodeRefused(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, _ := g.operator(t, protocol.ScopeAdmin)
	a := g.readyNode(t, admin, nodeSpec{commands: []string{"system.which"}})
	b := g.readyNode(t, admin, nodeSpec{commands: []string{"system.which"}})

	ch := invokeAsync(admin, invokeParamsFor(a.id.DeviceID, "system.which", nil))
	req := a.next()

	// b claims to be a.
	_, err := b.c.Call(context.Background(), "node.invoke.result",
		map[string]any{"id": req["id"], "nodeId": a.id.DeviceID, "ok": true, "payloadJSON": `{"forged":true}`})
	re := remoteErr(t, err)
	if re.Code != protocol.ErrInvalidRequest || re.Message != "nodeId mismatch" {
		t.Fatalf("forged nodeId: %s %q", re.Code, re.Message)
	}
	// b answers a's invocation under its own id: not delivered.
	ack := b.reply(req, true, map[string]any{"forged": true}, nil)
	if ack["ignored"] != true {
		t.Fatalf("foreign result ack %v, want ignored", ack)
	}
	// An operator cannot answer either (node role only).
	_, err = admin.Call(context.Background(), "node.invoke.result",
		map[string]any{"id": req["id"], "nodeId": a.id.DeviceID, "ok": true})
	if re := remoteErr(t, err); re.Code != protocol.ErrInvalidRequest || !strings.HasPrefix(re.Message, "unauthorized role") {
		t.Fatalf("operator result: %s %q", re.Code, re.Message)
	}
	select {
	case o := <-ch:
		t.Fatalf("invoke answered by a forged result: %v %s", o.err, o.raw)
	case <-time.After(50 * time.Millisecond):
	}
	a.reply(req, true, map[string]any{"genuine": true}, nil)
	res := await(t, ch).result(t)
	if res["payload"].(map[string]any)["genuine"] != true {
		t.Fatalf("result %v", res)
	}
}

func TestNodeInvokeNodeError(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, _ := g.operator(t, protocol.ScopeAdmin)
	n := g.readyNode(t, admin, nodeSpec{commands: []string{"system.run"}})
	ch := invokeAsync(admin, invokeParamsFor(n.id.DeviceID, "system.run", map[string]any{"command": []string{"rm", "-rf", "/"}}))
	req := n.next()
	n.reply(req, false, nil, map[string]any{"code": "SYSTEM_RUN_DENIED", "message": "approval required"})
	re := remoteErr(t, await(t, ch).err)
	if re.Code != protocol.ErrUnavailable || re.Message != "SYSTEM_RUN_DENIED: approval required" {
		t.Fatalf("node error: %s %q", re.Code, re.Message)
	}
	if ne, _ := detailsOf(re)["nodeError"].(map[string]any); ne["code"] != "SYSTEM_RUN_DENIED" {
		t.Fatalf("details %v", re.Details)
	}
}

func TestNodeInvokeCommandPolicy(t *testing.T) {
	g := startNodeGateway(t, func(o *Options) {
		o.Nodes = NodePolicy{AllowCommands: []string{"camera.clip", "custom.echo"}, DenyCommands: []string{"screen.snapshot"}}
	})
	admin, _ := g.operator(t, protocol.ScopeAdmin)
	n := g.readyNode(t, admin, nodeSpec{commands: []string{"system.which", "camera.snap", "camera.clip",
		"screen.snapshot", "custom.echo", "worker.launch.v1", "made.up"}})

	// What the node may run: declared, approved and admitted.
	d := nodeCall(t, admin, "node.describe", map[string]any{"nodeId": n.id.DeviceID})
	cmds := d["commands"].([]any)
	var got []string
	for _, c := range cmds {
		got = append(got, c.(string))
	}
	want := []string{"camera.clip", "camera.snap", "custom.echo", "system.which"}
	if !slices.Equal(got, want) {
		t.Fatalf("effective commands %v, want %v (withheld: screen.snapshot denied, made.up unknown, worker.* private)", got, want)
	}

	for _, c := range []struct {
		cmd, reason, msgPart string
	}{
		{"camera.snap", "command not allowlisted", "requires an explicit allowCommands opt-in"},
		{"screen.snapshot", "command not allowlisted", "denyCommands"},
		{"made.up", "command not allowlisted", `not in the allowlist for platform "linux"`},
		{"system.run", "command not declared by node", "does not support"},
	} {
		_, err := admin.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, c.cmd, nil))
		re := remoteErr(t, err)
		if re.Code != protocol.ErrInvalidRequest || detailsOf(re)["reason"] != c.reason || detailsOf(re)["command"] != c.cmd ||
			!strings.Contains(re.Message, c.msgPart) {
			t.Errorf("%s: %s %q %v", c.cmd, re.Code, re.Message, re.Details)
		}
	}
	_, err := admin.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "worker.launch.v1", nil))
	if re := remoteErr(t, err); !strings.Contains(re.Message, "private node controls") {
		t.Errorf("private command: %q", re.Message)
	}
	_, err = admin.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "system.execApprovals.get", nil))
	if re := remoteErr(t, err); !strings.Contains(re.Message, "system.execApprovals") {
		t.Errorf("execApprovals: %q", re.Message)
	}
	n.none()

	// Allowed by config: reaches the node.
	ch := invokeAsync(admin, invokeParamsFor(n.id.DeviceID, "custom.echo", map[string]any{"x": 1}))
	req := n.next()
	n.reply(req, true, map[string]any{"x": 1}, nil)
	await(t, ch).result(t)
}

func TestNodeSurfacePendingUntilApproved(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, adminEv := g.operator(t, protocol.ScopeAdmin)
	n := g.node(t, nodeSpec{commands: []string{"system.which"}, name: "box"})

	ev := adminEv.wait(t, protocol.EventNodePairRequested, func(p map[string]any) bool { return p["nodeId"] == n.id.DeviceID })
	rid, _ := ev["requestId"].(string)
	if rs := ev["requiredApproveScopes"]; len(rs.([]any)) != 2 || rs.([]any)[1] != protocol.ScopeAdmin {
		t.Fatalf("requested event %v", ev)
	}
	// Not approved yet: nothing is effective, and the hint names the request.
	_, err := admin.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "system.which", nil))
	re := remoteErr(t, err)
	if detailsOf(re)["reason"] != "node did not declare commands" || !strings.Contains(re.Message, rid) {
		t.Fatalf("pending: %q %v", re.Message, re.Details)
	}
	// The node host's runner inventory publication names the request too.
	_, err = n.c.Call(context.Background(), "node.runnerInventory.update",
		map[string]any{"protocolFeatures": []string{"node-worker-supervisor-v6"}, "workerHost": map[string]any{"enabled": false}})
	if re := remoteErr(t, err); re.Code != protocol.ErrUnavailable || !strings.Contains(re.Message, rid) {
		t.Fatalf("runnerInventory before approval: %v", err)
	}
	l := nodeCall(t, admin, "node.list", map[string]any{})
	nodes := l["nodes"].([]any)
	if len(nodes) != 1 {
		t.Fatalf("node.list %v", l)
	}
	nv := nodes[0].(map[string]any)
	if nv["connected"] != true || nv["paired"] != true || nv["approvalState"] != "pending-approval" ||
		nv["pendingRequestId"] != rid || len(nv["commands"].([]any)) != 0 {
		t.Fatalf("node.list entry %v", nv)
	}

	// pairing + write is not enough for system.which.
	writer, _ := g.operator(t, protocol.ScopePairing, protocol.ScopeWrite)
	_, err = writer.Call(context.Background(), "node.pair.approve", map[string]any{"requestId": rid})
	re = remoteErr(t, err)
	if re.Code != protocol.ErrForbidden || re.Message != "missing scope: operator.admin" || re.DetailCode() != protocol.DetailMissingScope {
		t.Fatalf("approve without admin: %s %q %q", re.Code, re.Message, re.DetailCode())
	}
	res := nodeCall(t, admin, "node.pair.approve", map[string]any{"requestId": rid})
	if res["requestId"] != rid || res["node"].(map[string]any)["nodeId"] != n.id.DeviceID {
		t.Fatalf("approve result %v", res)
	}
	// The node hears about it (targeted, no pairing scope needed) and the
	// command is effective at once, without a reconnect.
	n.events.wait(t, protocol.EventNodePairResolved, func(p map[string]any) bool {
		return p["requestId"] == rid && p["decision"] == "approved" && p["nodeId"] == n.id.DeviceID
	})
	adminEv.wait(t, protocol.EventNodePairResolved, func(p map[string]any) bool { return p["requestId"] == rid })
	ack := nodeCall(t, n.c, "node.runnerInventory.update",
		map[string]any{"protocolFeatures": []string{"node-worker-supervisor-v6"}, "workerHost": map[string]any{"enabled": false}})
	if ack["nodeId"] != n.id.DeviceID {
		t.Fatalf("runnerInventory ack %v", ack)
	}
	ch := invokeAsync(admin, invokeParamsFor(n.id.DeviceID, "system.which", nil))
	n.reply(n.next(), true, map[string]any{"ok": 1}, nil)
	await(t, ch).result(t)

	// Reconnect with a widened surface: the approved part keeps working.
	n.c.Close()
	n2 := g.node(t, nodeSpec{id: n.id, commands: []string{"system.which", "system.run"}, name: "box"})
	ev2 := adminEv.wait(t, protocol.EventNodePairRequested, func(p map[string]any) bool { return p["requestId"] != rid })
	ch = invokeAsync(admin, invokeParamsFor(n.id.DeviceID, "system.which", nil))
	n2.reply(n2.next(), true, map[string]any{"ok": 2}, nil)
	await(t, ch).result(t)
	_, err = admin.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "system.run", nil))
	if re := remoteErr(t, err); !strings.Contains(re.Message, ev2["requestId"].(string)) {
		t.Fatalf("widened command before approval: %q", re.Message)
	}
}

func TestNodeInvokeMissingScope(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, _ := g.operator(t, protocol.ScopeAdmin)
	n := g.readyNode(t, admin, nodeSpec{commands: []string{"system.which", "fs.listDir"}})

	reader, _ := g.operator(t, protocol.ScopeRead)
	// read may list, not invoke.
	l := nodeCall(t, reader, "node.list", map[string]any{})
	if len(l["nodes"].([]any)) != 1 {
		t.Fatalf("reader node.list %v", l)
	}
	_, err := reader.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "system.which", nil))
	re := remoteErr(t, err)
	if re.Code != protocol.ErrForbidden || re.Message != "missing scope: operator.write" {
		t.Fatalf("reader invoke: %s %q", re.Code, re.Message)
	}
	for _, m := range []string{"node.pair.list", "node.pair.approve", "node.rename"} {
		_, err := reader.Call(context.Background(), m, map[string]any{"requestId": "x", "nodeId": n.id.DeviceID, "displayName": "x"})
		if re := remoteErr(t, err); re.Code != protocol.ErrForbidden || re.Message != "missing scope: operator.pairing" {
			t.Fatalf("reader %s: %s %q", m, re.Code, re.Message)
		}
	}
	// fs.listDir reaches the host's files: write is not enough.
	writer, _ := g.operator(t, protocol.ScopeWrite)
	_, err = writer.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "fs.listDir", nil))
	re = remoteErr(t, err)
	if re.Code != protocol.ErrForbidden || re.Message != "missing scope: operator.admin" {
		t.Fatalf("writer fs.listDir: %s %q", re.Code, re.Message)
	}
	// A node may not call operator methods.
	_, err = n.c.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "system.which", nil))
	if re := remoteErr(t, err); !strings.HasPrefix(re.Message, "unauthorized role") {
		t.Fatalf("node calling node.invoke: %q", re.Message)
	}
	n.none()
}

func TestNodeRemoveDisconnectsNode(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, adminEv := g.operator(t, protocol.ScopeAdmin)
	n := g.readyNode(t, admin, nodeSpec{commands: []string{"system.which"}})
	res := nodeCall(t, admin, "node.rename", map[string]any{"nodeId": n.id.DeviceID, "displayName": " garage "})
	if res["displayName"] != "garage" {
		t.Fatalf("rename %v", res)
	}
	d := nodeCall(t, admin, "node.describe", map[string]any{"nodeId": n.id.DeviceID})
	if d["displayName"] != "garage" || d["ts"] == nil {
		t.Fatalf("describe %v", d)
	}
	nodeCall(t, admin, "node.pair.remove", map[string]any{"nodeId": n.id.DeviceID})
	select {
	case <-n.c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("removed node still connected")
	}
	var ce *client.CloseError
	if !errors.As(n.c.Err(), &ce) || ce.Code != protocol.CloseAuthChanged {
		t.Fatalf("close %v, want 4001", n.c.Err())
	}
	adminEv.wait(t, protocol.EventNodePairResolved, func(p map[string]any) bool { return p["decision"] == "removed" })
	_, err := admin.Call(context.Background(), "node.describe", map[string]any{"nodeId": n.id.DeviceID})
	if re := remoteErr(t, err); re.Message != "unknown nodeId" {
		t.Fatalf("describe removed: %q", re.Message)
	}
	_, err = admin.Call(context.Background(), "node.pair.remove", map[string]any{"nodeId": n.id.DeviceID})
	if re := remoteErr(t, err); re.Message != "unknown nodeId" {
		t.Fatalf("second remove: %q", re.Message)
	}
}

// bootstrapConnect runs one raw signed connect presenting a bootstrap token
// (and no shared token) and returns the response frame.
func bootstrapConnect(t testing.TB, url string, id *client.Identity, bootstrap, role string, scopes []string) map[string]any {
	t.Helper()
	rc := dialRawURL(t, url, nil)
	nonce, ts := rc.challenge()
	mode, cid := "node", "node-host"
	if role == protocol.RoleOperator {
		mode, cid = "cli", "cli"
	}
	payload := authn.BuildPayloadV3(authn.PayloadFields{DeviceID: id.DeviceID, ClientID: cid, ClientMode: mode,
		Role: role, Scopes: scopes, SignedAtMs: ts, Token: bootstrap, Nonce: nonce, Platform: "linux", DeviceFamily: "Linux"})
	rc.sendJSON(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": map[string]any{
		"minProtocol": 3, "maxProtocol": 4,
		"client": map[string]any{"id": cid, "version": "1.0", "platform": "linux", "deviceFamily": "Linux", "mode": mode},
		"role":   role, "scopes": scopes, "auth": map[string]any{"bootstrapToken": bootstrap},
		"device": map[string]any{"id": id.DeviceID, "publicKey": id.PublicKey(), "signature": authn.SignPayload(id.Private, payload),
			"signedAt": ts, "nonce": nonce},
	}})
	f := rc.frame()
	rc.ws.Close()
	return f
}

func TestNodeSetupCodeSingleUseAndExpiry(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, adminEv := g.operator(t, protocol.ScopeAdmin)

	issue := func(profile string) SetupPayload {
		t.Helper()
		p := map[string]any{"publicUrl": g.remoteURL}
		if profile != "" {
			p["bootstrapProfile"] = profile
		}
		res := nodeCall(t, admin, "device.pair.setupCode", p)
		sp, err := DecodeSetupCode(res["setupCode"].(string))
		if err != nil {
			t.Fatalf("decode %v: %v", res["setupCode"], err)
		}
		if sp.URL != g.remoteURL || res["access"] != firstOf(profile, "node") || res["auth"] != "token" {
			t.Fatalf("setup code result %v / %+v", res, sp)
		}
		if strings.Contains(res["setupCode"].(string), testToken) || sp.BootstrapToken == testToken {
			t.Fatal("setup code carries the shared token")
		}
		if exp := time.UnixMilli(sp.ExpiresAtMs); time.Until(exp) > 11*time.Minute || time.Until(exp) < 9*time.Minute {
			t.Fatalf("expiresAtMs %v, want ~10 min", exp)
		}
		return sp
	}

	// A remote (non-local) device pairs with the code, without an operator.
	sp := issue("")
	dev := newUUIDIdentity(t)
	f := bootstrapConnect(t, sp.URL, dev, sp.BootstrapToken, protocol.RoleNode, []string{})
	if f["ok"] != true {
		t.Fatalf("bootstrap connect refused: %v", f)
	}
	auth := f["payload"].(map[string]any)["auth"].(map[string]any)
	devTok, _ := auth["deviceToken"].(string)
	if auth["role"] != "node" || devTok == "" {
		t.Fatalf("hello-ok auth %v", auth)
	}
	adminEv.wait(t, protocol.EventDevicePairResolved, func(p map[string]any) bool { return p["deviceId"] == dev.DeviceID })

	// Replayed: refused, for the same device and for another.
	for _, who := range []*client.Identity{dev, newUUIDIdentity(t)} {
		f := bootstrapConnect(t, sp.URL, who, sp.BootstrapToken, protocol.RoleNode, []string{})
		if errDetail(f) != protocol.DetailAuthBootstrapInvalid {
			t.Fatalf("replayed setup code: %v", f)
		}
	}
	// The device now connects with the device token it received.
	c, err := client.Dial(context.Background(), client.Options{URL: g.remoteURL, DeviceToken: devTok, Identity: dev,
		ClientID: "node-host", ClientMode: "node", Role: protocol.RoleNode, Platform: "linux", DeviceFamily: "Linux"})
	if err != nil {
		t.Fatalf("reconnect with the device token: %v", err)
	}
	c.Close()

	// A node code does not make an operator, and trying does not spend it.
	sp = issue("node")
	f = bootstrapConnect(t, sp.URL, newUUIDIdentity(t), sp.BootstrapToken, protocol.RoleOperator, []string{protocol.ScopeAdmin})
	if errDetail(f) != protocol.DetailAuthBootstrapInvalid {
		t.Fatalf("node code used for an admin operator: %v", f)
	}
	// Expired: 10 minutes later the code is void.
	g.offset.Store(int64(SetupCodeTTL + time.Second))
	f = bootstrapConnect(t, sp.URL, newUUIDIdentity(t), sp.BootstrapToken, protocol.RoleNode, []string{})
	if errDetail(f) != protocol.DetailAuthBootstrapInvalid {
		t.Fatalf("expired setup code: %v", f)
	}
	g.offset.Store(0)

	// The limited profile: an operator with read/write only.
	sp = issue("limited")
	f = bootstrapConnect(t, sp.URL, newUUIDIdentity(t), sp.BootstrapToken, protocol.RoleOperator, []string{protocol.ScopeRead, protocol.ScopeAdmin})
	if errDetail(f) != protocol.DetailAuthBootstrapInvalid {
		t.Fatalf("limited code for admin scope: %v", f)
	}
	f = bootstrapConnect(t, sp.URL, newUUIDIdentity(t), sp.BootstrapToken, protocol.RoleOperator, []string{protocol.ScopeRead})
	if f["ok"] != true {
		t.Fatalf("limited code: %v", f)
	}

	// Only admins issue codes.
	writer, _ := g.operator(t, protocol.ScopeWrite, protocol.ScopePairing)
	_, err = writer.Call(context.Background(), "device.pair.setupCode", map[string]any{})
	if re := remoteErr(t, err); re.Code != protocol.ErrForbidden || re.Message != "missing scope: operator.admin" {
		t.Fatalf("non-admin setup code: %s %q", re.Code, re.Message)
	}
}

func newUUIDIdentity(t testing.TB) *client.Identity {
	t.Helper()
	id, err := client.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestNodeExecApprovalGatesSystemRun(t *testing.T) {
	g := startNodeGateway(t, nil)
	admin, _ := g.operator(t, protocol.ScopeAdmin)
	n := g.readyNode(t, admin, nodeSpec{commands: []string{"system.run"}})
	// The requester (write + approvals) and a separate approver.
	req, _ := g.operator(t, protocol.ScopeWrite, protocol.ScopeApprovals)
	approver, approverEv := g.operator(t, protocol.ScopeApprovals)

	argv := []string{"/usr/bin/touch", "/tmp/x"}
	// Injected approval flags without a record never reach the node.
	_, err := req.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "system.run",
		map[string]any{"command": argv, "approved": true, "approvalDecision": "allow-always", "runId": "made-up"}))
	if re := remoteErr(t, err); re.DetailCode() != "UNKNOWN_APPROVAL_ID" {
		t.Fatalf("forged approval: %q %v", re.Message, re.Details)
	}
	// Without approval flags the flags are stripped, other fields pass.
	ch := invokeAsync(req, invokeParamsFor(n.id.DeviceID, "system.run",
		map[string]any{"command": argv, "cwd": "/tmp", "unknownField": 1}))
	got := n.next()
	var fwd map[string]any
	_ = json.Unmarshal([]byte(got["paramsJSON"].(string)), &fwd)
	if _, has := fwd["unknownField"]; has || fwd["approved"] != nil || fwd["cwd"] != "/tmp" {
		t.Fatalf("forwarded params %v", fwd)
	}
	n.reply(got, false, nil, map[string]any{"code": "SYSTEM_RUN_DENIED", "message": "approval required"})
	await(t, ch)

	// Ask for approval; the approver sees it and allows once.
	appr := make(chan invokeOutcome, 1)
	go func() {
		raw, err := req.Call(context.Background(), "exec.approval.request", map[string]any{
			"host": "node", "nodeId": n.id.DeviceID, "command": "touch /tmp/x",
			"systemRunPlan": map[string]any{"argv": argv, "cwd": "/tmp", "commandText": "touch /tmp/x", "agentId": nil, "sessionKey": nil},
			"timeoutMs":     60000})
		appr <- invokeOutcome{raw, err}
	}()
	ev := approverEv.wait(t, "exec.approval.requested", nil)
	id := ev["id"].(string)
	if r := ev["request"].(map[string]any); r["nodeId"] != n.id.DeviceID || r["command"] != "touch /tmp/x" {
		t.Fatalf("requested event %v", ev)
	}
	nodeCall(t, approver, "exec.approval.resolve", map[string]any{"id": id, "decision": "allow-once"})
	approverEv.wait(t, "exec.approval.resolved", func(p map[string]any) bool { return p["id"] == id })
	dec := await(t, appr).result(t)
	if dec["id"] != id || dec["decision"] != "allow-once" {
		t.Fatalf("approval answer %v", dec)
	}

	// Another operator cannot use it, nor can a different argv.
	_, err = admin.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "system.run",
		map[string]any{"command": argv, "cwd": "/tmp", "approved": true, "runId": id}))
	if re := remoteErr(t, err); re.DetailCode() != "APPROVAL_DEVICE_MISMATCH" {
		t.Fatalf("someone else's approval: %v", re.Details)
	}
	_, err = req.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "system.run",
		map[string]any{"command": []string{"/bin/rm", "-rf", "/"}, "cwd": "/tmp", "approved": true, "runId": id}))
	if re := remoteErr(t, err); re.DetailCode() != "APPROVAL_REQUEST_MISMATCH" {
		t.Fatalf("other argv: %v", re.Details)
	}
	// The requester's matching invoke carries the approval to the node.
	ch = invokeAsync(req, invokeParamsFor(n.id.DeviceID, "system.run",
		map[string]any{"command": argv, "cwd": "/tmp", "approved": true, "runId": id}))
	got = n.next()
	_ = json.Unmarshal([]byte(got["paramsJSON"].(string)), &fwd)
	if fwd["approved"] != true || fwd["approvalDecision"] != "allow-once" {
		t.Fatalf("approved params %v", fwd)
	}
	n.reply(got, true, map[string]any{"exitCode": 0}, nil)
	await(t, ch).result(t)
	// allow-once: a replay is refused.
	_, err = req.Call(context.Background(), "node.invoke", invokeParamsFor(n.id.DeviceID, "system.run",
		map[string]any{"command": argv, "cwd": "/tmp", "approved": true, "runId": id}))
	if re := remoteErr(t, err); re.DetailCode() != "APPROVAL_REQUIRED" {
		t.Fatalf("replayed approval: %v", re.Details)
	}
	n.none()
}

func TestNodeExecApprovalWithoutApproverLapses(t *testing.T) {
	g := startNodeGateway(t, nil)
	req, _ := g.operator(t, protocol.ScopeApprovals)
	res := nodeCall(t, req, "exec.approval.request", map[string]any{"command": "ls", "commandArgv": []string{"ls"}})
	if res["decision"] != nil {
		t.Fatalf("request without an approver: %v", res)
	}
	_, err := req.Call(context.Background(), "exec.approval.resolve", map[string]any{"id": res["id"], "decision": "allow-once"})
	if re := remoteErr(t, err); re.Message != "unknown or expired approval id" {
		t.Fatalf("resolve lapsed: %q", re.Message)
	}
	// Lapsed requests do not pile up against the pending cap.
	for i := 0; i < maxApprovals+10; i++ {
		if r := nodeCall(t, req, "exec.approval.request", map[string]any{"command": "ls", "commandArgv": []string{"ls"}}); r["decision"] != nil {
			t.Fatalf("request %d: %v", i, r)
		}
	}
}
