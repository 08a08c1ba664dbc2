package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/providers/whatsapp"
	wafake "github.com/clawgate/clawgate/providers/whatsapp/fake"
)

// whatsappConfig writes a config with one WhatsApp account admitting
// the fake's peer.
func whatsappConfig(t *testing.T, state string, acct map[string]any) {
	t.Helper()
	if acct == nil {
		acct = map[string]any{"allowFrom": []string{"+15551234567"}}
	}
	b, _ := json.Marshal(map[string]any{"version": 1, "channels": map[string]any{"whatsapp": []any{acct}}})
	if err := os.WriteFile(filepath.Join(state, "clawgate.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWhatsAppConfigRefusals: allowlist entries that could never match a
// WhatsApp sender, and unsafe account ids or paths, stop the gateway at
// startup.
func TestWhatsAppConfigRefusals(t *testing.T) {
	cases := []struct {
		name string
		acct map[string]any
		want string
	}{
		{"number without +", map[string]any{"allowFrom": []string{"15551234567"}}, "E.164"},
		{"name in allowFrom", map[string]any{"allowFrom": []string{"alice"}}, "not a WhatsApp sender id"},
		{"bad allowTo", map[string]any{"allowTo": []string{"status@broadcast"}}, "allowTo"},
		{"path in the id", map[string]any{"id": "../../etc"}, "names the session directory"},
		{"relative sessionDir", map[string]any{"sessionDir": "wa"}, "absolute"},
		{"unknown field", map[string]any{"phone": "+15551234567"}, "unknown field"},
	}
	for _, tc := range cases {
		state := privateDir(t)
		whatsappConfig(t, state, tc.acct)
		out, err := runCLIAll(t, state, "gateway", "--port", strconv.Itoa(freePort(t)))
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %v, output %q; want a refusal mentioning %q", tc.name, err, out, tc.want)
		}
	}
}

// TestWhatsAppOneGatewayPerSession: a second gateway on the same state
// directory cannot open the WhatsApp session and says which process holds
// it; the first reports "needs re-link" in health until a device is linked,
// without touching the network; the session files are private (I14).
func TestWhatsAppOneGatewayPerSession(t *testing.T) {
	state := privateDir(t)
	dir := filepath.Join(t.TempDir(), "wa-session")
	acct := map[string]any{"sessionDir": dir, "allowFrom": []string{"+15551234567"}}
	whatsappConfig(t, state, acct)
	gw := startGateway(t, state)
	op := dialOperator(t, gw.port, state)
	deadline := time.Now().Add(15 * time.Second)
	var wa map[string]any
	for time.Now().Before(deadline) {
		h, err := op.call(t, "health", nil)
		if err != nil {
			t.Fatal(err)
		}
		wa, _ = h["channels"].(map[string]any)["whatsapp"].(map[string]any)
		if msg, _ := wa["lastError"].(string); strings.Contains(msg, "needs re-link") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if msg, _ := wa["lastError"].(string); !strings.Contains(msg, "needs re-link (not linked yet)") || wa["connected"] != false ||
		!strings.Contains(msg, "clawgate channels login whatsapp") {
		t.Fatalf("health whatsapp = %v; want needs re-link with the fix", wa)
	}
	cs, err := op.call(t, "channels.status", nil)
	if err != nil {
		t.Fatal(err)
	}
	accts, _ := cs["channelAccounts"].(map[string]any)["whatsapp"].([]any)
	if len(accts) != 1 {
		t.Fatalf("channels.status whatsapp accounts = %v", cs["channelAccounts"])
	}
	if a, _ := accts[0].(map[string]any); a["connected"] != false || a["tokenSource"] != "session" ||
		!strings.Contains(fmt.Sprint(a["lastError"]), "needs re-link (not linked yet)") {
		t.Fatalf("channels.status whatsapp = %v; want needs re-link", a)
	}

	// Another gateway, with its own state, configured for the same session.
	other := privateDir(t)
	whatsappConfig(t, other, acct)
	out, err := runCLIAll(t, other, "gateway", "--port", strconv.Itoa(freePort(t)))
	want := fmt.Sprintf("in use by another process (pid %d)", gw.cmd.Process.Pid)
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("second gateway: exit %v, output %q; want a refusal naming pid %d", err, out, gw.cmd.Process.Pid)
	}

	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("session dir: %v %v", fi, err)
	}
	for _, name := range []string{"session.db", "session.lock"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v; want mode 0600", name, fi, err)
		}
	}
}

// TestDoctorWhatsAppHelper: with a WhatsApp account configured, doctor
// finds the helper where the gateway would, and calls its absence critical.
func TestDoctorWhatsAppHelper(t *testing.T) {
	s := newDoctorSetup(t)
	s.write(t, "clawgate.json", `{"version":1,"channels":{"whatsapp":[{"allowFrom":["+15551234567"]}]}}`, 0o600)
	rep, out, err := s.doctor(t)
	if f := findingsByID(rep)["whatsapp-helper"]; err != nil || f.Severity != sevOK || !strings.HasSuffix(f.Detail, "/"+whatsapp.HelperName) {
		t.Fatalf("helper installed: err %v, finding %+v\n%s", err, f, out)
	}
	t.Setenv("CLAWGATE_HELPER_DIR", t.TempDir())
	rep, _, err = s.doctor(t)
	if f := wantCritical(t, rep, err, "whatsapp-helper"); !strings.Contains(f.Detail, whatsapp.HelperName) {
		t.Errorf("finding %+v does not name the helper", f)
	}
}

