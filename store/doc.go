// Package store holds clawgate's persistence contract: the record types the
// gateway keeps across restarts, the narrow transactional interfaces its
// consumers use to read and write them, and the sentinel errors every
// backend returns.
//
// It imports only the standard library. The one backend, store/bolt, keeps
// everything in a single bbolt file in the state directory; consumers such as
// package pairing depend on the interfaces here and never on bbolt.
//
// Records are plain values. A backend copies them in and out of its
// transactions (JSON-encoded on disk), so a value returned from a read is
// the caller's to keep and mutate. Secrets are stored only as digests
// ([TokenDigest]), which never print.
//
// Errors are shaped for callers: branch on the sentinels with errors.Is
// ([ErrNotFound], [ErrLocked], [ErrCorrupt], [ErrPermissions],
// [ErrSchemaTooNew], [ErrClosed], [ErrReadOnly]); the message around them
// names the file and, where there is one, the command that fixes it.
package store
