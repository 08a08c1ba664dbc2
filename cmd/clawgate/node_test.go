package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// startNodeProc runs `clawgate node run` and stops it at cleanup.
func startNodeProc(t *testing.T, args ...string) (*exec.Cmd, *syncBuf) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"node", "run"}, args...)...)
	cmd.Env = append(os.Environ(), "CLAWGATE_GATEWAY_TOKEN=", "OPENCLAW_GATEWAY_TOKEN=", "CLAWGATE_STATE_DIR="+t.TempDir())
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("node output:\n%s", out.String())
		}
	})
	return cmd, out
}

func cliJSON(t *testing.T, state string, args ...string) map[string]any {
	t.Helper()
	out, err := runCLI(t, state, append(args, "--json")...)
	if err != nil {
		t.Fatalf("clawgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("clawgate %s: not JSON: %s", strings.Join(args, " "), out)
	}
	return m
}

// waitFor polls f until it returns true.
func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNodeRunEndToEnd: the real binary as gateway and as headless node.
// The node pairs on loopback, its commands wait for an operator's
// approval, system.which answers for real, system.run is refused until an
// operator approves that exact command, and the node reconnects with its
// device token alone.
func TestNodeRunEndToEnd(t *testing.T) {
	state := filepath.Join(t.TempDir(), "gw")
	gw := startGateway(t, state)
	url := fmt.Sprintf("ws://127.0.0.1:%d", gw.port)
	tok, err := os.ReadFile(filepath.Join(state, "gateway.token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	nodeState := filepath.Join(t.TempDir(), "node")
	if err := os.Mkdir(nodeState, 0o700); err != nil {
		t.Fatal(err)
	}
	node, nodeOut := startNodeProc(t, "--url", url, "--token", token, "--state-dir", nodeState, "--display-name", "e2e-box")

	var rid, nodeID string
	waitFor(t, "the node's pending command surface", func() bool {
		out, err := runCLI(t, state, "nodes", "pending", "--url", url, "--json")
		var l struct {
			Pending []struct {
				RequestID string   `json:"requestId"`
				NodeID    string   `json:"nodeId"`
				Commands  []string `json:"commands"`
			} `json:"pending"`
		}
		if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Pending) == 0 {
			return false
		}
		rid, nodeID = l.Pending[0].RequestID, l.Pending[0].NodeID
		return true
	})
	// The gateway lists the request as soon as it exists; the node prints
	// it once its answer arrives, a moment later on a loaded machine.
	waitFor(t, "the node to print the request to approve", func() bool {
		return strings.Contains(nodeOut.String(), rid)
	})
	cliJSON(t, state, "nodes", "approve", rid, "--url", url)

	which := cliJSON(t, state, "nodes", "invoke", nodeID, "system.which", "--params", `{"bins":["sh","no-such-binary-xyz"]}`, "--url", url)
	bins := which["payload"].(map[string]any)["bins"].(map[string]any)
	if sh, _ := bins["sh"].(string); !filepath.IsAbs(sh) || len(bins) != 1 {
		t.Fatalf("system.which answer %v", which)
	}

	// Deny by default: an unlisted command needs an approval.
	out, err := runCLI(t, state, "nodes", "run", nodeID, "--url", url, "--json", "--", "/bin/echo", "hi")
	if err == nil || !strings.Contains(out, "SYSTEM_RUN_DENIED") {
		t.Fatalf("unapproved run: err %v, out %s", err, out)
	}

	// An approver (operator.approvals) allows it once.
	approver, err := client.Dial(context.Background(), client.Options{URL: url, Token: token, Identity: mustIdentity(t),
		Scopes: []string{protocol.ScopeApprovals}, OnEvent: nil})
	if err != nil {
		t.Fatal(err)
	}
	defer approver.Close()
	var approverEvents = make(chan client.Event, 16)
	approver2, err := client.Dial(context.Background(), client.Options{URL: url, Token: token, Identity: mustIdentity(t),
		Scopes: []string{protocol.ScopeApprovals}, OnEvent: func(e client.Event) {
			if e.Name == "exec.approval.requested" {
				approverEvents <- e
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer approver2.Close()
	go func() {
		for e := range approverEvents {
			var p struct{ ID string }
			_ = json.Unmarshal(e.Payload, &p)
			_, _ = approver.Call(context.Background(), "exec.approval.resolve", map[string]any{"id": p.ID, "decision": "allow-once"})
		}
	}()
	defer close(approverEvents)
	out, err = runCLI(t, state, "nodes", "run", nodeID, "--approve", "--url", url, "--", "/bin/echo", "approved", "run")
	if err != nil || out != "approved run\n" {
		t.Fatalf("approved run: err %v, stdout %q", err, out)
	}

	// Reconnect with the device token only (no shared token).
	_ = node.Process.Kill()
	startNodeProc(t, "--url", url, "--state-dir", nodeState, "--display-name", "e2e-box")
	waitFor(t, "the node to reconnect", func() bool {
		out, err := runCLI(t, state, "nodes", "invoke", nodeID, "system.which", "--params", `{"bins":["sh"]}`, "--url", url, "--json")
		return err == nil && strings.Contains(out, `"sh"`)
	})
}

func mustIdentity(t *testing.T) *client.Identity {
	t.Helper()
	id, err := client.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestNodeExecPolicy(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "exec-approvals.json")
	p, err := loadExecPolicy(file, "allowlist", "on-miss", nil, []string{"GREETING"}, 16, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	run := func(params map[string]any) nodeResult {
		b, _ := json.Marshal(params)
		s := string(b)
		return p.invoke(context.Background(), nodeInvokeRequest{ID: "1", Command: "system.run", ParamsJSON: &s, TimeoutMs: 30000})
	}
	payload := func(r nodeResult) runResult {
		t.Helper()
		if r.Error != nil {
			t.Fatalf("error %+v", r.Error)
		}
		return r.Payload.(runResult)
	}
	// Deny by default.
	if r := run(map[string]any{"command": []string{"/bin/echo", "x"}}); r.Error == nil || r.Error.Code != "SYSTEM_RUN_DENIED" {
		t.Fatalf("unlisted command: %+v", r)
	}
	// allow-always runs and adds the executable to the 0600 allowlist.
	r := payload(run(map[string]any{"command": []string{"/bin/sh", "-c", "echo $GREETING; echo err >&2"},
		"env": map[string]string{"GREETING": "hello"}, "approved": true, "approvalDecision": "allow-always"}))
	if r.Stdout != "hello\n" || r.Stderr != "err\n" || !r.Success || *r.ExitCode != 0 {
		t.Fatalf("run %+v", r)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("allowlist file %v %v", st, err)
	}
	// Now listed: runs without approval. Exit codes come through; output is
	// capped per stream.
	r = payload(run(map[string]any{"command": []string{"/bin/sh", "-c", "printf '0123456789abcdefghij'; exit 3"}}))
	if r.Stdout != "0123456789abcdef" || !r.Truncated || *r.ExitCode != 3 || r.Success {
		t.Fatalf("capped run %+v", r)
	}
	// An environment variable not allowed is refused, not dropped.
	if r := run(map[string]any{"command": []string{"/bin/sh", "-c", "true"}, "env": map[string]string{"LD_PRELOAD": "/x.so"}}); r.Error == nil || r.Error.Code != "INVALID_REQUEST" {
		t.Fatalf("LD_PRELOAD: %+v", r)
	}
	// The timeout kills the whole process group.
	start := time.Now()
	r = payload(run(map[string]any{"command": []string{"/bin/sh", "-c", "sleep 30 & sleep 30"}, "timeoutMs": 200}))
	if !r.TimedOut || r.Success || time.Since(start) > 20*time.Second {
		t.Fatalf("timeout run %+v after %v", r, time.Since(start))
	}
	// cwd must be absolute.
	if r := run(map[string]any{"command": []string{"/bin/sh"}, "cwd": "relative"}); r.Error == nil {
		t.Fatalf("relative cwd: %+v", r)
	}
	// The allowlist survives a restart; security=deny refuses even listed.
	p, err = loadExecPolicy(file, "deny", "on-miss", nil, nil, 16, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := run(map[string]any{"command": []string{"/bin/sh", "-c", "true"}}); r.Error == nil || !strings.Contains(r.Error.Message, "security=deny") {
		t.Fatalf("security=deny: %+v", r)
	}
	p, _ = loadExecPolicy(file, "allowlist", "off", nil, nil, 16, time.Second)
	if r := run(map[string]any{"command": []string{"/bin/echo"}}); r.Error == nil || !strings.Contains(r.Error.Message, "allowlist miss") {
		t.Fatalf("ask=off: %+v", r)
	}
	if r := run(map[string]any{"command": []string{"/bin/sh", "-c", "true"}}); r.Error != nil {
		t.Fatalf("listed after restart: %+v", r)
	}
	// system.which never resolves paths with separators.
	s := `{"bins":["sh","../../bin/sh"]}`
	w := p.invoke(context.Background(), nodeInvokeRequest{Command: "system.which", ParamsJSON: &s})
	if bins := w.Payload.(map[string]any)["bins"].(map[string]string); len(bins) != 1 || bins["sh"] == "" {
		t.Fatalf("which %+v", w)
	}
}
