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
func lockSession(dir string) (*sessionLock, error) {
	path := filepath.Join(dir, "session.lock")
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
	return &sessionLock{f: f}, nil
}

func (l *sessionLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
