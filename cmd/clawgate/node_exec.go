package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// The headless node's exec policy: what system.run may start. Deny by
// default: with the default allowlist mode and an empty allowlist, every
// command needs an operator's approval (exec.approval.request, forwarded by
// the gateway as approved + approvalDecision); allow-always adds the
// executable to the node's own allowlist file. security=deny refuses
// everything, security=full runs anything (the operator's choice).

// defaultOutputCap bounds stdout and stderr, each (OpenClaw's OUTPUT_CAP).
const defaultOutputCap = 200000

// baseEnvKeys are inherited from the node's own environment; callers may
// set only the keys --env-allow names.
var baseEnvKeys = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"}

type execPolicy struct {
	security, ask string
	envAllow      []string
	maxOutput     int
	maxRun        time.Duration
	file          string
	logf          func(string, ...any)

	mu    sync.Mutex
	allow []string // absolute executable paths
}

type execApprovalsFile struct {
	Version int      `json:"version"`
	Allow   []string `json:"allow"`
}

// loadExecPolicy reads the allowlist file (0600), adds allowExec (each
// resolved to an absolute path now) and saves it.
func loadExecPolicy(file, security, ask string, allowExec, envAllow []string, maxOutput int, maxRun time.Duration) (*execPolicy, error) {
	p := &execPolicy{security: security, ask: ask, envAllow: envAllow, maxOutput: maxOutput, maxRun: maxRun, file: file,
		logf: func(string, ...any) {}}
	raw, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("node: %w", err)
	default:
		if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("node: %s has mode %04o; it decides what this node runs (fix with: chmod 600 %s)", file, st.Mode().Perm(), file)
		}
		var f execApprovalsFile
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, fmt.Errorf("node: %s: %w", file, err)
		}
		p.allow = f.Allow
	}
	changed := false
	for _, a := range allowExec {
		abs, err := resolveExecutable(a, os.Getenv("PATH"), "")
		if err != nil {
			return nil, fmt.Errorf("node: --allow-exec %s: %w", a, err)
		}
		if !slices.Contains(p.allow, abs) {
			p.allow, changed = append(p.allow, abs), true
		}
	}
	if changed {
		if err := p.save(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *execPolicy) save() error {
	b, _ := json.MarshalIndent(execApprovalsFile{Version: 1, Allow: p.allow}, "", "  ")
	tmp := p.file + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("node: save allowlist: %w", err)
	}
	return os.Rename(tmp, p.file)
}

// resolveExecutable finds name: an absolute path as is, a relative path
// against cwd, a bare name on path.
func resolveExecutable(name, path, cwd string) (string, error) {
	if name == "" {
		return "", errors.New("empty executable")
	}
	if strings.ContainsRune(name, filepath.Separator) {
		if !filepath.IsAbs(name) {
			name = filepath.Join(cwd, name)
		}
		if st, err := os.Stat(name); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", name)
		}
		return filepath.Clean(name), nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // never the current directory
		}
		cand := filepath.Join(dir, name)
		if st, err := os.Stat(cand); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH", name)
}

// invoke runs one invocation.
func (p *execPolicy) invoke(ctx context.Context, req nodeInvokeRequest) nodeResult {
	var raw []byte
	if req.ParamsJSON != nil {
		raw = []byte(*req.ParamsJSON)
	}
	switch req.Command {
	case "system.which":
		var prm struct {
			Bins []string `json:"bins"`
		}
		if json.Unmarshal(raw, &prm) != nil || prm.Bins == nil {
			return invalid("bins required")
		}
		found := map[string]string{}
		for _, b := range prm.Bins {
			if b = strings.TrimSpace(b); b == "" || strings.ContainsRune(b, filepath.Separator) {
				continue
			}
			if abs, err := resolveExecutable(b, os.Getenv("PATH"), ""); err == nil {
				found[b] = abs
			}
		}
		return nodeResult{Payload: map[string]any{"bins": found}}
	case "system.run":
		return p.run(ctx, raw, req)
	}
	return invalid("unknown command " + req.Command)
}

func invalid(msg string) nodeResult {
	return nodeResult{Error: &nodeErr{Code: "INVALID_REQUEST", Message: "INVALID_REQUEST: " + msg}}
}

func denied(msg string) nodeResult {
	return nodeResult{Error: &nodeErr{Code: "SYSTEM_RUN_DENIED", Message: msg}}
}

type runParams struct {
	Command          []string          `json:"command"`
	Cwd              *string           `json:"cwd"`
	Env              map[string]string `json:"env"`
	TimeoutMs        *int64            `json:"timeoutMs"`
	Approved         bool              `json:"approved"`
	ApprovalDecision string            `json:"approvalDecision"`
	RunID            string            `json:"runId"`
}

