//go:build unix

package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/store"
)

// TestSecondProcessLocked checks the lock across processes: a child test
// binary holds the file while the parent tries to open it.
func TestSecondProcessLocked(t *testing.T) {
	if os.Getenv("CLAWGATE_BOLT_HOLD") != "" {
		t.Skip("child only")
	}
	path := statePath(t)
	populate(t, path, 1)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldChild$", "-test.v")
	cmd.Env = append(os.Environ(), "CLAWGATE_BOLT_HOLD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	buf := make([]byte, 4096)
	var got []byte
	for !bytes.Contains(got, []byte("HOLDING")) {
		n, err := out.Read(buf)
		if err != nil {
			t.Fatalf("child: %v (%s)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	_, err = Open(path, Options{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("Open while another process holds the file = %v, want ErrLocked", err)
	}
}

func TestHoldChild(t *testing.T) {
	path := os.Getenv("CLAWGATE_BOLT_HOLD")
	if path == "" {
		t.Skip("child only")
	}
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fmt.Println("HOLDING")
	time.Sleep(30 * time.Second)
}

// TestFirstCreationCrash is attack row H3: the process is killed at each
// stage of the first creation; afterwards there is either no state file or
// a complete one, leftovers are ignored while young and removed once stale.
func TestFirstCreationCrash(t *testing.T) {
	for _, stage := range []string{stageCreated, stageInitialized, stageLinked} {
		t.Run(stage, func(t *testing.T) {
			path := statePath(t)
			cmd := exec.Command(os.Args[0], "-test.run=^TestCreateCrashChild$")
			cmd.Env = append(os.Environ(), "CLAWGATE_BOLT_CRASH="+stage+"="+path)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
			}
			dir := filepath.Dir(path)
			temps := globTemps(t, dir)
			if len(temps) != 1 {
				t.Fatalf("want one leftover temp file, got %v", temps)
			}
			_, statErr := os.Stat(path)
			if stage == stageLinked {
				if statErr != nil {
					t.Fatalf("state file missing after crash past link: %v", statErr)
				}
			} else if !errors.Is(statErr, os.ErrNotExist) {
				t.Fatalf("a state file exists after a crash before link: %v", statErr)
			}

			// Young leftovers are ignored; the store opens complete.
			db, err := Open(path, Options{strict: true})
			if err != nil {
				t.Fatalf("Open after crash: %v", err)
			}
			assertComplete(t, db, 0)
			_ = db.Close()
			// Stale leftovers are removed.
			old := time.Now().Add(-2 * staleTempAge)
			for _, tmp := range globTemps(t, dir) {
				if err := os.Chtimes(tmp, old, old); err != nil {
					t.Fatal(err)
				}
			}
			db, err = Open(path, Options{strict: true})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			assertComplete(t, db, 1)
			_ = db.Close()
			if left := globTemps(t, dir); len(left) != 0 {
				t.Errorf("stale temp files not removed: %v", left)
			}
		})
	}
}

func TestCreateCrashChild(t *testing.T) {
	spec := os.Getenv("CLAWGATE_BOLT_CRASH")
	if spec == "" {
		t.Skip("child only")
	}
	stage, path, _ := strings.Cut(spec, "=")
	_, err := Open(path, Options{crashHook: func(s string) {
		if s == stage {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		}
	}})
	t.Fatalf("Open returned (%v) instead of crashing", err)
}

func globTemps(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".*.init-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