// codeWriter collects output and hands out the codes `--print-code` prints.
type codeWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	codes chan string
}

func newCodeWriter() *codeWriter { return &codeWriter{codes: make(chan string, 16)} }

func (w *codeWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := w.buf.Len()
	w.buf.Write(p)
	for _, line := range strings.Split(w.buf.String()[max(0, before-200):], "\n") {
		if code, ok := strings.CutPrefix(line, "code: "); ok && strings.Count(code, ",") == 3 {
			select {
			case w.codes <- code:
			default:
			}
		}
	}
	return len(p), nil
}

func (w *codeWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *codeWriter) next(t *testing.T) string {
	t.Helper()
	select {
	case c := <-w.codes:
		return c
	case <-time.After(15 * time.Second):
		t.Fatalf("no code printed; output:\n%s", w.String())
		return ""
	}
}

// TestChannelsLoginWhatsApp runs `clawgate channels login whatsapp` in
// process against the loopback fake: first with no gateway (the CLI opens
// the session itself), then with a gateway holding the session (the CLI
// links through web.login.start/wait); the linked gateway then carries an
// encrypted message in and a reply out.
func TestChannelsLoginWhatsApp(t *testing.T) {
	srv, err := wafake.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	endpoint := &whatsapp.TestEndpoint{Addr: srv.Addr(), Cert: srv.Certificate(), RootKey: srv.CertPubKey()}

	state := privateDir(t)
	whatsappConfig(t, state, nil)
	getenv := func(k string) string {
		if k == "CLAWGATE_STATE_DIR" {
			return state
		}
		return ""
	}
	login := func(args ...string) (*codeWriter, chan error) {
		out := newCodeWriter()
		done := make(chan error, 1)
		go func() {
			done <- run(context.Background(), append([]string{"channels", "login", "whatsapp", "--print-code", "--timeout", "30s"}, args...),
				env{stdout: out, stderr: out, getenv: getenv, whatsappTest: endpoint})
		}()
		return out, done
	}

	// No gateway: the CLI links by itself.
	out, done := login()
	if err := srv.ScanQR(out.next(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || !strings.Contains(out.String(), "WhatsApp linked as +15550000001") {
		t.Fatalf("login: %v\n%s", err, out.String())
	}
	out, done = login()
	if err := <-done; err != nil || !strings.Contains(out.String(), "already linked") {
		t.Fatalf("second login: %v\n%s", err, out.String())
	}

	// A gateway holds the session.
	port := freePort(t)
	logs := &codeWriter{codes: make(chan string, 1)}
	gctx, stop := context.WithCancel(context.Background())
	gdone := make(chan error, 1)
	go func() {
		gdone <- run(gctx, []string{"gateway", "--port", strconv.Itoa(port)},
			env{stdout: logs, stderr: logs, getenv: getenv, whatsappTest: endpoint})
	}()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-gdone:
			if err != nil {
				t.Errorf("gateway: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("gateway did not stop")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	waitHealthz(t, port)
	op := dialOperator(t, port, state)
	waitWhatsApp(t, op, true)

	out, done = login("--force", "--url", fmt.Sprintf("ws://127.0.0.1:%d", port))
	code := out.next(t)
	if !strings.Contains(out.String(), "linking through it") {
		t.Fatalf("the CLI did not go through the gateway:\n%s", out.String())
	}
	if err := srv.ScanQR(code); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || !strings.Contains(out.String(), "the gateway is connected") {
		t.Fatalf("login through the gateway: %v\n%s", err, out.String())
	}
	waitWhatsApp(t, op, true)
	if !op.sawEvent("web.login", `"connected"`) {
		t.Error("no web.login connected event")
	}

	// Message in, reply out, both Signal-encrypted end to end.
	if _, err := srv.Inject("15551234567", "Alice", "hello gateway"); err != nil {
		t.Fatal(err)
	}
	p := op.waitMessage(t, "whatsapp", "hello gateway")
	if p["senderId"] != "+15551234567" || p["chatType"] != "direct" {
		t.Errorf("whatsapp event: %v", p)
	}
	res, err := op.call(t, "send", map[string]any{"channel": "whatsapp", "to": "+15551234567", "message": "hello Alice", "idempotencyKey": "wa-1"})
	if err != nil || res["messageId"] == "" {
		t.Fatalf("send: %v %v", res, err)
	}
	if s := srv.Sent(); len(s) != 1 || s[0].Text != "hello Alice" || s[0].ChatID != "+15551234567" {
		t.Errorf("the fake decrypted %+v", s)
	}
	for _, secret := range []string{code} {
		if strings.Contains(logs.String(), secret) {
			t.Error("the gateway log contains a QR code")
		}
	}
}

func waitHealthz(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("gateway not listening")
}

func waitWhatsApp(t *testing.T, op *operator, connected bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last any
	for time.Now().Before(deadline) {
		h, err := op.call(t, "health", nil)
		if err != nil {
			t.Fatal(err)
		}
		wa, _ := h["channels"].(map[string]any)["whatsapp"].(map[string]any)
		last = wa
		if wa["connected"] == connected {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("whatsapp health = %v; want connected %v", last, connected)
}

func (o *operator) sawEvent(name, contains string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.ev {
		if e.Name == name && strings.Contains(string(e.Payload), contains) {
			return true
		}
	}
	return false
}

var _ = exec.Command
