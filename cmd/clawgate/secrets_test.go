package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// secretSet collects every credential a test handled.
type secretSet struct {
	mu   sync.Mutex
	list map[string]string // value → what it is
}

func (s *secretSet) add(what, v string) {
	if len(v) < 12 {
		return // too short to grep for without false hits; none of ours are
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.list == nil {
		s.list = map[string]string{}
	}
	s.list[v] = what
}

// sweep fails for every secret found in text.
func (s *secretSet) sweep(t *testing.T, where, text string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for v, what := range s.list {
		if strings.Contains(text, v) {
			t.Errorf("%s appears in %s", what, where)
		}
	}
}

// collectTokens adds every string under a key naming a token or a key
// seed in a JSON document (the CLI's stored device tokens and its private
// key seed).
func collectTokens(s *secretSet, where string, v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			lk := strings.ToLower(k)
			if strings.Contains(lk, "token") || lk == "seed" {
				addStrings(s, where+" "+k, e)
			}
			collectTokens(s, where, e)
		}
	case []any:
		for _, e := range x {
			collectTokens(s, where, e)
		}
	}
}

func addStrings(s *secretSet, what string, v any) {
	switch x := v.(type) {
	case string:
		s.add(what, x)
	case map[string]any:
		for _, e := range x {
			addStrings(s, what, e)
		}
	case []any:
		for _, e := range x {
			addStrings(s, what, e)
		}
	}
}

// TestSecretsNeverLogged (attack C9): a gateway with a known token goes
// through auth failures, device pairing, device-token use, rotation and a
// wrong device token; neither the shared token, the wrong guesses, nor any
// device token appears in its log (text and JSON, debug level), in
// logs.tail, in /metrics or in doctor's report.
func TestSecretsNeverLogged(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) { secretsRun(t, format) })
	}
}

