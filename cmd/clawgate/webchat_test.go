package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeModel is a loopback OpenAI-compatible chat-completions server that
// streams its answers as server-sent events.
type fakeModel struct {
	srv       *httptest.Server
	requests  atomic.Int64
	abandoned atomic.Int64 // slow streams the client went away from
}

func newFakeModel(t *testing.T) *fakeModel {
	m := &fakeModel{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		m.requests.Add(1)
		var req struct {
			Model    string `json:"model"`
			Messages []struct{ Role, Content string }
			Stream   bool `json:"stream"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !req.Stream || req.Model != "test-model" {
			http.Error(w, `{"error":{"message":"bad request"}}`, 400)
			return
		}
		prompt := req.Messages[len(req.Messages)-1].Content
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := func(s string) {
			b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": s}}}})
			fmt.Fprintf(w, "data: %s\n\n", b)
			w.(http.Flusher).Flush()
		}
		if strings.Contains(prompt, "slow") {
			chunk("Thinking")
			for i := 0; i < 600; i++ {
				select {
				case <-r.Context().Done():
					m.abandoned.Add(1)
					return
				case <-time.After(100 * time.Millisecond):
					chunk(".")
				}
			}
			return
		}
		for _, p := range []string{"Hello ", "from the ", "test model: ", "you said ", "«" + prompt + "»"} {
			chunk(p)
			time.Sleep(120 * time.Millisecond)
		}
		fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// startGatewayOn runs the binary on a given port (so a restart keeps the
// page's origin).
func startGatewayOn(t *testing.T, stateDir string, port int, args ...string) *proc {
	t.Helper()
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
	deadline := time.Now().Add(15 * time.Second)
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
		time.Sleep(20 * time.Millisecond)
	}
}

func artifactsDir(name string) string {
	if d := os.Getenv("CLAWGATE_ARTIFACTS"); d != "" {
		return filepath.Join(d, name)
	}
	return filepath.Join("..", "..", "testdata-artifacts", name)
}

// TestWebChatBrowser drives the embedded WebChat page in a real headless
// Chromium against the real binary: the page makes its device key, waits
// for pairing (approved with `clawgate devices approve`), sends a message
// and shows the reply streamed from a loopback OpenAI-compatible server,
// aborts a slow run, and carries on across a gateway restart.
func TestWebChatBrowser(t *testing.T) {
	bin := chromiumPath()
	if bin == "" {
		if os.Getenv("CLAWGATE_REQUIRE_COMPAT") == "1" {
			t.Fatal("chromium not found (scripts/deps.sh installs it)")
		}
		t.Skip("chromium not found; run scripts/deps.sh")
	}
	model := newFakeModel(t)
	state := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{"version":1,"agent":{"backend":"openai","openai":{"baseUrl":%q,"model":"test-model"},
		"systemPrompt":"You are a test.","history":{"maxMessages":100}}}`, model.srv.URL+"/v1")
	if err := os.WriteFile(filepath.Join(state, "clawgate.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	gw := startGatewayOn(t, state, port)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	url := fmt.Sprintf("ws://127.0.0.1:%d", port)
	tok, err := runCLI(t, state, "token")
	if err != nil {
		t.Fatal(err)
	}
	tok = strings.TrimSpace(tok)
	shots := artifactsDir("webchat")

	// The page is served with a strict policy.
	resp, err := http.Get(origin + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<script src="app.js"`) ||
		!strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
		!strings.Contains(csp, "connect-src 'self' ws://127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("GET /: %d, CSP %q", resp.StatusCode, csp)
	}

	b := startBrowser(t, bin)
	b.navigate(origin + "/#token=" + tok)
	b.waitFor("pairing request", `document.getElementById('status').dataset.state === 'pairing' && document.getElementById('request-id').textContent.length > 8`, 30*time.Second)
	if h := b.text("location.hash"); strings.Contains(h, tok) {
		t.Fatalf("the token stayed in the address bar: %q", h)
	}
	reqID := b.text("document.getElementById('request-id').textContent")
	deviceID := b.text("document.getElementById('device-id').textContent")
	b.screenshot(shots, "1-pairing.png")
	// Loopback browser pages are not approved silently; an admin approves.
	if out, err := runCLI(t, state, "devices", "approve", reqID, "--url", url); err != nil {
		t.Fatalf("devices approve %s: %v\n%s", reqID, err, out)
	}
	b.waitFor("connected", `document.getElementById('status').dataset.state === 'connected'`, 30*time.Second)
	list, err := runCLI(t, state, "devices", "list", "--url", url, "--json")
	if err != nil || !strings.Contains(list, deviceID) {
		t.Fatalf("paired devices (%v) lack the page's device %s:\n%s", err, deviceID, list)
	}
	b.screenshot(shots, "2-connected.png")

	// Record every text an assistant bubble shows, to see the stream.
	b.eval(`window.__seen = []; new MutationObserver(() => {
		for (const el of document.querySelectorAll('.msg.assistant .text')) window.__seen.push(el.textContent);
	}).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true}); true`, nil)
	b.typeText("#input", "hello gateway")
	b.click("#send")
	want := "Hello from the test model: you said «hello gateway»"
	b.waitFor("streamed reply", fmt.Sprintf(`(() => { const a = document.querySelectorAll('.msg.assistant');
		return a.length === 1 && a[0].querySelector('.text').textContent === %q && !a[0].classList.contains('streaming'); })()`, want), 30*time.Second)
	var seen []string
	b.eval("window.__seen", &seen)
	partial := false
	for _, s := range seen {
		if s != "" && s != want && strings.HasPrefix(want, s) {
			partial = true
		}
	}
	if !partial {
		t.Fatalf("no partial reply was shown before the final one; texts seen: %q", seen)
	}
	b.screenshot(shots, "3-reply.png")

	// Abort a run that would stream for a minute.
	b.typeText("#input", "please be slow")
	b.click("#send")
	b.waitFor("slow run streaming", `(() => { const a = document.querySelectorAll('.msg.assistant');
		return a.length === 2 && a[1].classList.contains('streaming') && a[1].textContent.startsWith('Thinking') &&
			!document.getElementById('abort').disabled; })()`, 30*time.Second)
	b.screenshot(shots, "4-streaming.png")
	b.click("#abort")
	b.waitFor("aborted run", `(() => { const a = document.querySelectorAll('.msg.assistant');
		return a.length === 2 && !a[1].classList.contains('streaming') && (a[1].querySelector('.note') || {}).textContent === 'stopped'; })()`, 30*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for model.abandoned.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the abort did not reach the model server (its stream was not closed)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.screenshot(shots, "5-aborted.png")

	// Restart the gateway: the page notices, reconnects with its device
	// token and shows the history again.
	if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gw.done:
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not stop on SIGTERM")
	}
	b.waitFor("reconnecting", `document.getElementById('status').dataset.state === 'reconnecting'`, 15*time.Second)
	b.eval(`document.getElementById('messages').replaceChildren(); true`, nil) // prove the history is refetched
	startGatewayOn(t, state, port)
	b.waitFor("reconnected with history", `document.getElementById('status').dataset.state === 'connected' &&
		document.querySelectorAll('.msg').length === 4`, 30*time.Second)
	texts := b.text(`Array.from(document.querySelectorAll('.msg')).map(e => e.className + ': ' + e.textContent).join('\n')`)
	for _, w := range []string{"msg user: hello gateway", "msg assistant: " + want, "msg user: please be slow", "stopped"} {
		if !strings.Contains(texts, w) {
			t.Fatalf("history after restart lacks %q:\n%s", w, texts)
		}
	}
	b.typeText("#input", "still there?")
	b.click("#send")
	b.waitFor("reply after restart", `Array.from(document.querySelectorAll('.msg.assistant .text')).some(e => e.textContent.endsWith('«still there?»'))`, 30*time.Second)
	b.screenshot(shots, "6-after-restart.png")
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Fatalf("page errors:\n%s", strings.Join(errs, "\n"))
	}
	if n := model.requests.Load(); n != 3 {
		t.Fatalf("model server got %d requests, want 3", n)
	}
}
