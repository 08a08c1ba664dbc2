package bolt

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/clawgate/clawgate/store"
	"go.etcd.io/bbolt"
)

// Bucket and key names.
var (
	bucketMeta    = []byte("meta")
	bucketPending = []byte("pairing.pending")
	bucketDevices = []byte("pairing.devices")
	keySchema     = []byte("schema")
)

// migration moves the schema from version-1 to version.
type migration struct {
	version int
	desc    string
	up      func(tx *bbolt.Tx) error
}

// migrations is the schema history, in order; entry i produces version i+1.
// Append only: a released entry never changes.
var migrations = []migration{
	{version: 1, desc: "pairing buckets", up: func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketPending, bucketDevices} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	}},
}

// SchemaVersion is the schema version this binary writes and understands.
func SchemaVersion() int { return len(migrations) }

// initSchema lays out a brand-new file: the meta bucket, every migration,
// and the version key, all in the caller's (single) transaction.
func initSchema(tx *bbolt.Tx) error {
	if _, err := tx.CreateBucket(bucketMeta); err != nil {
		return err
	}
	return applyMigrations(tx, 0)
}

// applyMigrations runs every migration after from and records the version.
func applyMigrations(tx *bbolt.Tx, from int) error {
	for _, m := range migrations[from:] {
		if err := m.up(tx); err != nil {
			return fmt.Errorf("migration to schema %d (%s): %w", m.version, m.desc, err)
		}
	}
	v, _ := json.Marshal(SchemaVersion())
	return tx.Bucket(bucketMeta).Put(keySchema, v)
}

// readSchema returns the schema version recorded in tx. A file without the
// meta bucket or version key was never fully initialised by clawgate.
func readSchema(tx *bbolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, errNotInitialised
	}
	raw := meta.Get(keySchema)
	if raw == nil {
		return 0, errNotInitialised
	}
	var v int
	if err := json.Unmarshal(raw, &v); err != nil || v < 1 {
		return 0, fmt.Errorf("unreadable schema version %q", raw)
	}
	return v, nil
}

var errNotInitialised = errors.New("not an initialised clawgate state file (no schema version)")

// migrate checks the schema of an opened file and upgrades it in one
// transaction when it is older than this binary. A newer schema is refused.
func migrate(db *bbolt.DB, path string) error {
	var v int
	err := db.View(func(tx *bbolt.Tx) error {
		var err error
		v, err = readSchema(tx)
		return err
	})
	if err != nil {
		return corruptError(path, err.Error())
	}
	switch {
	case v > SchemaVersion():
		return fmt.Errorf("%w: %s has schema version %d, this clawgate knows up to %d; upgrade clawgate or restore a backup made by this version",
			store.ErrSchemaTooNew, path, v, SchemaVersion())
	case v == SchemaVersion():
		return nil
	}
	return db.Update(func(tx *bbolt.Tx) error {
		v, err := readSchema(tx)
		if err != nil {
			return corruptError(path, err.Error())
		}
		return applyMigrations(tx, v)
	})
}

// walk reads every bucket and key once so that damage anywhere in the tree
// is found at open (under guardFaults) rather than mid-request, and checks
// that the buckets this schema needs exist.
func walk(db *bbolt.DB, path string) error {
	return db.View(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketPending, bucketDevices} {
			if tx.Bucket(name) == nil {
				return corruptError(path, fmt.Sprintf("missing bucket %q", name))
			}
		}
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error { return walkBucket(b) })
	})
}

func walkBucket(b *bbolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if child := b.Bucket(k); child != nil {
				return walkBucket(child)
			}
		}
		return nil
	})
}
