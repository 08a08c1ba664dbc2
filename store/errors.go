package store

import "errors"

// Sentinel errors. Backends wrap them with the operation and, for open-time
// failures, with the file name and an actionable hint.
var (
	// ErrNotFound: no record under that key.
	ErrNotFound = errors.New("not found")

	// ErrLocked: another process holds the state file (a second clawgate on
	// the same state directory).
	ErrLocked = errors.New("state is locked by another clawgate")

	// ErrCorrupt: the state file is truncated, not a clawgate state file, or
	// holds a record that does not decode. Nothing is ever wiped or recreated
	// in response: the operator restores from a backup.
	ErrCorrupt = errors.New("state file is corrupt")

	// ErrPermissions: the state directory or file is accessible to other
	// users, or owned by another user.
	ErrPermissions = errors.New("unsafe state file permissions")

	// ErrSchemaTooNew: the state file was written by a newer clawgate whose
	// schema this binary does not know.
	ErrSchemaTooNew = errors.New("state file schema is newer than this clawgate")

	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store is closed")

	// ErrReadOnly: a write was attempted inside a read-only transaction.
	ErrReadOnly = errors.New("write in a read-only transaction")
)
