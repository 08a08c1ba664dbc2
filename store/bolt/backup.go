package bolt

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole state file to w, taken in one
// read transaction while the gateway keeps serving (bbolt tx.WriteTo). The
// copy is a valid state file.
func (d *DB) Backup(w io.Writer) (int64, error) {
	var n int64
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store/bolt.Backup: %w", mapErr(err))
	}
	return n, nil
}

// BackupFile writes a consistent copy to path, mode 0600, atomically: a
// temporary file in the same directory is written, fsynced and renamed over
// path, then the directory is fsynced. It refuses to write over the live
// state file.
func (d *DB) BackupFile(path string) (n int64, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, fmt.Errorf("store/bolt.BackupFile: %w", err)
	}
	if abs == d.path || sameFile(abs, d.path) {
		return 0, fmt.Errorf("store/bolt.BackupFile: %s is the live state file", abs)
	}
	dir, base := filepath.Split(abs)
	f, err := os.CreateTemp(dir, "."+base+".backup-*")
	if err != nil {
		return 0, fmt.Errorf("store/bolt.BackupFile: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return 0, fmt.Errorf("store/bolt.BackupFile: %w", err)
	}
	if n, err = d.Backup(f); err != nil {
		return n, fmt.Errorf("store/bolt.BackupFile: %w", err)
	}
	if err = f.Sync(); err != nil {
		return n, fmt.Errorf("store/bolt.BackupFile: %w", err)
	}
	if err = f.Close(); err != nil {
		return n, fmt.Errorf("store/bolt.BackupFile: %w", err)
	}
	if err = os.Rename(tmp, abs); err != nil {
		return n, fmt.Errorf("store/bolt.BackupFile: %w", err)
	}
	if err = syncDir(filepath.Clean(dir)); err != nil {
		return n, fmt.Errorf("store/bolt.BackupFile: sync directory: %w", err)
	}
	return n, nil
}

// sameFile reports whether a and b name the same existing file.
func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA != nil || errB != nil {
		return false
	}
	return os.SameFile(fa, fb)
}
