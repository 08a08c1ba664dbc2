package compat

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// envRealGateway opts in to the test that starts the real OpenClaw gateway.
const envRealGateway = "CLAWGATE_COMPAT_OPENCLAW_GATEWAY"

// startOpenClawGateway starts `openclaw gateway run` (token auth, loopback)
// in oc's home and waits for "[gateway] ready". The whole process group is
// killed at cleanup.
func startOpenClawGateway(t *testing.T, oc *openclaw, token string) int {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(oc.Node, oc.Bin, "gateway", "run", "--allow-unconfigured", "--auth", "token", "--token", token,
		"--bind", "loopback", "--port", strconv.Itoa(port))
	cmd.Env = oc.Env()
	cmd.Dir = oc.Home
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openclaw gateway: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = killGroup(cmd)
		<-done
		if t.Failed() {
			t.Logf("openclaw gateway output:\n%s", indent(out.String()))
		}
	})
	deadline := time.Now().Add(6 * time.Minute)
	for !strings.Contains(out.String(), "[gateway] ready") {
		select {
		case <-done:
			t.Fatalf("openclaw gateway exited before it was ready")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("openclaw gateway not ready within 6 min")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return port
}

// TestClawgateNodeRunAgainstOpenClawGateway: the other direction. The real
// OpenClaw 2026.9.6 gateway, `clawgate node run` as its node, and OpenClaw's
// own CLI as the operator: the node pairs (silently, on loopback), its
// surface waits for `openclaw nodes approve`, it shows in `openclaw nodes
// status`, `openclaw nodes invoke … system.which` returns its answer, and
// system.run is refused by the node's deny-by-default policy.
//
// Opt-in (CLAWGATE_COMPAT_OPENCLAW_GATEWAY=1): the real gateway takes 1–3
// minutes to start on a 2-core machine and, under heavy load, can fail its
// own 5 s startup lease check ("state lease heartbeat did not become
// ready").
func TestClawgateNodeRunAgainstOpenClawGateway(t *testing.T) {
	if os.Getenv(envRealGateway) != "1" {
		t.Skipf("set %s=1 to run (starts the real OpenClaw gateway: 1-3 min)", envRealGateway)
	}
	bin := requireBinary(t)
	gwHome := newOpenClaw(t)
	cli := newOpenClaw(t)
	token := randomToken(t)
	port := startOpenClawGateway(t, gwHome, token)
	url := "ws://127.0.0.1:" + strconv.Itoa(port)

	nodeState := filepath.Join(t.TempDir(), "node")
	if err := os.Mkdir(nodeState, 0o700); err != nil {
		t.Fatal(err)
	}
	node := exec.Command(bin, "node", "run", "--url", url, "--token", token, "--state-dir", nodeState, "--display-name", "cg-compat")
	node.Env = filteredEnv("OPENCLAW_GATEWAY_TOKEN", "CLAWGATE_GATEWAY_TOKEN")
	nodeOut := &syncBuffer{}
	node.Stdout, node.Stderr = nodeOut, nodeOut
	setChildAttrs(node)
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	nodeDone := make(chan struct{})
	go func() { _ = node.Wait(); close(nodeDone) }()
	t.Cleanup(func() {
		_ = killGroup(node)
		<-nodeDone
		if t.Failed() {
			t.Logf("clawgate node output:\n%s", indent(nodeOut.String()))
		}
	})

	// The node prints the request to approve (from the gateway's answer to
	// its runner inventory).
	var rid string
	deadline := time.Now().Add(2 * time.Minute)
	for rid == "" {
		if time.Now().After(deadline) {
			t.Fatal("clawgate node did not report a pending command surface")
		}
		time.Sleep(200 * time.Millisecond)
		sc := bufio.NewScanner(strings.NewReader(nodeOut.String()))
		for sc.Scan() {
			if _, after, ok := strings.Cut(sc.Text(), "openclaw nodes approve "); ok {
				rid, _, _ = strings.Cut(after, "`")
			}
		}
	}
	res := cli.CLI(t, "nodes", "approve", rid, "--url", url, "--token", token, "--json")
	requireExit(t, res, 0)

	var ident struct {
		DeviceID string `json:"deviceId"`
	}
	raw, err := os.ReadFile(filepath.Join(nodeState, "identity.json"))
	if err != nil || json.Unmarshal(raw, &ident) != nil || ident.DeviceID == "" {
		t.Fatalf("node identity: %v", err)
	}
	status := cli.CLI(t, "nodes", "status", "--url", url, "--token", token, "--json")
	requireExit(t, status, 0)
	st, _ := requireJSON(t, status).(map[string]any)
	found := false
	for _, x := range st["nodes"].([]any) {
		n := x.(map[string]any)
		if n["nodeId"] == ident.DeviceID {
			found = n["connected"] == true && n["approvalState"] == "approved" && contains(stringList(n["commands"]), "system.which")
		}
	}
	if !found {
		t.Fatalf("clawgate node not connected and approved in `openclaw nodes status`: %s", status.Stdout)
	}

	inv := cli.CLI(t, "nodes", "invoke", "--node", ident.DeviceID, "--command", "system.which",
		"--params", `{"bins":["sh","no-such-binary-compat"]}`, "--url", url, "--token", token, "--json")
	requireExit(t, inv, 0)
	v, _ := requireJSON(t, inv).(map[string]any)
	bins, _ := dig(v, "payload", "bins")
	bm, _ := bins.(map[string]any)
	if sh, _ := bm["sh"].(string); !filepath.IsAbs(sh) || len(bm) != 1 {
		t.Fatalf("system.which through the OpenClaw gateway: %s", inv.Stdout)
	}

	run := cli.CLI(t, "gateway", "call", "node.invoke", "--url", url, "--token", token, "--json", "--params",
		`{"nodeId":"`+ident.DeviceID+`","command":"system.run","params":{"command":["/bin/echo","hi"]},"idempotencyKey":"compat-run-1"}`)
	if run.Code == 0 || !strings.Contains(string(run.Stdout), "SYSTEM_RUN_DENIED") {
		t.Fatalf("system.run should be refused by the node's policy: %s", run)
	}
}
