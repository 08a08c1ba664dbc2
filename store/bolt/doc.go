// Package bolt is clawgate's state backend: one bbolt file in the state
// directory, holding the pairing records (and, later, other state) behind
// the interfaces of package store. It is the only package that imports
// go.etcd.io/bbolt.
//
// Open refuses, with a message that says how to fix it, anything unsafe or
// damaged rather than repairing it:
//
//   - a state directory or file that other users can read or write, or that
//     another user owns ("fix with: chmod 600 FILE");
//   - a file locked by another clawgate (bbolt's flock, bounded by
//     Options.Timeout, default 2 s, so a second gateway fails fast);
//   - a truncated, garbage or half-initialised file: the meta pages are
//     validated and bounds-checked against the file size before bbolt maps
//     it, every bucket is walked once with memory faults turned into errors,
//     and the file is left byte-for-byte untouched so it can be restored from
//     a backup (clawgate backup);
//   - a file whose schema version is newer than this binary knows.
//
// A missing file is created crash-safely: it is built in a temporary file in
// the same directory (buckets and schema version committed and fsynced),
// then hard-linked into place, which never replaces an existing file, and the
// directory is fsynced. A crash at any point leaves either no state file or
// a complete one; stale temporary files from such a crash are ignored and
// removed once they are old and unlocked.
//
// Every operation is one bbolt transaction with NoSync off, so a write that
// returned is on disk. Concurrent BatchPairing calls may share one
// transaction (a group commit: the first caller commits at once, those that
// arrive meanwhile go together in the next one); each still returns only
// after the commit holding its writes. Values are JSON, decoded into fresh Go values inside
// the transaction, so nothing returned points into bbolt's memory map.
// Device records, read on every connect, are decoded once per distinct
// stored value: a cache keeps each decoded record next to the bytes it came
// from and serves a copy only when the transaction reads identical bytes,
// so no write, committed or rolled back, can leave it stale.
// NoFreelistSync is left off (the freelist is persisted), which keeps Open
// fast and lets the bbolt CLI read the file.
//
// Layout (schema version 1):
//
//	meta             schema → JSON integer schema version
//	pairing.pending  requestId → store.PendingRequest (JSON)
//	pairing.devices  deviceId  → store.PairedDevice (JSON; token digests only)
package bolt