func secretsRun(t *testing.T, format string) {
	const sharedToken = "c9-shared-K7pQ2xW9mZ4vB8nR3tY6uJ1sD5fG0hL"
	secrets := &secretSet{}
	secrets.add("the shared token", sharedToken)
	nearMiss := sharedToken[:len(sharedToken)-1] + "X"
	secrets.add("a wrong shared token", nearMiss)
	wrongDevice := "c9-wrong-device-token-Qm3Ld8Ks2Jx7Hv4"
	secrets.add("a wrong device token", wrongDevice)
	wrongBearer := "c9-wrong-bearer-Np5Rt8Yw2Zc6Vb9Xm1"
	secrets.add("a wrong /metrics bearer", wrongBearer)

	state := filepath.Join(t.TempDir(), "state")
	port := freePort(t)
	url := fmt.Sprintf("ws://127.0.0.1:%d", port)
	cmd := exec.Command(binary, "gateway", "--port", strconv.Itoa(port), "--verbose", "--log-format", format)
	cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+state, "CLAWGATE_GATEWAY_TOKEN="+sharedToken, "OPENCLAW_GATEWAY_TOKEN=")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	waitHealthy(t, port, &out)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := []string{protocol.ScopeAdmin, protocol.ScopeRead, protocol.ScopeWrite}

	// A local device pairs silently and gets a device token.
	id, err := client.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, client.Options{URL: url, Token: sharedToken, Identity: id, Scopes: admin})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	devTok := c.Hello().Auth.DeviceToken
	if devTok == "" {
		t.Fatal("no device token issued to a local device")
	}
	secrets.add("a device token (hello-ok)", devTok)

	// It reconnects on the device token alone.
	c2, err := client.Dial(ctx, client.Options{URL: url, DeviceToken: devTok, Identity: id, Scopes: admin})
	if err != nil {
		t.Fatalf("device-token connect: %v", err)
	}
	c2.Close()

	// Auth failures: a wrong device token, a near-miss shared token.
	var re *client.RemoteError
	if _, err := client.Dial(ctx, client.Options{URL: url, DeviceToken: wrongDevice, Identity: id, Scopes: admin}); !errors.As(err, &re) {
		t.Fatalf("wrong device token: %v", err)
	}
	if _, err := client.Dial(ctx, client.Options{URL: url, Token: nearMiss, Scopes: []string{protocol.ScopeRead}}); !errors.As(err, &re) {
		t.Fatalf("near-miss shared token: %v", err)
	}

	// Rotation hands the device a new token in-band.
	raw, err := c.Call(ctx, "device.token.rotate", map[string]any{"deviceId": id.DeviceID, "role": "operator", "scopes": admin})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	var rot struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &rot); err != nil || rot.Token == "" {
		t.Fatalf("rotate result %s (%v)", raw, err)
	}
	secrets.add("a rotated device token", rot.Token)
	// Rotation closes the device's sockets; it comes back on the new token.
	c.Close()
	c, err = client.Dial(ctx, client.Options{URL: url, DeviceToken: rot.Token, Identity: id, Scopes: admin})
	if err != nil {
		t.Fatalf("connect on the rotated token: %v", err)
	}
	defer c.Close()

	// The CLI pairs its own device and stores its token.
	cli := exec.Command(binary, "call", "health", "--url", url, "--json")
	cli.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+state, "CLAWGATE_GATEWAY_TOKEN="+sharedToken, "OPENCLAW_GATEWAY_TOKEN=")
	cliOut, err := cli.CombinedOutput()
	if err != nil {
		t.Fatalf("clawgate call: %v\n%s", err, cliOut)
	}
	before := len(secrets.list)
	_ = filepath.WalkDir(filepath.Join(state, "identity"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		var v any
		if json.Unmarshal(b, &v) == nil {
			collectTokens(secrets, "the CLI's stored", v)
		}
		return nil
	})
	if len(secrets.list) < before+2 {
		t.Fatalf("found %d secrets in the CLI's identity files, want its seed and device token", len(secrets.list)-before)
	}

	// /metrics with a wrong and the right bearer.
	metrics := func(bearer string) string {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		req.Header.Set("X-Forwarded-For", "198.51.100.7") // not local: the bearer decides
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if body := metrics(wrongBearer); strings.Contains(body, "clawgate_") {
		t.Fatal("metrics served to a wrong bearer")
	}
	page := metrics(sharedToken)
	if v := promValues(page)["clawgate_auth_failures_total"]; v < 3 {
		t.Fatalf("auth failures counted %v, want >= 3 (device token, shared token, bearer):\n%s", v, page)
	}

	// logs.tail serves the same records.
	raw, err = c.Call(ctx, "logs.tail", map[string]any{"limit": 5000, "maxBytes": 1000000})
	if err != nil {
		t.Fatalf("logs.tail: %v", err)
	}
	var tail struct {
		Lines []string `json:"lines"`
	}
	if err := json.Unmarshal(raw, &tail); err != nil {
		t.Fatal(err)
	}
	ring := strings.Join(tail.Lines, "\n")
	for _, want := range []string{"connect unauthorized", "device token rotated"} {
		if !strings.Contains(ring, want) {
			t.Errorf("logs.tail lacks %q: the failures were not logged, so the sweep proves little", want)
		}
	}
	c.Close()

	var docOut bytes.Buffer
	doc := exec.Command(binary, "doctor", "--state-dir", state, "--port", strconv.Itoa(port))
	doc.Env = cmd.Env
	doc.Stdout, doc.Stderr = &docOut, &docOut
	_ = doc.Run() // findings are not the point here

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not stop")
	}
	log := out.String()
	for _, want := range []string{"connect unauthorized", "device token rotated", "gateway stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("gateway log lacks %q", want)
		}
	}
	t.Logf("%d secrets swept over %d bytes of log, %d of logs.tail, %d of metrics, %d of doctor",
		len(secrets.list), len(log), len(ring), len(page), docOut.Len())
	secrets.sweep(t, "the gateway log ("+format+")", log)
	secrets.sweep(t, "logs.tail", ring)
	secrets.sweep(t, "/metrics", page)
	secrets.sweep(t, "clawgate doctor", docOut.String())
	if t.Failed() {
		t.Logf("gateway log:\n%s", log)
	}
}

func waitHealthy(t *testing.T, port int, out *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer is a bytes.Buffer safe for a process's two output pipes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
