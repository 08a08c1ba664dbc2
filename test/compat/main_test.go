package compat

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const clawgatePkg = "github.com/clawgate/clawgate/cmd/clawgate"

// Environment variables the suite reads (./test.sh sets them).
const (
	envNode           = "CLAWGATE_NODE"
	envOpenClawDir    = "CLAWGATE_OPENCLAW_DIR"
	envOpenClawSchema = "CLAWGATE_OPENCLAW_SCHEMA"
	envRequireCompat  = "CLAWGATE_REQUIRE_COMPAT"
	envBin            = "CLAWGATE_BIN"
)

// clawgateBin is the binary every test starts; buildErr is why it is missing.
// Both are written once by TestMain before any test runs.
var (
	clawgateBin string
	buildErr    error
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "clawgate-compat-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "compat: temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	clawgateBin, buildErr = buildClawgate(dir)
	return m.Run()
}

// buildClawgate builds cmd/clawgate into dir, or returns $CLAWGATE_BIN when set.
func buildClawgate(dir string) (string, error) {
	if bin := os.Getenv(envBin); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", fmt.Errorf("%s=%q: %w", envBin, bin, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("%s=%q: %w", envBin, bin, err)
		}
		return abs, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go tool not on PATH: %w", err)
	}
	out := filepath.Join(dir, "clawgate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, clawgatePkg)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build -o %s %s: %w\n%s", out, clawgatePkg, err, buf.Bytes())
	}
	return out, nil
}

// requireBinary returns the clawgate binary or fails the test with the build error.
func requireBinary(t *testing.T) string {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("clawgate binary unavailable: %v", buildErr)
	}
	return clawgateBin
}

// requireEnvPath returns the path named by env var name. When it is unset the
// test fails if CLAWGATE_REQUIRE_COMPAT=1 (CI must never skip these) and is
// skipped otherwise. A set path that does not exist always fails.
func requireEnvPath(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv(envRequireCompat) == "1" {
			t.Fatalf("%s is not set but %s=1: run ./test.sh (scripts/deps.sh installs the OpenClaw tools and test.sh exports their paths)", name, envRequireCompat)
		}
		t.Skipf("%s is not set: run ./test.sh to install OpenClaw and run the compatibility suite", name)
	}
	if _, err := os.Stat(v); err != nil {
		t.Fatalf("%s=%q: %v (run scripts/deps.sh)", name, v, err)
	}
	return v
}
