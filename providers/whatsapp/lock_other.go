//go:build !unix

package whatsapp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// lockSession creates dir/session.lock exclusively. Without flock a crash
// leaves the file behind; the error names it so it can be removed once no
// clawgate is running.
func lockSession(dir string) (*SessionLock, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		pid := 0
		if g, err := os.Open(path); err == nil {
			pid = readPID(g)
			g.Close()
		}
		return nil, fmt.Errorf("%w (if no clawgate is running, delete %s)", &LockedError{Dir: dir, PID: pid}, path)
	}
	if err != nil {
		return nil, fmt.Errorf("whatsapp: create session lock: %w", err)
	}
	if err := writePID(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("whatsapp: write session lock: %w", err)
	}
	return &SessionLock{f: f}, nil
}

// holdsLock: without flock, an open lock file is the lock.
func holdsLock(*os.File) error { return nil }

// Release gives the lock up (an adopted one only closes its descriptor).
func (l *SessionLock) Release() {
	if l == nil || l.f == nil {
		return
	}
	if l.adopted {
		l.f.Close()
		l.f = nil
		return
	}
	name := l.f.Name()
	l.f.Close()
	os.Remove(name)
	l.f = nil
}
