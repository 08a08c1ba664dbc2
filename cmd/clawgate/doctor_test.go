package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const goodToken = "Zq3v8xK1pW6nR0tY4bH7mC2dF9gJ5sL8aE1uQ3wX6zN"

// doctorSetup is a state directory laid out as the gateway leaves it.
type doctorSetup struct {
	state string
	env   map[string]string
}

func newDoctorSetup(t *testing.T) *doctorSetup {
	t.Helper()
	s := &doctorSetup{state: filepath.Join(t.TempDir(), "state"), env: map[string]string{}}
	if err := os.Mkdir(s.state, 0o700); err != nil {
		t.Fatal(err)
	}
	s.write(t, "gateway.token", goodToken+"\n", 0o600)
	s.write(t, "identity/cli.json", `{"privateKey":"x"}`, 0o600)
	return s
}

func (s *doctorSetup) write(t *testing.T, rel, data string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(s.state, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// doctor runs `clawgate doctor --json` in-process and returns the report,
// the raw output and the command's error.
func (s *doctorSetup) doctor(t *testing.T, args ...string) (doctorReport, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := env{stdout: &out, stderr: &errOut, getenv: func(k string) string { return s.env[k] }}
	err := run(context.Background(), append([]string{"doctor", "--state-dir", s.state, "--json"}, args...), e)
	var rep doctorReport
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("doctor --json output is not JSON (%v): %s\nstderr: %s", jerr, out.String(), errOut.String())
	}
	return rep, out.String(), err
}

func findingsByID(rep doctorReport) map[string]finding {
	m := map[string]finding{}
	for _, f := range rep.Findings {
		if _, dup := m[f.ID]; !dup {
			m[f.ID] = f
		}
	}
	return m
}

// wantCritical asserts the command failed with a critical finding id.
func wantCritical(t *testing.T, rep doctorReport, err error, id string) finding {
	t.Helper()
	var ee exitError
	if !errors.As(err, &ee) {
		t.Fatalf("doctor with a critical finding returned %v, want a non-zero exit", err)
	}
	if rep.OK || rep.Critical == 0 {
		t.Fatalf("report ok=%v critical=%d", rep.OK, rep.Critical)
	}
	f, ok := findingsByID(rep)[id]
	if !ok || f.Severity != sevCritical {
		t.Fatalf("no critical %q finding in %+v", id, rep.Findings)
	}
	if f.Fix == "" {
		t.Errorf("critical %q has no fix", id)
	}
	return f
}

func TestDoctorCleanSetup(t *testing.T) {
	s := newDoctorSetup(t)
	rep, out, err := s.doctor(t)
	if err != nil || !rep.OK || rep.Critical != 0 {
		t.Fatalf("clean setup: err %v, report %s", err, out)
	}
	got := findingsByID(rep)
	for _, id := range []string{"state-dir-mode", "secret-files", "bind-loopback", "token", "origins"} {
		if f, ok := got[id]; !ok || f.Severity != sevOK {
			t.Errorf("finding %q = %+v, want ok", id, f)
		}
	}
	if strings.Contains(out, goodToken) {
		t.Fatal("doctor printed the token")
	}
}

func TestDoctorWorldReadableState(t *testing.T) {
	s := newDoctorSetup(t)
	if err := os.Chmod(s.state, 0o755); err != nil {
		t.Fatal(err)
	}
	s.write(t, "gateway.token", goodToken+"\n", 0o644)
	s.write(t, "identity/cli.json", `{"privateKey":"x"}`, 0o644)
	s.write(t, "notes.txt", "x", 0o644)
	s.write(t, "clawgate.db", "db", 0o640)
	rep, out, err := s.doctor(t)
	f := wantCritical(t, rep, err, "state-dir-open")
	if !strings.Contains(f.Detail, "0755") || !strings.Contains(f.Fix, "chmod 700") {
		t.Errorf("state-dir-open finding %+v", f)
	}
	sec := wantCritical(t, rep, err, "secret-file-mode")
	for _, name := range []string{"gateway.token", filepath.Join("identity", "cli.json"), "clawgate.db (0640)"} {
		if !strings.Contains(sec.Detail, name) {
			t.Errorf("secret-file-mode does not name %s: %s", name, sec.Detail)
		}
	}
	wantCritical(t, rep, err, "token-file-mode")
	if f := findingsByID(rep)["state-file-mode"]; f.Severity != sevWarn || !strings.Contains(f.Detail, "notes.txt") {
		t.Errorf("state-file-mode = %+v", f)
	}
	if strings.Contains(out, goodToken) {
		t.Fatal("doctor printed the token")
	}
}

func TestDoctorPlaintextLANBind(t *testing.T) {
	s := newDoctorSetup(t)
	s.write(t, "clawgate.json", `{"version":1,"gateway":{"bind":"0.0.0.0","port":18790}}`, 0o600)
	rep, _, err := s.doctor(t)
	f := wantCritical(t, rep, err, "plaintext-bind")
	if !strings.Contains(f.Detail, "0.0.0.0:18790") || rep.Listen != "0.0.0.0:18790" {
		t.Errorf("plaintext-bind %+v, listen %s", f, rep.Listen)
	}
	if findingsByID(rep)["bind-all-interfaces"].Severity != sevWarn {
		t.Error("no bind-all-interfaces warning")
	}

	// The same bind by flag, with TLS: no longer critical, but explained.
	rep, _, err = s.doctor(t, "--bind", "lan", "--tls")
	if err != nil || !rep.OK {
		t.Fatalf("lan bind with TLS: %v %+v", err, rep.Findings)
	}
	if findingsByID(rep)["bind-remote-tls"].Severity != sevInfo {
		t.Errorf("no bind-remote-tls finding: %+v", rep.Findings)
	}
	// A LAN address, plaintext, by flag.
	rep, _, err = s.doctor(t, "--bind", "192.168.1.20")
	wantCritical(t, rep, err, "plaintext-bind")
}

func TestDoctorShortToken(t *testing.T) {
	s := newDoctorSetup(t)
	s.write(t, "gateway.token", "hunter2\n", 0o600)
	rep, out, err := s.doctor(t)
	f := wantCritical(t, rep, err, "token-weak")
	if !strings.Contains(f.Detail, "7 characters") || !strings.Contains(f.Detail, filepath.Join(s.state, "gateway.token")) {
		t.Errorf("token-weak detail %q", f.Detail)
	}
	if strings.Contains(out, "hunter2") {
		t.Fatal("doctor printed the token")
	}

	// From the environment, which wins over the file.
	s.write(t, "gateway.token", goodToken+"\n", 0o600)
	s.env["OPENCLAW_GATEWAY_TOKEN"] = "short-env-token"
	rep, out, err = s.doctor(t)
	f = wantCritical(t, rep, err, "token-weak")
	if !strings.Contains(f.Detail, "environment") || strings.Contains(out, "short-env-token") {
		t.Errorf("env token-weak %q", f.Detail)
	}
	if findingsByID(rep)["token-env"].Severity != sevInfo {
		t.Error("no token-env finding")
	}

	// Long but repetitive: a warning, not critical.
	s.env["OPENCLAW_GATEWAY_TOKEN"] = strings.Repeat("ab", 20)
	rep, _, err = s.doctor(t)
	if err != nil || findingsByID(rep)["token-entropy"].Severity != sevWarn {
		t.Errorf("repetitive token: err %v, findings %+v", err, rep.Findings)
	}
}

func TestDoctorOriginsAndHosts(t *testing.T) {
	s := newDoctorSetup(t)
	cases := []struct {
		origins, hosts string
		id             string
		sev            severity
	}{
		{`["*"]`, `[]`, "origin-wildcard", sevCritical},
		{`["https://*.example.com"]`, `[]`, "origin-wildcard", sevCritical},
		{`["null"]`, `[]`, "origin-null", sevCritical},
		{`["http://chat.example.com"]`, `[]`, "origin-plaintext", sevWarn},
		{`["https://chat.example.com/app"]`, `[]`, "origin-invalid", sevWarn},
		{`["chat.example.com"]`, `[]`, "origin-invalid", sevWarn},
		{`["https://chat.example.ts.net"]`, `["*"]`, "host-wildcard", sevCritical},
		{`["https://chat.example.ts.net", "http://127.0.0.1:3000"]`, `[]`, "origins", sevOK},
	}
	for _, c := range cases {
		s.write(t, "clawgate.json", `{"version":1,"gateway":{"allowedOrigins":`+c.origins+`,"allowedHosts":`+c.hosts+`}}`, 0o600)
		rep, _, err := s.doctor(t)
		f, ok := findingsByID(rep)[c.id]
		if !ok || f.Severity != c.sev {
			t.Errorf("origins %s hosts %s: %q = %+v (present %v), want %v", c.origins, c.hosts, c.id, f, ok, c.sev)
		}
		if (c.sev == sevCritical) != (err != nil) {
			t.Errorf("origins %s hosts %s: exit error %v", c.origins, c.hosts, err)
		}
	}
}

func TestDoctorConfigProblems(t *testing.T) {
	s := newDoctorSetup(t)
	s.write(t, "clawgate.json", `{"version":1,"gateway":{"bind":"loopback","noSuchSetting":true}}`, 0o600)
	rep, _, err := s.doctor(t)
	wantCritical(t, rep, err, "config-invalid")

	s.write(t, "clawgate.json", `{"version":1}`, 0o666)
	rep, _, err = s.doctor(t)
	wantCritical(t, rep, err, "config-writable")
}

func TestDoctorExposedPort(t *testing.T) {
	s := newDoctorSetup(t)
	// A fake /proc/net with the gateway port open on every IPv4 address
	// and on loopback IPv6 (port 18789 is 0x4965).
	procNet := t.TempDir()
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 00000000:4965 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0\n" +
		"   1: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n" +
		"   2: 0100007F:4965 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 20 4 30 10 -1\n"
	tcp6 := "  sl  local_address                         remote_address                        st\n" +
		"   0: 00000000000000000000000001000000:4965 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 4\n"
	if err := os.WriteFile(filepath.Join(procNet, "tcp"), []byte(tcp), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(procNet, "tcp6"), []byte(tcp6), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	e := env{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
	d, _, err := newDoctor([]string{"--state-dir", s.state}, e)
	if err != nil {
		t.Fatal(err)
	}
	d.procNet = procNet
	d.runChecks(context.Background())
	err = d.report(false)
	if err == nil {
		t.Fatalf("exposed port did not fail:\n%s", out.String())
	}
	text := out.String()
	for _, want := range []string{"CRITICAL  port-exposed", "0.0.0.0:18789 listens beyond loopback"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "[::1]:18789 listens beyond") || strings.Contains(text, "127.0.0.1:22") {
		t.Errorf("loopback or other ports reported as exposed:\n%s", text)
	}
}

// TestDoctorRealListener reads the real /proc/net: a loopback listener on
// the gateway port is fine, and a running gateway's counters are read.
func TestDoctorRealListener(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	s := newDoctorSetup(t)
	p := startGateway(t, s.state)
	rep, out, err := s.doctor(t, "--port", strconv.Itoa(p.port))
	if err != nil {
		t.Fatalf("doctor against a running loopback gateway: %v\n%s", err, out)
	}
	got := findingsByID(rep)
	if got["ports"].Severity != sevOK || !strings.Contains(got["ports"].Detail, "127.0.0.1:"+strconv.Itoa(p.port)) {
		t.Errorf("ports = %+v", got["ports"])
	}
	if got["running"].Severity != sevOK {
		t.Errorf("running = %+v", got["running"])
	}

	// Something else on the port, bound to every address: critical. Only
	// where binding the wildcard exposes nothing (the suite's network
	// namespace has nothing but lo).
	if !doctorOnlyLoopback(t) {
		t.Log("skipping the wildcard listener: this host has interfaces beyond loopback (./test.sh runs it)")
		return
	}
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	rep, _, err = s.doctor(t, "--port", strconv.Itoa(port))
	wantCritical(t, rep, err, "port-exposed")
}

func TestParseProcNetTCP6(t *testing.T) {
	// ::ffff:127.0.0.1 and :: as the kernel prints them.
	ip, err := procNetIP("0000000000000000FFFF00000100007F")
	if err != nil || ip.String() != "::ffff:127.0.0.1" || !ip.Unmap().IsLoopback() {
		t.Fatalf("mapped loopback: %v %v", ip, err)
	}
	ip, err = procNetIP("00000000000000000000000000000000")
	if err != nil || !ip.IsUnspecified() {
		t.Fatalf("unspecified: %v %v", ip, err)
	}
	if _, err := procNetIP("zz"); err == nil {
		t.Fatal("bad hex accepted")
	}
}

func doctorOnlyLoopback(t *testing.T) bool {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			return false
		}
	}
	return true
}

// TestDoctorTLSGateway: with --tls, doctor checks the managed key and
// certificate and reads the running gateway over TLS.
func TestDoctorTLSGateway(t *testing.T) {
	s := newDoctorSetup(t)
	p := startGateway(t, s.state, "--tls")
	rep, out, err := s.doctor(t, "--tls", "--port", strconv.Itoa(p.port))
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	got := findingsByID(rep)
	for _, id := range []string{"tls-key", "tls-cert", "running"} {
		if got[id].Severity != sevOK {
			t.Errorf("%s = %+v, want ok", id, got[id])
		}
	}
	// A key others can read is critical.
	key := filepath.Join(s.state, "tls", "gateway.key")
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	rep, _, err = s.doctor(t, "--tls", "--port", strconv.Itoa(p.port))
	wantCritical(t, rep, err, "tls-key-mode")
}

// TestDoctorProviders reads provider states from a /metrics page.
func TestDoctorProviders(t *testing.T) {
	page := `# TYPE clawgate_provider_state gauge
clawgate_provider_state{channel="telegram",account="default",state="connected"} 1
clawgate_provider_state{channel="slack",account="work",state="logged-out"} 1
clawgate_provider_state{channel="discord",account="guild \"x\"",state="failed"} 1
`
	d := &doctor{}
	d.checkProviders(promValues(page))
	if len(d.findings) != 1 || d.findings[0].ID != "provider-relink" || d.findings[0].Severity != sevWarn {
		t.Fatalf("findings %+v", d.findings)
	}
	for _, want := range []string{`slack account "work" is logged-out`, `discord account "guild \\\"x\\\"" is failed`} {
		if !strings.Contains(d.findings[0].Detail, want) {
			t.Errorf("detail %q lacks %q", d.findings[0].Detail, want)
		}
	}
	if strings.Contains(d.findings[0].Detail, "telegram") {
		t.Error("a connected account reported")
	}
	d = &doctor{}
	d.checkProviders(promValues(`clawgate_provider_state{channel="telegram",account="default",state="connected"} 1` + "\n"))
	if len(d.findings) != 1 || d.findings[0].ID != "providers" || d.findings[0].Severity != sevOK {
		t.Fatalf("healthy providers: %+v", d.findings)
	}
}
