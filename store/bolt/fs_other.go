//go:build !unix

package bolt

import (
	"io/fs"
	"os"
)

// fileOwner is unknown off unix; ownership is not checked there.
func fileOwner(fs.FileInfo) (int, bool) { return 0, false }

// tryLock defers to bbolt's own locking off unix.
func tryLock(*os.File) error { return nil }

// syncDir is a no-op off unix.
func syncDir(string) error { return nil }
