package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/tsnode/tsnodetest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clawgate-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "clawgate")
	// The helpers sit beside the binary, where it looks for them; the
	// commands run in this process find them through CLAWGATE_HELPER_DIR.
	if out, err := exec.Command("go", "build", "-o", dir, ".", "../clawgate-whatsapp", "../clawgate-tailnet").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	os.Setenv("CLAWGATE_HELPER_DIR", dir)
	tailnetHelperEnv = tsnodetest.OfflineEnv()
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type proc struct {
	cmd     *exec.Cmd
	out     *bytes.Buffer
	port    int
	state   string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

// startGateway runs the real binary with a fresh state dir.
func startGateway(t testing.TB, stateDir string, args ...string) *proc {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(binary, append([]string{"gateway", "--port", strconv.Itoa(port)}, args...)...)
	cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+stateDir, "CLAWGATE_GATEWAY_TOKEN=", "OPENCLAW_GATEWAY_TOKEN=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: &out, port: port, state: stateDir, done: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("gateway output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("gateway exited: %v\n%s", p.waitErr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runCLI(t *testing.T, stateDir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+stateDir, "CLAWGATE_GATEWAY_TOKEN=", "OPENCLAW_GATEWAY_TOKEN=")
	out, err := cmd.Output()
	return string(out), err
}

// TestGatewayLifecycle: first start generates a 0600 token and never logs
// it; `clawgate call` works as the local admin; SIGTERM exits 0.
func TestGatewayLifecycle(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	p := startGateway(t, state)
	st, err := os.Stat(state)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v (%v)", st.Mode(), err)
	}
	tokFile := filepath.Join(state, "gateway.token")
	st, err = os.Stat(tokFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v (%v)", st, err)
	}
	tok, err := runCLI(t, state, "token")
	tok = strings.TrimSpace(tok)
	if err != nil || len(tok) != 43 {
		t.Fatalf("clawgate token = %q (%v), want 43 base64url chars", tok, err)
	}
	url := fmt.Sprintf("ws://127.0.0.1:%d", p.port)
	out, err := runCLI(t, state, "call", "health", "--url", url, "--json")
	if err != nil {
		t.Fatalf("call health: %v\n%s", err, out)
	}
	var h map[string]any
	if json.Unmarshal([]byte(out), &h) != nil || h["ok"] != true {
		t.Fatalf("health output %s", out)
	}
	// The CLI's device now holds a device token, which is a credential of
	// its own; a stranger (a fresh identity) with a wrong token is refused.
	out, err = runCLI(t, filepath.Join(t.TempDir(), "stranger"), "call", "status", "--url", url, "--token", "wrong", "--json")
	if err == nil {
		t.Fatalf("wrong token exited 0: %s", out)
	}
	var e struct {
		OK    bool `json:"ok"`
		Error struct {
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(out), &e) != nil || e.Error.Details["code"] != "AUTH_TOKEN_MISMATCH" {
		t.Fatalf("wrong-token output %s", out)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.waitErr != nil {
			t.Fatalf("exit after SIGTERM: %v", p.waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not exit within 10s of SIGTERM")
	}
	logs := p.out.String()
	if strings.Contains(logs, tok) {
		t.Fatal("the shared token appears in the gateway's log")
	}
	if !strings.Contains(logs, "clawgate token") {
		t.Errorf("first-start log does not say how to read the token:\n%s", logs)
	}
}

// TestGatewayRefusals: bad flags and configs stop the gateway with a
// message that says what to do.
func TestGatewayRefusals(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(dir string)
		args   []string
		expect string
	}{
		{name: "lan bind", args: []string{"--bind", "0.0.0.0"}, expect: "refusing to bind 0.0.0.0"},
		{name: "lan ip bind", args: []string{"--bind", "192.0.2.7"}, expect: "ssh -N -L"},
		{name: "bad bind", args: []string{"--bind", "lan!"}, expect: "is not \"loopback\" or an IP"},
		{name: "unknown config field", setup: func(d string) {
			os.MkdirAll(d, 0o700)
			os.WriteFile(filepath.Join(d, "clawgate.json"), []byte(`{"version":1,"gateway":{"prot":1}}`), 0o600)
		}, expect: `unknown field "prot"`},
		{name: "future config version", setup: func(d string) {
			os.MkdirAll(d, 0o700)
			os.WriteFile(filepath.Join(d, "clawgate.json"), []byte(`{"version":9}`), 0o600)
		}, expect: "unknown version 9"},
		{name: "readable token file", setup: func(d string) {
			os.MkdirAll(d, 0o700)
			os.WriteFile(filepath.Join(d, "gateway.token"), []byte("x"), 0o644)
		}, expect: "chmod 600"},
		{name: "open state dir", setup: func(d string) {
			os.MkdirAll(d, 0o755)
			os.Chmod(d, 0o755)
		}, expect: "chmod 700"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if tc.setup != nil {
				tc.setup(dir)
			}
			cmd := exec.Command(binary, append([]string{"gateway", "--port", strconv.Itoa(freePort(t))}, tc.args...)...)
			cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+dir, "CLAWGATE_GATEWAY_TOKEN=", "OPENCLAW_GATEWAY_TOKEN=")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("gateway started; want refusal containing %q", tc.expect)
			}
			if !strings.Contains(string(out), tc.expect) {
				t.Fatalf("output %q lacks %q", out, tc.expect)
			}
		})
	}
}

// TestPortInUse: a second gateway on the same port fails fast and says why.
func TestPortInUse(t *testing.T) {
	p := startGateway(t, filepath.Join(t.TempDir(), "a"))
	cmd := exec.Command(binary, "gateway", "--port", strconv.Itoa(p.port))
	cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+filepath.Join(t.TempDir(), "b"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already in use") {
		t.Fatalf("second gateway: %v %s", err, out)
	}
}

// BenchmarkStartup measures process start to the first accepted TCP
// connection on the gateway port.
func BenchmarkStartup(b *testing.B) {
	state := filepath.Join(b.TempDir(), "state")
	// The first start generates the token; later ones load it. It must be
	// gone before they start: the state is locked by one gateway at a time.
	first := startGateway(b, state)
	_ = first.cmd.Process.Signal(syscall.SIGTERM)
	<-first.done
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		port := freePort(b)
		t0 := time.Now()
		cmd := exec.Command(binary, "gateway", "--port", strconv.Itoa(port))
		cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+state)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err == nil {
				c.Close()
				break
			}
			if time.Since(t0) > 10*time.Second {
				b.Fatal("no accept within 10s")
			}
			time.Sleep(200 * time.Microsecond)
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "ms-to-accept")
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// BenchmarkIdleRSS reports the gateway's resident set after it has been
// idle for a second: all of it (VmRSS), and without the executable's and
// libraries' file pages (RssAnon: what the process itself allocated).
func BenchmarkIdleRSS(b *testing.B) {
	for i := 0; i < b.N; i++ {
		p := startGateway(b, filepath.Join(b.TempDir(), "state"))
		time.Sleep(time.Second)
		pid := p.cmd.Process.Pid
		b.ReportMetric(float64(rssKiB(b, pid))/1024, "MiB-RSS")
		b.ReportMetric(float64(statusKiB(b, pid, "RssAnon:"))/1024, "MiB-RssAnon")
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func rssKiB(t testing.TB, pid int) int { return statusKiB(t, pid, "VmRSS:") }

// statusKiB reads one kB field of /proc/PID/status ("VmRSS:", "RssAnon:").
func statusKiB(t testing.TB, pid int, field string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	t.Fatal("no " + field)
	return 0
}
