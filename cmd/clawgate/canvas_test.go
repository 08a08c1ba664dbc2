package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCanvasAndCronWiring runs the real binary: the canvas host answers on
// its own port (401 and the CSP without a capability), canvas.put writes
// into <state>/canvas, cron jobs live in the state file and survive a
// restart, and bad automation flags stop the start with a clear message.
func TestCanvasAndCronWiring(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	cport := freePort(t)
	p := startGateway(t, state, "--canvas-port", strconv.Itoa(cport), "--cron-missed", "skip")
	url := fmt.Sprintf("ws://127.0.0.1:%d", p.port)
	// The canvas host listens before the gateway serves, so it is up.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/__openclaw__/canvas/main/", cport))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("canvas without capability: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Security-Policy"), body)
	}

	callJSON := func(method, params string) map[string]any {
		t.Helper()
		out, err := runCLI(t, state, "call", method, "--url", url, "--json", "--params", params)
		if err != nil {
			t.Fatalf("call %s: %v\n%s", method, err, out)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("call %s output %q: %v", method, out, err)
		}
		return m
	}
	callJSON("canvas.put", `{"path":"index.html","content":"<h1>hi</h1>"}`)
	page := filepath.Join(state, "canvas", "main", "index.html")
	if b, err := os.ReadFile(page); err != nil || string(b) != "<h1>hi</h1>" {
		t.Fatalf("page on disk: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Dir(page)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("canvas folder mode: %v %v", fi, err)
	}
	st := callJSON("cron.status", `{}`)
	if st["storage"] != "bbolt" || st["missedPolicy"] != "skip" {
		t.Fatalf("cron.status %v", st)
	}
	job := callJSON("cron.add", `{"name":"nightly","sessionTarget":"main","wakeMode":"next-heartbeat",`+
		`"schedule":{"kind":"cron","expr":"0 3 * * *","tz":"Europe/Berlin"},"payload":{"kind":"systemEvent","text":"night"}}`)
	id, _ := job["id"].(string)

	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not stop")
	}
	p2 := startGateway(t, state, "--canvas-port", strconv.Itoa(cport))
	url = fmt.Sprintf("ws://127.0.0.1:%d", p2.port)
	got := callJSON("cron.get", `{"id":"`+id+`"}`)
	if got["name"] != "nightly" || got["schedule"].(map[string]any)["tz"] != "Europe/Berlin" {
		t.Fatalf("job after restart: %v", got)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cron-missed", "sometimes"}, "--cron-missed"},
		{[]string{"--heartbeat", "5s"}, "--heartbeat must be 0 (off) or at least 1m"},
		{[]string{"--canvas-port", "70000"}, "--canvas-port 70000 is out of range"},
	} {
		out, err := runCLIAll(t, filepath.Join(t.TempDir(), "s"), append([]string{"gateway", "--port", strconv.Itoa(freePort(t))}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("gateway %v: %v\n%s", tc.args, err, out)
		}
	}
}
