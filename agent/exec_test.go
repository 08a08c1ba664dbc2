//go:build unix

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExecStreamsStdout(t *testing.T) {
	t.Setenv("CLAWGATE_GATEWAY_TOKEN", "gateway-secret")
	t.Setenv("OPENCLAW_GATEWAY_TOKEN", "gateway-secret")
	t.Setenv("MY_KEY", "key-secret")
	sh := script(t, `read -r prompt
printf 'you said: %s' "$prompt"
sleep 0.2
printf ' | token=[%s%s%s] run=%s' "$CLAWGATE_GATEWAY_TOKEN" "$OPENCLAW_GATEWAY_TOKEN" "$MY_KEY" "$CLAWGATE_AGENT_RUN_ID"
printf ' extra=%s' "$EXTRA"
`)
	b, err := NewExec(ExecConfig{Command: []string{sh}, Env: []string{"EXTRA=yes"}, HiddenEnv: []string{"MY_KEY"}})
	if err != nil {
		t.Fatal(err)
	}
	var chunks []string
	start := time.Now()
	var firstAt time.Duration
	res, err := b.Stream(context.Background(), Request{RunID: "r1", Messages: []Message{
		{Role: RoleUser, Content: "old"}, {Role: RoleAssistant, Content: "a"}, {Role: RoleUser, Content: "hello there"}}},
		func(s string) {
			if chunks == nil {
				firstAt = time.Since(start)
			}
			chunks = append(chunks, s)
		})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(chunks, "")
	want := "you said: hello there | token=[] run=r1 extra=yes"
	if got != want || res.StopReason != "stop" {
		t.Fatalf("got %q (%s), want %q", got, res.StopReason, want)
	}
	// The first piece arrived before the script finished: it streams.
	if len(chunks) < 2 || firstAt >= 200*time.Millisecond {
		t.Fatalf("not streamed: %d chunks, first after %v", len(chunks), firstAt)
	}
}

func TestExecJSONInput(t *testing.T) {
	sh := script(t, `cat`)
	b, err := NewExec(ExecConfig{Command: []string{sh}, Input: InputJSON})
	if err != nil {
		t.Fatal(err)
	}
	text, _, err := collect(t, b, context.Background(), Request{RunID: "r", SessionKey: "main",
		Messages: []Message{{Role: RoleUser, Content: "q"}}})
	if err != nil {
		t.Fatal(err)
	}
	var in struct {
		RunID, SessionKey string
		Messages          []Message
	}
	if err := json.Unmarshal([]byte(text), &in); err != nil || in.SessionKey != "main" || len(in.Messages) != 1 {
		t.Fatalf("stdin was %q (%v)", text, err)
	}
}

// pidAlive reports whether pid still exists (and is not a zombie we own).
func pidAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	f := strings.Fields(string(st))
	return len(f) > 2 && f[2] != "Z"
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d survived the kill", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// childScript starts a grandchild that would outlive a plain kill of the
// script, records both pids, prints a line, and hangs.
func childScript(t *testing.T) (string, string) {
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	sh := script(t, `sleep 300 &
echo "$$ $!" > `+pids+`
printf 'working'
wait
`)
	return sh, pids
}

func readPids(t *testing.T, path string) []int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw, _ := os.ReadFile(path)
		f := strings.Fields(string(raw))
		if len(f) == 2 {
			a, _ := strconv.Atoi(f[0])
			b, _ := strconv.Atoi(f[1])
			return []int{a, b}
		}
		if time.Now().After(deadline) {
			t.Fatal("script did not record its pids")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExecAbortKillsProcessGroup(t *testing.T) {
	sh, pidFile := childScript(t)
	b, err := NewExec(ExecConfig{Command: []string{sh}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	first := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		_, err := b.Stream(ctx, Request{}, func(s string) {
			select {
			case first <- s:
			default:
			}
		})
		done <- err
	}()
	if s := <-first; s != "working" {
		t.Fatalf("first output %q", s)
	}
	pids := readPids(t, pidFile)
	cancel(ErrAborted)
	select {
	case err := <-done:
		if !errors.Is(err, ErrAborted) {
			t.Fatalf("error %v, want ErrAborted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stream did not return after abort")
	}
	for _, pid := range pids {
		waitGone(t, pid)
	}
}

func TestExecTimeout(t *testing.T) {
	sh, pidFile := childScript(t)
	b, err := NewExec(ExecConfig{Command: []string{sh}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = collect(t, b, context.Background(), Request{})
	if !errors.Is(err, ErrTimeout) || Kind(err) != "timeout" {
		t.Fatalf("error %v (kind %s), want timeout", err, Kind(err))
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("timeout took %v", el)
	}
	for _, pid := range readPids(t, pidFile) {
		waitGone(t, pid)
	}
}

func TestExecFailures(t *testing.T) {
	fail := script(t, "echo partial; echo 'boom: details' >&2; exit 3\n")
	b, _ := NewExec(ExecConfig{Command: []string{fail}})
	_, _, err := collect(t, b, context.Background(), Request{})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || !strings.Contains(ee.Stderr, "boom") {
		t.Fatalf("error %#v", err)
	}
	if strings.Contains(err.Error(), "boom") {
		t.Fatalf("stderr reached the client-facing message: %v", err)
	}

	loud := script(t, "yes x | head -c 100000\n")
	b, _ = NewExec(ExecConfig{Command: []string{loud}, MaxOutput: 1000})
	_, _, err = collect(t, b, context.Background(), Request{})
	if !errors.Is(err, errTooLong) {
		t.Fatalf("error %v, want too long", err)
	}

	for _, c := range []ExecConfig{{}, {Command: []string{"/nonexistent/agent"}}, {Command: []string{fail}, Input: "xml"},
		{Command: []string{fail}, Env: []string{"NOEQUALS"}}} {
		if _, err := NewExec(c); err == nil {
			t.Errorf("NewExec(%+v) accepted", c)
		}
	}
}

func TestExecUTF8Boundaries(t *testing.T) {
	// Multi-byte characters split across writes are never cut.
	sh := script(t, `printf '\303'; sleep 0.05; printf '\251t\303\251'`)
	b, _ := NewExec(ExecConfig{Command: []string{sh}})
	var chunks []string
	_, err := b.Stream(context.Background(), Request{}, func(s string) { chunks = append(chunks, s) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(chunks, "") != "été" {
		t.Fatalf("chunks %q", chunks)
	}
	for _, c := range chunks {
		if !strings.HasPrefix(c, "é") && c != "t" && !strings.HasPrefix(c, "t") {
			t.Fatalf("chunk %q is cut mid-rune", c)
		}
	}
}

// TestExecEscapedGrandchild: a background process that keeps the output
// pipes open after the command exits does not hold the reply hostage.
func TestExecEscapedGrandchild(t *testing.T) {
	sh := script(t, "printf 'answer'\n(setsid sleep 30 >/dev/null 2>&1 </dev/null &)\nsleep 30 >&2 &\nexit 0\n")
	b, err := NewExec(ExecConfig{Command: []string{sh}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	text, res, err := collect(t, b, context.Background(), Request{})
	if err != nil || text != "answer" || res.StopReason != "stop" {
		t.Fatalf("%q %+v %v", text, res, err)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("took %v", el)
	}
}
