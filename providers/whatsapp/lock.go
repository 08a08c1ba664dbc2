package whatsapp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrSessionLocked is returned by New and LockSession when another process holds the
// session's lock. errors.As finds a *LockedError with the holder's pid.
var ErrSessionLocked = errors.New("whatsapp: session in use by another process")

// LockedError says who holds the session.
type LockedError struct {
	Dir string
	PID int // 0 when the lock file names no pid
}

func (e *LockedError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "another process (pid " + strconv.Itoa(e.PID) + ")"
	}
	return fmt.Sprintf("whatsapp: the session in %s is in use by %s; only one process per host may open a WhatsApp session "+
		"(stop the other gateway, or link through it with `clawgate channels login whatsapp`)", e.Dir, holder)
}

func (e *LockedError) Unwrap() error { return ErrSessionLocked }

// SessionLock is a held session lock; Release is idempotent.
type SessionLock struct {
	f       *os.File
	adopted bool // taken over from another process: closed, never unlocked
}

// lockFile is the lock's name inside the session directory.
const lockFile = "session.lock"

// File is the open lock file, to hand to the process that runs the
// session (AdoptLock).
func (l *SessionLock) File() *os.File { return l.f }

// LockSession prepares dir (PrepareDir) and takes its session lock, which
// it holds until Release or the process exits. A lock held by another
// process, or by another LockSession in this one, is a *LockedError.
func LockSession(dir string) (*SessionLock, error) {
	if err := PrepareDir(dir); err != nil {
		return nil, err
	}
	return lockSession(dir)
}

// AdoptLock takes over the session lock of dir that another process took
// and passed on as f (the gateway hands its lock to the process running
// the session): it checks that f is dir's lock file and holds the lock.
// Release closes f without unlocking, so the lock lasts while either
// process lives.
func AdoptLock(dir string, f *os.File) (*SessionLock, error) {
	if f == nil {
		return nil, errors.New("whatsapp: no session lock passed")
	}
	want, err := os.Stat(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("whatsapp: session lock: %w", err)
	}
	got, err := f.Stat()
	if err != nil || !os.SameFile(want, got) {
		return nil, fmt.Errorf("whatsapp: the lock passed is not %s", filepath.Join(dir, lockFile))
	}
	if err := holdsLock(f); err != nil {
		return nil, &LockedError{Dir: dir, PID: readPID(f)}
	}
	return &SessionLock{f: f, adopted: true}, nil
}

// PrepareDir creates dir 0700 (or tightens it) and refuses a path SQLite's
// URI parsing would misread.
func PrepareDir(dir string) error {
	if dir == "" || !filepath.IsAbs(dir) {
		return fmt.Errorf("whatsapp: session dir %q must be an absolute path", dir)
	}
	if strings.ContainsAny(dir, "?#%") {
		return fmt.Errorf("whatsapp: session dir %q must not contain '?', '#' or '%%'", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("whatsapp: create session dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("whatsapp: session dir: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("whatsapp: restrict session dir to 0700: %w", err)
		}
	}
	return nil
}

func readPID(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid < 0 {
		return 0
	}
	return pid
}

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}