// runResult is system.run's payload (OpenClaw's node host shape).
type runResult struct {
	ExitCode  *int    `json:"exitCode"`
	TimedOut  bool    `json:"timedOut"`
	Success   bool    `json:"success"`
	Stdout    string  `json:"stdout"`
	Stderr    string  `json:"stderr"`
	Error     *string `json:"error"`
	Truncated bool    `json:"truncated"`
}

func (p *execPolicy) run(ctx context.Context, raw []byte, req nodeInvokeRequest) nodeResult {
	var prm runParams
	if json.Unmarshal(raw, &prm) != nil || len(prm.Command) == 0 {
		return invalid("command required (argv array)")
	}
	cwd := ""
	if prm.Cwd != nil {
		cwd = *prm.Cwd
		if !filepath.IsAbs(cwd) {
			return invalid("cwd must be an absolute path")
		}
	}
	for k := range prm.Env {
		if !slices.Contains(p.envAllow, k) {
			return invalid("env " + k + " is not allowed on this node (see --env-allow)")
		}
	}
	if p.security == "deny" {
		p.logf("refused %q: security=deny", prm.Command[0])
		return denied("SYSTEM_RUN_DISABLED: security=deny")
	}
	exe, rerr := resolveExecutable(prm.Command[0], os.Getenv("PATH"), cwd)
	approved := prm.Approved || prm.ApprovalDecision == "allow-once" || prm.ApprovalDecision == "allow-always"
	if p.security == "allowlist" {
		p.mu.Lock()
		listed := rerr == nil && slices.Contains(p.allow, exe)
		p.mu.Unlock()
		switch {
		case listed:
		case approved:
			if prm.ApprovalDecision == "allow-always" && rerr == nil {
				p.mu.Lock()
				if !slices.Contains(p.allow, exe) {
					p.allow = append(p.allow, exe)
					if err := p.save(); err != nil {
						p.logf("could not save the allowlist: %v", err)
					}
				}
				p.mu.Unlock()
			}
		case p.ask == "off":
			p.logf("refused %q: allowlist miss", prm.Command[0])
			return denied("SYSTEM_RUN_DENIED: allowlist miss")
		default:
			p.logf("refused %q: approval required", prm.Command[0])
			return denied("SYSTEM_RUN_DENIED: approval required")
		}
	}
	if rerr != nil {
		msg := rerr.Error()
		return nodeResult{Payload: runResult{Error: &msg}}
	}

	timeout := p.maxRun
	if prm.TimeoutMs != nil && *prm.TimeoutMs > 0 {
		timeout = min(timeout, time.Duration(*prm.TimeoutMs)*time.Millisecond)
	}
	if req.TimeoutMs > 1000 { // finish before the gateway gives up
		timeout = min(timeout, time.Duration(req.TimeoutMs-500)*time.Millisecond)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, exe, prm.Command[1:]...)
	cmd.Dir = cwd
	env := []string{}
	for _, k := range baseEnvKeys {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range prm.Env {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	stdout, stderr := &capWriter{max: p.maxOutput}, &capWriter{max: p.maxOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	setProcessGroup(cmd)
	cmd.WaitDelay = 2 * time.Second
	p.logf("running %s (%d args)%s", exe, len(prm.Command)-1, map[bool]string{true: " under an operator approval", false: ""}[approved && p.security == "allowlist"])
	err := cmd.Run()
	res := runResult{Stdout: stdout.String(), Stderr: stderr.String(), Truncated: stdout.dropped > 0 || stderr.dropped > 0}
	res.TimedOut = errors.Is(rctx.Err(), context.DeadlineExceeded)
	var ee *exec.ExitError
	switch {
	case err == nil:
		code := 0
		res.ExitCode = &code
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		code := ee.ExitCode()
		res.ExitCode = &code
	case res.TimedOut:
	default:
		msg := err.Error()
		res.Error = &msg
	}
	res.Success = res.ExitCode != nil && *res.ExitCode == 0 && !res.TimedOut
	return nodeResult{Payload: res}
}

// capWriter keeps the first max bytes and counts the rest.
type capWriter struct {
	max     int
	buf     []byte
	dropped int
}

func (w *capWriter) Write(b []byte) (int, error) {
	room := w.max - len(w.buf)
	if room > 0 {
		n := min(room, len(b))
		w.buf = append(w.buf, b[:n]...)
		w.dropped += len(b) - n
	} else {
		w.dropped += len(b)
	}
	return len(b), nil
}

func (w *capWriter) String() string { return strings.ToValidUTF8(string(w.buf), "\uFFFD") }
