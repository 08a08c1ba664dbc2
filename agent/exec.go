package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Input formats for the exec backend's stdin.
const (
	// InputText writes the user's new message, as plain text.
	InputText = "text"
	// InputJSON writes {"runId","sessionKey","messages":[{role,content}]}:
	// the whole conversation, for commands that keep no state of their own.
	InputJSON = "json"
)

// ExecConfig configures a command backend.
type ExecConfig struct {
	// Command is the program and its arguments; no shell is involved.
	Command []string
	// Dir is the working directory; empty means the gateway's.
	Dir string
	// Env adds variables ("NAME=value") to the command's environment.
	Env []string
	// Input is InputText (default) or InputJSON.
	Input string
	// Timeout bounds one run; zero means 10 minutes.
	Timeout time.Duration
	// MaxOutput bounds the reply in bytes; zero means 1 MiB.
	MaxOutput int
	// HiddenEnv names extra environment variables the command must not
	// inherit (for example the OpenAI key variable).
	HiddenEnv []string
}

// Exec runs a command per reply.
type Exec struct {
	cfg ExecConfig
}

var _ Backend = (*Exec)(nil)

// killGrace is how long the command's pipes stay open after it was killed,
// for a grandchild that escaped the process group.
const killGrace = 2 * time.Second

// NewExec checks cfg and returns the backend.
func NewExec(cfg ExecConfig) (*Exec, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("agent.NewExec: command is required")
	}
	if _, err := exec.LookPath(cfg.Command[0]); err != nil {
		return nil, fmt.Errorf("agent.NewExec: %w", err)
	}
	switch cfg.Input {
	case "":
		cfg.Input = InputText
	case InputText, InputJSON:
	default:
		return nil, fmt.Errorf("agent.NewExec: input must be %q or %q, not %q", InputText, InputJSON, cfg.Input)
	}
	for _, kv := range cfg.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("agent.NewExec: env entry %q is not NAME=value", kv)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.MaxOutput <= 0 {
		cfg.MaxOutput = 1 << 20
	}
	return &Exec{cfg: cfg}, nil
}

// Describe names the program (not its arguments, which may hold secrets).
func (e *Exec) Describe() string { return "exec " + e.cfg.Command[0] }

// Stream runs the command and streams its stdout.
func (e *Exec) Stream(ctx context.Context, req Request, emit func(string)) (Result, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, e.cfg.Timeout, ErrTimeout)
	defer cancel()

	var stdin []byte
	if e.cfg.Input == InputJSON {
		stdin, _ = json.Marshal(struct {
			RunID      string    `json:"runId"`
			SessionKey string    `json:"sessionKey"`
			Messages   []Message `json:"messages"`
		}{req.RunID, req.SessionKey, req.Messages})
	} else {
		stdin = []byte(req.Prompt())
	}

	cmd := exec.Command(e.cfg.Command[0], e.cfg.Command[1:]...)
	cmd.Dir = e.cfg.Dir
	cmd.Env = append(childEnv(os.Environ(), e.cfg.HiddenEnv), e.cfg.Env...)
	cmd.Env = append(cmd.Env, "CLAWGATE_AGENT_RUN_ID="+req.RunID, "CLAWGATE_AGENT_SESSION_KEY="+req.SessionKey)
	cmd.Stdin = bytes.NewReader(stdin)
	stderr := &tailBuffer{max: 4 << 10}
	cmd.Stderr = stderr
	setProcessGroup(cmd)
	// A grandchild that left the group may keep stderr open after the
	// command exits; Wait stops waiting for it after killGrace.
	cmd.WaitDelay = killGrace
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, fmt.Errorf("agent: exec: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("agent: exec: %w", err)
	}
	// On abort or timeout: kill the whole group, then, if a straggler
	// still holds stdout, close our end so the read below returns.
	var closeTimer *time.Timer
	var timerMu sync.Mutex
	stopKill := context.AfterFunc(ctx, func() {
		killGroup(cmd)
		timerMu.Lock()
		closeTimer = time.AfterFunc(killGrace, func() { _ = stdout.Close() })
		timerMu.Unlock()
	})
	defer func() {
		stopKill()
		timerMu.Lock()
		if closeTimer != nil {
			closeTimer.Stop()
		}
		timerMu.Unlock()
	}()

	total, readErr := e.pump(stdout, emit)
	if readErr != nil {
		killGroup(cmd)
	}
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return Result{}, cause(ctx)
	case readErr != nil:
		return Result{}, readErr
	case waitErr != nil && !errors.Is(waitErr, exec.ErrWaitDelay):
		code := -1
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) {
			code = ee.ExitCode()
		}
		return Result{}, &ExitError{Code: code, Stderr: stderr.String()}
	}
	_ = total
	return Result{StopReason: "stop"}, nil
}

var errTooLong = errors.New("agent: the command's reply is too long")

// pump reads stdout and emits whole UTF-8 sequences as they arrive.
func (e *Exec) pump(r io.Reader, emit func(string)) (int, error) {
	buf := make([]byte, 4096)
	var carry []byte
	total := 0
	for {
		n, err := r.Read(buf)
		if n > 0 {
			total += n
			if total > e.cfg.MaxOutput {
				return total, fmt.Errorf("%w (more than %d bytes)", errTooLong, e.cfg.MaxOutput)
			}
			chunk := append(carry, buf[:n]...)
			cut := validPrefix(chunk)
			if cut > 0 {
				emit(strings.ToValidUTF8(string(chunk[:cut]), "\uFFFD"))
			}
			carry = append([]byte(nil), chunk[cut:]...)
		}
		if err != nil {
			if len(carry) > 0 {
				emit(strings.ToValidUTF8(string(carry), "\uFFFD"))
			}
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
				return total, nil
			}
			return total, fmt.Errorf("agent: exec: read output: %w", err)
		}
	}
}

// validPrefix returns how many leading bytes of b end on a rune boundary;
// at most 3 trailing bytes of an incomplete sequence are held back.
func validPrefix(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// hiddenEnv are variables a command never inherits: the gateway's own
// credentials.
var hiddenEnv = []string{"OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD"}

// childEnv filters the gateway's environment for a child process.
func childEnv(env, extraHidden []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		hidden := strings.HasPrefix(k, "CLAWGATE_")
		for _, h := range append(hiddenEnv, extraHidden...) {
			hidden = hidden || k == h
		}
		if !hidden {
			out = append(out, kv)
		}
	}
	return out
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.ToValidUTF8(string(t.b), "\uFFFD")
}
