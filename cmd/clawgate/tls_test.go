package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/tlspin"
)

// runCLIAll runs the binary and returns stdout and stderr together.
func runCLIAll(t *testing.T, stateDir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+stateDir, "CLAWGATE_GATEWAY_TOKEN=", "OPENCLAW_GATEWAY_TOKEN=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startTLSGateway runs `clawgate gateway --port P ARGS...` and waits until
// a TLS handshake pinned to the state dir's certificate (or certFile)
// succeeds.
func startTLSGateway(t *testing.T, stateDir, certFile string, args ...string) *proc {
	t.Helper()
	return startTLSGatewayPort(t, freePort(t), stateDir, certFile, args...)
}

func startTLSGatewayPort(t *testing.T, port int, stateDir, certFile string, args ...string) *proc {
	t.Helper()
	if certFile == "" {
		certFile = filepath.Join(stateDir, "tls", "gateway.crt")
	}
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
		if leaf, err := tlspin.ReadCertificate(certFile); err == nil {
			cfg := tlspin.ClientConfig(tlspin.ClientOptions{Pins: []tlspin.Fingerprint{tlspin.SPKIFingerprint(leaf)}})
			if c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", "127.0.0.1:"+strconv.Itoa(port), cfg); err == nil {
				c.Close()
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("gateway exited: %v\n%s", p.waitErr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS gateway not ready:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopProc sends SIGTERM, waits for the exit and returns the output (read
// only after the process and its output copying have finished).
func stopProc(t *testing.T, p *proc) string {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop within 10s of SIGTERM")
	}
	return p.out.String()
}

type fingerprints struct {
	SHA256         string `json:"sha256"`
	SPKI           string `json:"spki"`
	TLSFingerprint string `json:"tlsFingerprint"`
}

func readFingerprints(t *testing.T, state string) fingerprints {
	t.Helper()
	out, err := runCLI(t, state, "tls", "fingerprint", "--json")
	if err != nil {
		t.Fatalf("tls fingerprint: %v %s", err, out)
	}
	var f fingerprints
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("tls fingerprint --json: %s", out)
	}
	return f
}

// TestTLSStartupRefusals: unsafe TLS and bind setups stop the gateway
// with a message that says what is wrong and how to fix it.
func TestTLSStartupRefusals(t *testing.T) {
	userDir := t.TempDir()
	userCert, userKey := filepath.Join(userDir, "my.crt"), filepath.Join(userDir, "my.key")
	if _, err := tlspin.Create(userCert, userKey, tlspin.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(userKey, 0o640); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		setup  func(t *testing.T, dir string)
		args   []string
		expect []string
	}{
		{name: "plaintext wildcard bind", args: []string{"--bind", "0.0.0.0"},
			expect: []string{"refusing to bind 0.0.0.0 without TLS", "--tls", "ssh -N -L", "--dangerously-allow-plaintext-lan"}},
		{name: "plaintext lan bind", args: []string{"--bind", "lan"},
			expect: []string{"refusing to bind lan without TLS", "the token"}},
		{name: "plaintext address bind", args: []string{"--bind", "192.0.2.7"}, expect: []string{"refusing to bind 192.0.2.7 without TLS"}},
		{name: "readable managed key", setup: func(t *testing.T, dir string) {
			if out, err := runCLIAll(t, dir, "tls", "rotate"); err != nil {
				t.Fatalf("tls rotate: %v %s", err, out)
			}
			os.Chmod(filepath.Join(dir, "tls", "gateway.key"), 0o644)
		}, args: []string{"--tls"}, expect: []string{"must not be readable by group or others", "chmod 600 "}},
		{name: "readable user key", args: []string{"--tls-cert", userCert, "--tls-key", userKey},
			expect: []string{"mode 0640", "chmod 600 " + userKey}},
		{name: "cert without key", args: []string{"--tls-cert", userCert}, expect: []string{"--tls-cert and --tls-key go together"}},
		{name: "weak token beyond loopback", args: []string{"--tls", "--bind", "0.0.0.0", "--token", "short"},
			expect: []string{"refusing to listen beyond loopback with a weak shared token", "--token"}},
		{name: "bad bind", args: []string{"--bind", "everywhere"}, expect: []string{`is not "loopback" or an IP address`, `"lan"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			cmd := exec.Command(binary, append([]string{"gateway", "--port", strconv.Itoa(freePort(t))}, tc.args...)...)
			cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+dir, "CLAWGATE_GATEWAY_TOKEN=", "OPENCLAW_GATEWAY_TOKEN=")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("gateway started; want a refusal containing %q", tc.expect)
			}
			for _, want := range tc.expect {
				if !strings.Contains(string(out), want) {
					t.Errorf("output %q lacks %q", out, want)
				}
			}
		})
	}
}

// TestTLSGatewayAndPinnedCall: `gateway --tls` creates a 0600 key and
// logs the fingerprints (never the key); `clawgate call` from another
// machine's state connects with --tls-fingerprint, is refused with
// "certificate changed" for a wrong pin and with "unknown certificate"
// (fingerprint shown) without one; the local admin needs no pin.
func TestTLSGatewayAndPinnedCall(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	p := startTLSGateway(t, state, "", "--tls")
	keyFile := filepath.Join(state, "tls", "gateway.key")
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("managed key mode %v (%v), want 0600", st, err)
	}
	fp := readFingerprints(t, state)
	pair, err := tlspin.Load(filepath.Join(state, "tls", "gateway.crt"), keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fp.SHA256 != pair.CertFingerprint().String() || fp.SPKI != pair.SPKIFingerprint().String() || fp.TLSFingerprint != pair.CertFingerprint().Hex() {
		t.Fatalf("tls fingerprint printed %+v, files say %v %v", fp, pair.CertFingerprint(), pair.SPKIFingerprint())
	}
	url := fmt.Sprintf("wss://127.0.0.1:%d", p.port)
	tok, err := runCLI(t, state, "token")
	if err != nil {
		t.Fatal(err)
	}
	tok = strings.TrimSpace(tok)

	// Another machine's CLI (its own state dir, no access to the gateway's).
	other := filepath.Join(t.TempDir(), "laptop")
	for _, pin := range []string{fp.SHA256, fp.SPKI, strings.ToUpper(fp.TLSFingerprint)} {
		out, err := runCLIAll(t, other, "call", "health", "--url", url, "--token", tok, "--tls-fingerprint", pin, "--json")
		if err != nil || !strings.Contains(out, `"ok": true`) {
			t.Fatalf("pinned call with %s: %v\n%s", pin, err, out)
		}
	}
	wrong := "sha256:" + strings.Repeat("ab", 32)
	out, err := runCLIAll(t, other, "call", "health", "--url", url, "--token", tok, "--tls-fingerprint", wrong)
	if err == nil || !strings.Contains(out, "certificate changed") || !strings.Contains(out, fp.SHA256) {
		t.Fatalf("wrong pin: %v\n%s", err, out)
	}
	out, err = runCLIAll(t, other, "call", "health", "--url", url, "--token", tok)
	if err == nil || !strings.Contains(out, "unknown certificate") || !strings.Contains(out, fp.SHA256) || !strings.Contains(out, "--tls-fingerprint") {
		t.Fatalf("no pin: %v\n%s", err, out)
	}
	if strings.Contains(out, tok) {
		t.Fatal("an error message carries the token")
	}

	// The gateway's own admin: wss:// to loopback is pinned to the local
	// certificate.
	out, err = runCLIAll(t, state, "call", "health", "--url", url, "--json")
	if err != nil || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("local admin: %v\n%s", err, out)
	}

	// Plaintext to the TLS port fails; the key never reaches the log.
	if out, err := runCLIAll(t, other, "call", "health", "--url", fmt.Sprintf("ws://127.0.0.1:%d", p.port), "--token", tok); err == nil {
		t.Fatalf("ws:// to the TLS port worked:\n%s", out)
	}
	logs := stopProc(t, p)
	keyPEM, _ := os.ReadFile(keyFile)
	body := strings.Split(string(keyPEM), "\n")[1]
	if strings.Contains(logs, body) || strings.Contains(logs, tok) {
		t.Fatal("the TLS key or the token appears in the gateway log")
	}
	if !strings.Contains(logs, fp.SHA256) || !strings.Contains(logs, "tls=true") {
		t.Errorf("the gateway log does not show the fingerprint to pin:\n%s", logs)
	}
}

// TestTLSRotate: `clawgate tls rotate` re-issues with the same key (SPKI
// unchanged, certificate fingerprint changed); --new-key changes both; a
// restarted gateway serves the new certificate.
func TestTLSRotate(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if out, err := runCLIAll(t, state, "tls", "fingerprint"); err == nil || !strings.Contains(out, "--tls") {
		t.Fatalf("fingerprint before any certificate: %v %s", err, out)
	}
	if out, err := runCLIAll(t, state, "tls", "rotate"); err != nil || !strings.Contains(out, "restart the gateway") {
		t.Fatalf("first rotate: %v %s", err, out)
	}
	f0 := readFingerprints(t, state)
	if out, err := runCLIAll(t, state, "tls", "rotate"); err != nil {
		t.Fatalf("rotate: %v %s", err, out)
	}
	f1 := readFingerprints(t, state)
	if f1.SPKI != f0.SPKI || f1.SHA256 == f0.SHA256 {
		t.Fatalf("same-key rotate: %+v -> %+v", f0, f1)
	}
	if out, err := runCLIAll(t, state, "tls", "rotate", "--new-key"); err != nil {
		t.Fatalf("rotate --new-key: %v %s", err, out)
	}
	f2 := readFingerprints(t, state)
	if f2.SPKI == f1.SPKI || f2.SHA256 == f1.SHA256 {
		t.Fatalf("new-key rotate: %+v -> %+v", f1, f2)
	}
	p := startTLSGateway(t, state, "", "--tls")
	url := fmt.Sprintf("wss://127.0.0.1:%d", p.port)
	other := filepath.Join(t.TempDir(), "laptop")
	tok, _ := runCLI(t, state, "token")
	out, err := runCLIAll(t, other, "call", "health", "--url", url, "--token", strings.TrimSpace(tok), "--tls-fingerprint", f1.SPKI+","+f2.SPKI)
	if err != nil {
		t.Fatalf("old+new SPKI pins after the key change: %v %s", err, out)
	}
	out, err = runCLIAll(t, other, "call", "health", "--url", url, "--token", strings.TrimSpace(tok), "--tls-fingerprint", f1.SPKI)
	if err == nil || !strings.Contains(out, "certificate changed") {
		t.Fatalf("old SPKI pin after the key change: %v %s", err, out)
	}
}

// onlyLoopbackInterfaces: binding 0.0.0.0 then exposes nothing; tests that
// bind a wildcard run only inside ./test.sh's network namespace.
func onlyLoopbackInterfaces(t *testing.T) {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			t.Skipf("interface %s is not loopback: a wildcard bind would leave this host; run ./test.sh (loopback-only namespace)", i.Name)
		}
	}
}

// TestWildcardTLSBind: `--tls --bind 0.0.0.0` serves TLS; a connection that
// arrives from and to loopback is still local (the admin CLI works and
// its device pairs silently).
func TestWildcardTLSBind(t *testing.T) {
	onlyLoopbackInterfaces(t)
	state := filepath.Join(t.TempDir(), "state")
	p := startTLSGateway(t, state, "", "--tls", "--bind", "0.0.0.0")
	url := fmt.Sprintf("wss://127.0.0.1:%d", p.port)
	// The admin CLI pins this machine's certificate for a loopback URL.
	out, err := runCLIAll(t, state, "devices", "list", "--url", url, "--json")
	if err != nil || !strings.Contains(out, `"paired"`) {
		t.Fatalf("local admin over the wildcard TLS bind: %v\n%s", err, out)
	}
	if logs := stopProc(t, p); !strings.Contains(logs, "bind=0.0.0.0:") {
		t.Errorf("log does not show the wildcard bind:\n%s", logs)
	}
}

// TestPlaintextLANOverride: --dangerously-allow-plaintext-lan starts a
// plaintext wildcard listener and says so in the log.
func TestPlaintextLANOverride(t *testing.T) {
	onlyLoopbackInterfaces(t)
	state := filepath.Join(t.TempDir(), "state")
	p := startGateway(t, state, "--bind", "0.0.0.0", "--dangerously-allow-plaintext-lan")
	out, err := runCLIAll(t, state, "call", "health", "--url", fmt.Sprintf("ws://127.0.0.1:%d", p.port), "--json")
	if err != nil || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("call: %v %s", err, out)
	}
	if logs := stopProc(t, p); !strings.Contains(logs, "plaintextLAN=true") {
		t.Errorf("log does not flag the plaintext LAN bind:\n%s", logs)
	}
}

// TestCallRefusesPlaintextRemote: `clawgate call` refuses ws:// to names
// and non-loopback addresses before connecting, look-alike names included.
func TestCallRefusesPlaintextRemote(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	for _, u := range []string{"ws://192.0.2.1:18789", "ws://localhost.evil.com:18789", "ws://127.0.0.1.nip.io:18789", "ws://0.0.0.0:18789"} {
		out, err := runCLIAll(t, state, "call", "health", "--url", u, "--token", "x", "--timeout", "2s")
		if err == nil || !strings.Contains(out, "refusing plaintext ws://") {
			t.Errorf("%s: %v %s", u, err, out)
		}
	}
}

// TestSplitByLocality routes accepted connections by their socket
// addresses, with fake connections (no network).
func TestSplitByLocality(t *testing.T) {
	fl := &fakeListener{conns: make(chan net.Conn, 8), closed: make(chan struct{})}
	local, remote := splitByLocality(fl)
	mk := func(l, r string) net.Conn {
		return &fakeConn{local: addr(l), remote: addr(r)}
	}
	cases := []struct {
		c     net.Conn
		local bool
	}{
		{mk("127.0.0.1:18789", "127.0.0.1:5000"), true},
		{mk("[::1]:18789", "[::1]:5000"), true},
		{mk("[::ffff:127.0.0.1]:18789", "[::ffff:127.0.0.1]:5000"), true},
		{mk("192.0.2.1:18789", "192.0.2.50:5000"), false},
		{mk("127.0.0.1:18789", "192.0.2.50:5000"), false},
		{mk("192.0.2.1:18789", "127.0.0.1:5000"), false},
		{mk("[fe80::1%eth0]:18789", "[fe80::2%eth0]:5000"), false},
	}
	for _, tc := range cases {
		fl.conns <- tc.c
		want, other := remote, local
		if tc.local {
			want, other = local, remote
		}
		got, err := want.Accept()
		if err != nil || got != tc.c {
			t.Fatalf("%v->%v: got %v %v", tc.c.RemoteAddr(), tc.c.LocalAddr(), got, err)
		}
		_ = other
	}
	if err := local.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	select {
	case <-fl.closed:
	default:
		t.Fatal("closing a half did not close the socket")
	}
	_ = remote.Close() // idempotent
}

type addr string

func (addr) Network() string  { return "tcp" }
func (a addr) String() string { return string(a) }

type fakeConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *fakeConn) LocalAddr() net.Addr  { return c.local }
func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) Close() error         { return nil }

type fakeListener struct {
	conns  chan net.Conn
	closed chan struct{}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *fakeListener) Close() error   { close(l.closed); return nil }
func (l *fakeListener) Addr() net.Addr { return addr("0.0.0.0:18789") }

// TestPlanListen: what each bind means, without binding.
func TestPlanListen(t *testing.T) {
	p := paths{stateDir: t.TempDir()}
	log := slog.New(slog.DiscardHandler)
	cases := []struct {
		bind          string
		tls           bool
		addr          string
		remote, extra bool
	}{
		{"", false, "127.0.0.1:18789", false, false},
		{"loopback", true, "127.0.0.1:18789", false, false},
		{"::1", false, "[::1]:18789", false, false},
		{"lan", true, "0.0.0.0:18789", true, false},
		{"0.0.0.0", true, "0.0.0.0:18789", true, false},
		{"::", true, "[::]:18789", true, false},
		{"192.0.2.7", true, "192.0.2.7:18789", true, true},
	}
	for _, tc := range cases {
		lp, err := planListen(gatewayFlags{bind: tc.bind, tls: tlsFlags{on: tc.tls}}, config.Gateway{}, p, log)
		if err != nil {
			t.Fatalf("%q: %v", tc.bind, err)
		}
		if lp.addr.String() != tc.addr || lp.remote != tc.remote || lp.extraLoopback != tc.extra || (lp.pair != nil) != tc.tls {
			t.Errorf("%q: %+v", tc.bind, lp)
		}
		if tc.bind == "192.0.2.7" && !contains(lp.hosts, "192.0.2.7") {
			t.Errorf("hosts %v lack the bound address", lp.hosts)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestDefaultURLFallsBackToLocalTLS: with no --url, the admin CLI tries
// ws://127.0.0.1:18789 and, when the gateway there speaks TLS with this
// machine's certificate, wss:// pinned to it. Needs port 18789 free.
func TestDefaultURLFallsBackToLocalTLS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(config.DefaultPort))
	if err != nil {
		t.Skipf("port %d is busy: %v", config.DefaultPort, err)
	}
	l.Close()
	state := filepath.Join(t.TempDir(), "state")
	startTLSGatewayPort(t, config.DefaultPort, state, "", "--tls")
	out, err := runCLIAll(t, state, "call", "health", "--json")
	if err != nil || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("default URL against a TLS gateway: %v\n%s", err, out)
	}
	// A CLI without this machine's certificate gets no fallback.
	out, err = runCLIAll(t, t.TempDir(), "call", "health", "--token", "x", "--json")
	if err == nil {
		t.Fatalf("a stranger's default URL reached the TLS gateway:\n%s", out)
	}
}

// runInTerminal runs the binary under script(1), which gives it a
// pseudo-terminal, and types input.
func runInTerminal(t *testing.T, stateDir, input string, args ...string) (string, error) {
	t.Helper()
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) (util-linux) not installed")
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	cmd := exec.Command(scriptBin, "-qec", "'"+binary+"' "+strings.Join(quoted, " "), "/dev/null")
	cmd.Env = append(os.Environ(), "SHELL=/bin/sh", "CLAWGATE_STATE_DIR="+stateDir, "CLAWGATE_GATEWAY_TOKEN=", "OPENCLAW_GATEWAY_TOKEN=")
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestTrustOnFirstUse: with no pin, an interactive `clawgate call` shows
// both fingerprints and asks; "no" trusts nothing, "yes" remembers the key
// (SPKI) in known_gateways.json (0600), and later calls use it without a
// prompt. After the gateway's key changes, the remembered pin fails loudly
// with "certificate changed" and no prompt is offered.
func TestTrustOnFirstUse(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	p := startTLSGateway(t, state, "", "--tls")
	fp := readFingerprints(t, state)
	tok, _ := runCLI(t, state, "token")
	tok = strings.TrimSpace(tok)
	url := fmt.Sprintf("wss://127.0.0.1:%d", p.port)
	// A host name that is not loopback would need DNS; 127.0.0.1 with a
	// state dir that has no gateway certificate behaves like a remote CLI.
	laptop := filepath.Join(t.TempDir(), "laptop")
	known := filepath.Join(laptop, "known_gateways.json")
	call := []string{"call", "health", "--url", url, "--token", tok, "--json"}

	out, err := runInTerminal(t, laptop, "no\n", call...)
	if err == nil || !strings.Contains(out, "can't be established") || !strings.Contains(out, fp.SHA256) || !strings.Contains(out, fp.SPKI) {
		t.Fatalf("answer no: %v\n%s", err, out)
	}
	if _, err := os.Stat(known); err == nil {
		t.Fatal("a refused key was remembered")
	}

	out, err = runInTerminal(t, laptop, "yes\n", call...)
	if err != nil || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("answer yes: %v\n%s", err, out)
	}
	st, err := os.Stat(known)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("known_gateways.json: %v %v", st, err)
	}
	data, _ := os.ReadFile(known)
	if !strings.Contains(string(data), fp.SPKI) {
		t.Fatalf("known_gateways.json does not hold the SPKI pin:\n%s", data)
	}
	// Remembered: no prompt, even without a terminal.
	if out, err := runCLIAll(t, laptop, call...); err != nil || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("after trust: %v\n%s", err, out)
	}

	// The gateway gets a new key: loud, terminal, no prompt.
	stopProc(t, p)
	if out, err := runCLIAll(t, state, "tls", "rotate", "--new-key"); err != nil {
		t.Fatalf("rotate: %v %s", err, out)
	}
	p2 := startTLSGatewayPort(t, p.port, state, "", "--tls")
	_ = p2
	out, err = runInTerminal(t, laptop, "yes\n", call...)
	if err == nil || !strings.Contains(out, "certificate changed") || !strings.Contains(out, "known_gateways.json") || strings.Contains(out, "yes/no") {
		t.Fatalf("changed key: %v\n%s", err, out)
	}
}

// TestPlanHealthCheck: the systemd watchdog's /healthz probe works against
// a TLS gateway (pinned to its certificate) and fails when nothing serves.
func TestPlanHealthCheck(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	p := startTLSGateway(t, state, "", "--tls")
	lp, err := planListen(gatewayFlags{port: p.port, tls: tlsFlags{on: true}}, config.Gateway{}, paths{stateDir: state}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := lp.healthCheck()(ctx); err != nil {
		t.Fatalf("health check against the TLS gateway: %v", err)
	}
	stopProc(t, p)
	if err := lp.healthCheck()(ctx); err == nil {
		t.Fatal("health check passed with the gateway stopped")
	}
}
