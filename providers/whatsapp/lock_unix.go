//go:build unix

package whatsapp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockSession takes an exclusive flock on dir/session.lock. The kernel
// drops it when the process exits, so a crash never leaves a stale lock.
// flock conflicts between open file descriptions, so a second open in the
// same process is refused too.
func lockSession(dir string) (*SessionLock, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("whatsapp: open session lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid := readPID(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("whatsapp: lock session: %w", err)
	}
	if err := writePID(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("whatsapp: write session lock: %w", err)
	}
	return &SessionLock{f: f}, nil
}

// holdsLock takes the lock through f, which succeeds at once when f's
// open file description already holds it (flock locks belong to that).
func holdsLock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// Release gives the lock up (an adopted one only closes its descriptor).
func (l *SessionLock) Release() {
	if l == nil || l.f == nil {
		return
	}
	if !l.adopted {
		_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	}
	l.f.Close()
	l.f = nil
}
