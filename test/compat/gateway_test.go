package compat

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	gatewayReadyTimeout = 10 * time.Second
	gatewayStopTimeout  = 5 * time.Second
)

// gateway is one clawgate process started for one test.
type gateway struct {
	Port     int
	Token    string
	StateDir string

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, valid after done

	stopOnce sync.Once
}

// URL is the gateway's WebSocket URL.
func (g *gateway) URL() string { return "ws://127.0.0.1:" + strconv.Itoa(g.Port) }

// HTTPURL is the gateway's plain HTTP base URL.
func (g *gateway) HTTPURL() string { return "http://127.0.0.1:" + strconv.Itoa(g.Port) }

// Output is everything the gateway printed so far (stdout and stderr).
func (g *gateway) Output() string { return g.out.String() }

// startGateway starts `clawgate gateway --port PORT --token TOKEN` with a
// private state dir and waits until /healthz reports live. At cleanup it
// sends SIGTERM and asserts a clean exit (status 0 within 5 s); the
// gateway's output is logged only when the test failed.
func startGateway(t *testing.T) *gateway {
	t.Helper()
	bin := requireBinary(t)
	g := &gateway{
		Port:     freePort(t),
		Token:    randomToken(t),
		StateDir: t.TempDir(),
		out:      &syncBuffer{},
		done:     make(chan struct{}),
	}
	// The state dir holds secrets: clawgate insists that it is private.
	if err := os.Chmod(g.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "gateway", "--port", strconv.Itoa(g.Port), "--token", g.Token)
	cmd.Env = append(filteredEnv("OPENCLAW_GATEWAY_TOKEN", "CLAWGATE_STATE_DIR"),
		"CLAWGATE_STATE_DIR="+g.StateDir,
		// OpenClaw's Node clients take many seconds between opening the
		// socket and sending connect when the machine is starved; allow
		// them a minute (the real gateway has the same knob).
		"CLAWGATE_HANDSHAKE_TIMEOUT_MS=60000")
	cmd.Stdout = g.out
	cmd.Stderr = g.out
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	g.cmd = cmd
	go func() {
		g.err = cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		g.stop(t)
		if t.Failed() {
			t.Logf("clawgate (port %d) output:\n%s", g.Port, indent(g.Output()))
		}
	})
	if err := g.waitReady(gatewayReadyTimeout); err != nil {
		t.Fatalf("clawgate not ready: %v", err)
	}
	return g
}

// waitReady polls GET /healthz until it answers 200 {"ok":true,"status":"live"}.
func (g *gateway) waitReady(timeout time.Duration) error {
	client := loopbackHTTPClient(time.Second)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			return fmt.Errorf("clawgate exited before it was ready: %v", g.err)
		default:
		}
		ok, err := checkHealthz(client, g.HTTPURL())
		if ok {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("GET %s/healthz not live within %v: %v", g.HTTPURL(), timeout, last)
}

// checkHealthz reports whether /healthz answered 200 {"ok":true,"status":"live"}.
func checkHealthz(client *http.Client, base string) (bool, error) {
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d, body %q", resp.StatusCode, body)
	}
	var h struct {
		OK     *bool   `json:"ok"`
		Status *string `json:"status"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return false, fmt.Errorf("body %q: %v", body, err)
	}
	if h.OK == nil || !*h.OK || h.Status == nil || *h.Status != "live" {
		return false, fmt.Errorf(`body %q, want {"ok":true,"status":"live"}`, body)
	}
	return true, nil
}

// stop sends SIGTERM and asserts the process exits with status 0 within 5 s.
func (g *gateway) stop(t *testing.T) {
	t.Helper()
	g.stopOnce.Do(func() {
		select {
		case <-g.done:
			t.Errorf("clawgate exited before the test stopped it: %v", g.err)
			return
		default:
		}
		start := time.Now()
		if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM clawgate: %v", err)
		}
		select {
		case <-g.done:
		case <-time.After(gatewayStopTimeout):
			t.Errorf("clawgate did not exit within %v of SIGTERM; killing it", gatewayStopTimeout)
			_ = g.cmd.Process.Kill()
			<-g.done
			return
		}
		if g.err != nil {
			t.Errorf("clawgate exited with %v after SIGTERM (%v), want status 0", g.err, time.Since(start).Round(time.Millisecond))
		}
	})
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.1:0: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("close probe listener: %v", err)
	}
	return port
}

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random token: %v", err)
	}
	return "compat-" + hex.EncodeToString(b)
}

// loopbackHTTPClient never uses a proxy: every request here goes to 127.0.0.1.
func loopbackHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{Timeout: timeout}).DialContext,
		},
	}
}

// filteredEnv is os.Environ() without the named variables.
func filteredEnv(drop ...string) []string {
	skip := make(map[string]bool, len(drop))
	for _, k := range drop {
		skip[k] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := cutEnv(kv)
		if !skip[k] {
			env = append(env, kv)
		}
	}
	return env
}

func cutEnv(kv string) (key, value string, ok bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

// runWithTimeout runs cmd, killing its whole process group when ctx ends.
func runWithTimeout(ctx context.Context, cmd *exec.Cmd) error {
	setChildAttrs(cmd)
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// exitCode is the process exit status, or -1 when it did not exit normally.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func indent(s string) string {
	if s == "" {
		return "    (no output)"
	}
	var out bytes.Buffer
	for _, line := range bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n")) {
		out.WriteString("    ")
		out.Write(line)
		out.WriteByte('\n')
	}
	return out.String()
}
