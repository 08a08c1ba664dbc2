package whatsapp

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrSessionLocked is returned by New when another process holds the
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

// sessionLock is the held lock; release is idempotent.
type sessionLock struct {
	f *os.File
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
