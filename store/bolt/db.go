package bolt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/clawgate/clawgate/store"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DefaultTimeout bounds the wait for the state file lock.
const DefaultTimeout = 2 * time.Second

// Options tune Open. The zero value is ready to use.
type Options struct {
	// Timeout bounds the wait for another process to release the state
	// file. Zero means DefaultTimeout.
	Timeout time.Duration

	// crashHook, when set (tests only), is called at each stage of the
	// first creation of a state file.
	crashHook func(stage string)
	// strict turns on bbolt's StrictMode (a full consistency check after
	// every commit); tests only.
	strict bool
}

// DB is an open state file. It is safe for concurrent use.
type DB struct {
	path      string
	bolt      *bbolt.DB
	closeOnce sync.Once
	closeErr  error
	groups    *groupCommit // BatchPairing's group commit
	devices   *deviceCache // decoded device records (devcache.go)
}

// Compile-time check: DB is a pairing store.
var _ store.PairingStore = (*DB)(nil)

// Open opens the state file at path, creating it (and its directory, mode
// 0700) when it does not exist. See the package documentation for what it
// refuses. Errors wrap store.ErrLocked, store.ErrCorrupt,
// store.ErrPermissions or store.ErrSchemaTooNew where they apply.
func Open(path string, opts Options) (*DB, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store/bolt.Open: %w", err)
	}
	dir, base := filepath.Split(abs)
	dir = filepath.Clean(dir)
	if err := ensureStateDir(dir); err != nil {
		return nil, fmt.Errorf("store/bolt.Open: %w", err)
	}
	removeStaleTemps(dir, base, time.Now())

	switch _, err := os.Lstat(abs); {
	case errors.Is(err, fs.ErrNotExist):
		if err := createFresh(abs, opts); err != nil {
			return nil, fmt.Errorf("store/bolt.Open: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("store/bolt.Open: %w", err)
	}

	db, err := openExisting(abs, opts)
	if err != nil {
		return nil, fmt.Errorf("store/bolt.Open: %w", err)
	}
	return db, nil
}

// openExisting opens a file that exists, refusing it before bbolt touches it
// when it is unsafe or damaged.
func openExisting(path string, opts Options) (_ *DB, err error) {
	var opened *os.File // the handle handed to bbolt, for cleanup after a panic
	bopts := &bbolt.Options{
		Timeout:        opts.Timeout,
		NoSync:         false,
		NoGrowSync:     false,
		NoFreelistSync: false,
		OpenFile: func(name string, flag int, _ os.FileMode) (*os.File, error) {
			f, err := openChecked(name, flag&^os.O_CREATE, opts.Timeout)
			opened = f
			return f, err
		},
	}

	var bdb *bbolt.DB
	err = guardFaults(func() error {
		var err error
		bdb, err = bbolt.Open(path, 0o600, bopts)
		if err != nil {
			return err
		}
		bdb.StrictMode = opts.strict
		if err := migrate(bdb, path); err != nil {
			return err
		}
		return walk(bdb, path)
	})
	if err != nil {
		if bdb != nil {
			_ = bdb.Close()
		} else if opened != nil {
			_ = opened.Close()
		}
		return nil, classify(err, path)
	}
	return &DB{path: path, bolt: bdb, groups: newGroupCommit(), devices: newDeviceCache()}, nil
}

// openChecked opens an existing state file and refuses it unless it is a
// regular file owned by this user with no group/other access, it can be
// locked within timeout, and its meta pages are valid and within the file.
// The lock is taken on the same handle bbolt will use, so bbolt's own flock
// is a no-op and no other process can write between our checks and bbolt.
func openChecked(name string, flag int, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(name, flag, 0)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		_ = f.Close()
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := checkFileMode(name, fi); err != nil {
		return fail(err)
	}
	if err := lockFile(f, timeout); err != nil {
		if errors.Is(err, errWouldBlock) {
			return fail(lockedError(name))
		}
		return fail(err)
	}
	if err := preflight(f, fi.Size()); err != nil {
		return fail(corruptError(name, err.Error()))
	}
	return f, nil
}

// guardFaults runs fn with memory faults turned into panics and recovers
// them (and bbolt's own assertion panics) as a corruption error, so a
// damaged file that slipped past preflight cannot crash the process while
// it is being opened and walked.
func guardFaults(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt: %v", errDamaged, r)
		}
	}()
	return fn()
}

// errDamaged marks a failure that means the file content is damaged.
var errDamaged = errors.New("damaged")

// classify turns low-level open errors into the actionable ones.
func classify(err error, path string) error {
	switch {
	case errors.Is(err, store.ErrLocked), errors.Is(err, store.ErrCorrupt),
		errors.Is(err, store.ErrPermissions), errors.Is(err, store.ErrSchemaTooNew):
		return err
	case errors.Is(err, berrors.ErrTimeout):
		return lockedError(path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, errDamaged):
		return corruptError(path, err.Error())
	}
	return err
}

func lockedError(path string) error {
	return fmt.Errorf("%w (%s); stop the other gateway or use another state directory", store.ErrLocked, path)
}

func corruptError(path, detail string) error {
	return fmt.Errorf("%w: %s: %s. The file was left untouched; move it aside and restore the last backup (made with `clawgate backup`)",
		store.ErrCorrupt, path, detail)
}

// Path returns the absolute path of the state file.
func (d *DB) Path() string { return d.path }

// Close closes the file. It is idempotent; later operations fail with
// store.ErrClosed.
func (d *DB) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.bolt.Close() })
	return d.closeErr
}

// Check runs bbolt's full consistency check (for `clawgate doctor`); errors
// wrap store.ErrCorrupt.
func (d *DB) Check() error {
	var errs []error
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store/bolt.Check: %w", mapErr(err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("store/bolt.Check: %w: %s: %w", store.ErrCorrupt, d.path, errors.Join(errs...))
	}
	return nil
}

// mapErr maps bbolt's lifecycle errors onto store's sentinels.
func mapErr(err error) error {
	switch {
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return store.ErrClosed
	case errors.Is(err, berrors.ErrTxNotWritable), errors.Is(err, berrors.ErrDatabaseReadOnly):
		return store.ErrReadOnly
	}
	return err
}
