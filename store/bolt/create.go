package bolt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"
)

// Stages of createFresh, reported to Options.crashHook in tests.
const (
	stageCreated     = "created"     // temp file exists, bbolt initialised it, no schema yet
	stageInitialized = "initialized" // temp file complete and fsynced, not yet linked
	stageLinked      = "linked"      // state file in place, temp name not yet removed
)

// createFresh creates the state file at path crash-safely: build a complete
// file (buckets + schema version, committed and fsynced) under a temporary
// name in the same directory, hard-link it into place (link never replaces
// an existing file, so a concurrent creator's file wins and is kept), fsync
// the directory, and drop the temporary name. A crash leaves either no
// state file or a complete one, never one that looks valid but is empty.
func createFresh(path string, opts Options) (err error) {
	hook := func(stage string) {
		if opts.crashHook != nil {
			opts.crashHook(stage)
		}
	}
	dir, base := filepath.Split(path)
	tmp := filepath.Join(dir, tempPrefix(base)+randomSuffix())
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()

	bdb, err := bbolt.Open(tmp, 0o600, &bbolt.Options{
		Timeout: opts.Timeout,
		OpenFile: func(name string, flag int, _ os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, err
			}
			if err := f.Chmod(0o600); err != nil { // umask can only narrow; make it exact
				_ = f.Close()
				return nil, err
			}
			return f, nil
		},
	})
	if err != nil {
		return fmt.Errorf("create state file: %w", err)
	}
	hook(stageCreated)
	err = bdb.Update(initSchema)
	if cerr := bdb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create state file: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("create state file: %w", err)
	}
	hook(stageInitialized)

	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			_ = os.Remove(tmp)
			return nil // another clawgate created it first; open that one
		}
		// Filesystems without hard links: fall back to rename when the
		// name is still free.
		if _, serr := os.Lstat(path); !errors.Is(serr, fs.ErrNotExist) {
			return fmt.Errorf("create state file: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("create state file: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("create state file: sync directory: %w", err)
	}
	hook(stageLinked)
	_ = os.Remove(tmp)
	_ = syncDir(dir)
	return nil
}
