package compat

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// nodeHostStartTimeout bounds how long the real node host may take to load
// and connect (it needs tens of seconds on a busy 2-core machine).
const nodeHostStartTimeout = 3 * time.Minute

// startOpenClawNode runs `openclaw node run` against g in the background
// (holding one OpenClaw slot) and stops it, with its whole process group,
// at cleanup. Its output is logged when the test fails.
func startOpenClawNode(t *testing.T, oc *openclaw, g *gateway, name string) *syncBuffer {
	t.Helper()
	nodeSlots <- struct{}{}
	cmd := exec.Command(oc.Node, oc.Bin, "node", "run", "--host", "127.0.0.1", "--port", portOf(g),
		"--no-tls", "--display-name", name)
	cmd.Env = oc.Env("OPENCLAW_GATEWAY_TOKEN=" + g.Token)
	cmd.Dir = oc.Home
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		<-nodeSlots
		t.Fatalf("start openclaw node run: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = killGroup(cmd)
		<-done
		<-nodeSlots
		if t.Failed() {
			t.Logf("openclaw node run output:\n%s", indent(out.String()))
		}
	})
	return out
}

func portOf(g *gateway) string { return strings.TrimPrefix(g.URL(), "ws://127.0.0.1:") }

// nodeEventLog records events for an operator client.
type nodeEventLog struct {
	mu  sync.Mutex
	evs []client.Event
}

func (l *nodeEventLog) add(e client.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

func (l *nodeEventLog) find(name string) (map[string]any, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.evs {
		if e.Name == name {
			var p map[string]any
			_ = json.Unmarshal(e.Payload, &p)
			return p, true
		}
	}
	return nil, false
}

func callMap(t *testing.T, c *client.Client, method string, params any) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	raw, err := c.Call(ctx, method, params)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: result %s: %v", method, raw, err)
	}
	return m
}

// TestOpenClawNodeRunPairsAndIsInvocable: OpenClaw's own headless node host
// (`openclaw node run`) connects to clawgate with role node and a signed
// device, is paired silently on loopback, declares its commands; its
// command surface waits for an operator's approval (node.pair.requested,
// node.pair.approve needing operator.admin for system.run-class commands);
// then it appears connected in node.list, and an operator's node.invoke of
// system.which through clawgate returns the node's real answer.
func TestOpenClawNodeRunPairsAndIsInvocable(t *testing.T) {
	t.Parallel()
	oc := newOpenClaw(t)
	g := startGateway(t)
	ps := loadProtocolSchema(t, requireEnvPath(t, envOpenClawSchema))

	ops := &nodeEventLog{}
	id, err := client.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	admin, err := client.Dial(ctx, client.Options{URL: g.URL(), Token: g.Token, Identity: id,
		Scopes: []string{protocol.ScopeAdmin}, OnEvent: ops.add})
	cancel()
	if err != nil {
		t.Fatalf("operator connect: %v", err)
	}
	defer admin.Close()

	nodeOut := startOpenClawNode(t, oc, g, "oc-compat-node")

	// The node host connects and declares its surface; pairing asks.
	var pending map[string]any
	deadline := time.Now().Add(nodeHostStartTimeout)
	for pending == nil {
		if time.Now().After(deadline) {
			t.Fatalf("openclaw node run did not connect within %v", nodeHostStartTimeout)
		}
		time.Sleep(250 * time.Millisecond)
		pending, _ = ops.find(protocol.EventNodePairRequested)
	}
	rid, _ := pending["requestId"].(string)
	nodeID, _ := pending["nodeId"].(string)
	if rid == "" || len(nodeID) != 64 {
		t.Fatalf("node.pair.requested payload %v", pending)
	}
	cmds := stringList(pending["commands"])
	if !contains(cmds, "system.which") || !contains(cmds, "system.run") {
		t.Fatalf("declared commands %v, want system.which and system.run among them", cmds)
	}

	// Listed as connected, paired, pending approval; nothing effective yet.
	nl := callMap(t, admin, "node.list", map[string]any{})
	n := findNode(t, nl, nodeID)
	if n["connected"] != true || n["paired"] != true || n["approvalState"] != "pending-approval" || n["clientId"] != "node-host" {
		t.Fatalf("node.list entry before approval: %v", n)
	}

	res := callMap(t, admin, "node.pair.approve", map[string]any{"requestId": rid})
	if node, _ := res["node"].(map[string]any); node["nodeId"] != nodeID {
		t.Fatalf("node.pair.approve result %v", res)
	}
	nl = callMap(t, admin, "node.list", map[string]any{})
	n = findNode(t, nl, nodeID)
	if n["approvalState"] != "approved" || !contains(stringList(n["commands"]), "system.which") {
		t.Fatalf("node.list entry after approval: %v", n)
	}
	if v := ps.def(t, "NodeInvokeParams"); v != nil {
		if err := v.Validate(roundTrip(t, map[string]any{"nodeId": nodeID, "command": "system.which",
			"params": map[string]any{"bins": []string{"sh"}}, "idempotencyKey": "compat-which-1"})); err != nil {
			t.Fatalf("the invoke we send does not match NodeInvokeParams: %v", err)
		}
	}

	// node.invoke system.which: the node host resolves it on its own PATH.
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	raw, err := admin.Call(ctx, "node.invoke", map[string]any{"nodeId": nodeID, "command": "system.which",
		"params": map[string]any{"bins": []string{"sh", "node", "no-such-binary-compat"}}, "idempotencyKey": "compat-which-1"})
	cancel()
	if err != nil {
		var re *client.RemoteError
		if errors.As(err, &re) {
			t.Fatalf("node.invoke system.which: %s %q %v", re.Code, re.Message, re.Details)
		}
		t.Fatalf("node.invoke system.which: %v", err)
	}
	var out struct {
		OK          bool    `json:"ok"`
		NodeID      string  `json:"nodeId"`
		Command     string  `json:"command"`
		PayloadJSON *string `json:"payloadJSON"`
		Payload     struct {
			Bins map[string]string `json:"bins"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("node.invoke result %s: %v", raw, err)
	}
	if !out.OK || out.NodeID != nodeID || out.Command != "system.which" || out.PayloadJSON == nil {
		t.Fatalf("node.invoke result %s", raw)
	}
	sh := out.Payload.Bins["sh"]
	if !filepath.IsAbs(sh) {
		t.Fatalf("system.which answered %s; want an absolute path for sh", raw)
	}
	if st, err := os.Stat(sh); err != nil || st.IsDir() {
		t.Fatalf("system.which's sh %q is not a file here: %v", sh, err)
	}
	if _, found := out.Payload.Bins["no-such-binary-compat"]; found {
		t.Fatalf("system.which found a binary that does not exist: %s", raw)
	}
	// The node host's own node (Node 24) is on its PATH: proof the answer
	// came from the node host's environment.
	if nodeBin := out.Payload.Bins["node"]; nodeBin == "" {
		t.Fatalf("system.which did not find node on the node host's PATH: %s", raw)
	}
	if strings.Contains(nodeOut.String(), "gateway connect failed") {
		t.Logf("node host reported connect failures before it connected:\n%s", indent(nodeOut.String()))
	}
}

func findNode(t *testing.T, list map[string]any, nodeID string) map[string]any {
	t.Helper()
	nodes, _ := list["nodes"].([]any)
	for _, x := range nodes {
		if m, _ := x.(map[string]any); m["nodeId"] == nodeID {
			return m
		}
	}
	t.Fatalf("node %s not in node.list %v", nodeID, list)
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
