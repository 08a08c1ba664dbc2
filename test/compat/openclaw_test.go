package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const openclawCommandTimeout = 120 * time.Second

// nodeSlots bounds how many OpenClaw (Node) processes run at once. Each one
// needs a few CPU-seconds just to load; on a 2-core machine running them all
// in parallel (next to -race builds) only makes each one slower. A command's
// timeout starts once it holds a slot.
var nodeSlots = make(chan struct{}, min(max(runtime.NumCPU(), 1), 4))

// offlineEnv keeps OpenClaw from reaching out on its own (mDNS, update
// checks, channels, model catalog). scripts/netns.sh sets the same.
var offlineEnv = []string{
	"OPENCLAW_DISABLE_BONJOUR=1",
	"OPENCLAW_NO_AUTO_UPDATE=1",
	"OPENCLAW_SKIP_CHANNELS=1",
	"OPENCLAW_OFFLINE=1",
	"NO_COLOR=1",
	"FORCE_COLOR=0",
}

// openclaw is the installed OpenClaw package plus a throwaway home for it.
type openclaw struct {
	Node string // Node >= 24.16
	Dir  string // .../node_modules/openclaw
	Bin  string // the CLI entry file named by package.json "bin"
	Home string // HOME, OPENCLAW_HOME, state, config, XDG dirs and TMPDIR live here
}

// newOpenClaw finds node and the openclaw package from the environment
// (skipping or failing per CLAWGATE_REQUIRE_COMPAT) and makes a fresh home.
func newOpenClaw(t *testing.T) *openclaw {
	t.Helper()
	node := requireEnvPath(t, envNode)
	dir := requireEnvPath(t, envOpenClawDir)
	bin, err := openclawBinEntry(dir)
	if err != nil {
		t.Fatalf("openclaw CLI entry: %v", err)
	}
	home := t.TempDir()
	for _, d := range []string{"tmp", "state", ".config", ".cache", ".local/share", ".local/state"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return &openclaw{Node: node, Dir: dir, Bin: bin, Home: home}
}

// openclawBinEntry reads package.json "bin" (a string, or a map with an
// "openclaw" entry) and returns the absolute path of the CLI script.
func openclawBinEntry(dir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return "", err
	}
	var pkg struct {
		Version string          `json:"version"`
		Bin     json.RawMessage `json:"bin"`
	}
	if err := json.Unmarshal(raw, &pkg); err != nil {
		return "", fmt.Errorf("package.json: %w", err)
	}
	var rel string
	var single string
	var multi map[string]string
	switch {
	case json.Unmarshal(pkg.Bin, &single) == nil && single != "":
		rel = single
	case json.Unmarshal(pkg.Bin, &multi) == nil && multi["openclaw"] != "":
		rel = multi["openclaw"]
	default:
		return "", fmt.Errorf("package.json (version %s) has no usable \"bin\": %s", pkg.Version, pkg.Bin)
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// Env is the environment every OpenClaw process runs with: Node 24 first on
// PATH, every home/state/config/temp location under o.Home, offline knobs,
// and nothing from the caller that could redirect it (proxies, OpenClaw or
// XDG settings, NODE_OPTIONS).
func (o *openclaw) Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := cutEnv(kv)
		uk := strings.ToUpper(k)
		switch {
		case k == "HOME", k == "TMPDIR", k == "TMP", k == "TEMP", k == "PATH", k == "NODE_OPTIONS",
			strings.HasPrefix(k, "OPENCLAW_"), strings.HasPrefix(k, "XDG_"), strings.HasPrefix(k, "CLAWGATE_"),
			strings.HasSuffix(uk, "_PROXY"):
			continue
		}
		env = append(env, k+"="+v)
	}
	path := filepath.Dir(o.Node)
	if p := os.Getenv("PATH"); p != "" {
		path += string(os.PathListSeparator) + p
	}
	h := o.Home
	env = append(env,
		"PATH="+path,
		"HOME="+h,
		"OPENCLAW_HOME="+h,
		"OPENCLAW_STATE_DIR="+filepath.Join(h, "state"),
		"OPENCLAW_CONFIG_PATH="+filepath.Join(h, "openclaw.json"),
		"XDG_CONFIG_HOME="+filepath.Join(h, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(h, ".cache"),
		"XDG_DATA_HOME="+filepath.Join(h, ".local/share"),
		"XDG_STATE_HOME="+filepath.Join(h, ".local/state"),
		"TMPDIR="+filepath.Join(h, "tmp"),
	)
	env = append(env, offlineEnv...)
	return append(env, extra...)
}

// cliResult is one finished OpenClaw process.
type cliResult struct {
	Args     []string
	Code     int
	Err      error
	Stdout   []byte
	Stderr   []byte
	Duration time.Duration
}

func (r cliResult) String() string {
	return fmt.Sprintf("%s\nexit %d (%v) after %v\nstdout:\n%s\nstderr:\n%s",
		strings.Join(r.Args, " "), r.Code, r.Err, r.Duration.Round(time.Millisecond),
		indent(string(r.Stdout)), indent(string(r.Stderr)))
}

// runNode runs `node ARGS...` in o's environment with the per-command
// timeout. The result is logged when the test fails.
func (o *openclaw) runNode(t *testing.T, args ...string) cliResult {
	t.Helper()
	nodeSlots <- struct{}{}
	defer func() { <-nodeSlots }()
	ctx, cancel := context.WithTimeout(context.Background(), openclawCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.Node, args...)
	cmd.Env = o.Env()
	cmd.Dir = o.Home
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := runWithTimeout(ctx, cmd)
	res := cliResult{
		Args:     append([]string{"node"}, args...),
		Code:     exitCode(err),
		Err:      err,
		Stdout:   stdout.Bytes(),
		Stderr:   stderr.Bytes(),
		Duration: time.Since(start),
	}
	if ctx.Err() != nil {
		t.Errorf("timed out after %v: %s", openclawCommandTimeout, strings.Join(res.Args, " "))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s", res)
		}
	})
	return res
}

// CLI runs `openclaw ARGS...`.
func (o *openclaw) CLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	res := o.runNode(t, append([]string{o.Bin}, args...)...)
	res.Args = append([]string{"openclaw"}, args...)
	return res
}

// parseCLIJSON decodes the JSON document the CLI printed. It accepts stdout
// that is exactly one JSON value, or one that has log lines before the value
// (the value then starts at the first line beginning with '{' or '[').
func parseCLIJSON(out []byte) (any, error) {
	trimmed := bytes.TrimSpace(out)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("no output")
	}
	if v, err := decodeOne(trimmed); err == nil {
		return v, nil
	}
	for off := 0; off < len(out); {
		line := out[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		if l := bytes.TrimLeft(line, " \t"); len(l) > 0 && (l[0] == '{' || l[0] == '[') {
			if v, err := decodeOne(out[off:]); err == nil {
				return v, nil
			}
		}
		i := bytes.IndexByte(out[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	return nil, fmt.Errorf("no JSON value in output %q", truncate(string(out), 400))
}

// decodeOne decodes the first JSON value in b (numbers as json.Number) and
// requires nothing but whitespace after it.
func decodeOne(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if rest := bytes.TrimSpace(b[dec.InputOffset():]); len(rest) > 0 {
		return nil, fmt.Errorf("trailing data after JSON value: %q", truncate(string(rest), 80))
	}
	return v, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
