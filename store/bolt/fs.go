package bolt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clawgate/clawgate/store"
)

// ensureStateDir makes sure dir exists, is a directory owned by this user,
// and is closed to group and others; a missing dir is created 0700.
func ensureStateDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create state directory: %w", err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("create state directory: %w", err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Getuid() {
		return fmt.Errorf("%w: state directory %s is owned by uid %d, not by this user (uid %d); fix with: chown %d %s",
			store.ErrPermissions, dir, uid, os.Getuid(), os.Getuid(), dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: state directory %s has mode %04o (open to group or others); fix with: chmod 700 %s",
			store.ErrPermissions, dir, perm, dir)
	}
	return nil
}

// checkFileMode refuses a state file that is not a regular file, is owned
// by another user, or is readable or writable by group or others.
func checkFileMode(name string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", store.ErrPermissions, name)
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Getuid() {
		return fmt.Errorf("%w: %s is owned by uid %d, not by this user (uid %d); fix with: chown %d %s",
			store.ErrPermissions, name, uid, os.Getuid(), os.Getuid(), name)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o (readable or writable by group or others); fix with: chmod 600 %s",
			store.ErrPermissions, name, perm, name)
	}
	return nil
}

// lockFile takes an exclusive lock on f, polling until timeout.
func lockFile(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := tryLock(f)
		if !errors.Is(err, errWouldBlock) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// errWouldBlock: the lock is held elsewhere.
var errWouldBlock = errors.New("lock held by another process")

// tempPrefix is the name prefix of the temporary files a first creation of
// base goes through.
func tempPrefix(base string) string { return "." + base + ".init-" }

// staleTempAge is how old (by mtime) an unlocked creation temp file must be
// before Open deletes it. Younger ones may belong to a concurrent creator.
const staleTempAge = time.Minute

// removeStaleTemps deletes leftovers of crashed first creations of base in
// dir: old enough and not locked by a live creator. Best effort; a temp file
// is never mistaken for the state file either way.
func removeStaleTemps(dir, base string, now time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := tempPrefix(base)
	removed := false
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		name := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(name)
		if err != nil || now.Sub(fi.ModTime()) < staleTempAge {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		if tryLock(f) == nil && os.Remove(name) == nil {
			removed = true
		}
		_ = f.Close()
	}
	if removed {
		_ = syncDir(dir)
	}
}

// randomSuffix returns 16 random hex characters for temp file names.
func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// syncFile fsyncs the named file.
func syncFile(name string) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
