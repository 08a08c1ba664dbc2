package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/clawgate/clawgate/store"
	"go.etcd.io/bbolt"
)

// Session buckets. They are created on first write (older state files have
// none), so reads treat a missing bucket as empty.
//
//	sessions.meta      key → SessionMeta (JSON)
//	sessions.messages  key → bucket of 8-byte big-endian sequence → SessionMessage (JSON)
var (
	bucketSessionMeta = []byte("sessions.meta")
	bucketSessionMsgs = []byte("sessions.messages")
)

// maxSessionKeyLen bounds session keys in bytes (the protocol allows 512
// characters).
const maxSessionKeyLen = 2048

var _ store.SessionStore = (*DB)(nil)

func checkSessionKey(key string) error {
	if key == "" || len(key) > maxSessionKeyLen {
		return fmt.Errorf("store/bolt: invalid session key length %d", len(key))
	}
	return nil
}

// AppendMessage adds one message, trimming the session to keep messages.
func (d *DB) AppendMessage(key string, init store.SessionMeta, msg store.SessionMessage, keep int) (store.SessionMeta, error) {
	if err := checkSessionKey(key); err != nil {
		return store.SessionMeta{}, err
	}
	var out store.SessionMeta
	err := d.bolt.Update(func(tx *bbolt.Tx) error {
		metaB, err := tx.CreateBucketIfNotExists(bucketSessionMeta)
		if err != nil {
			return err
		}
		msgsB, err := tx.CreateBucketIfNotExists(bucketSessionMsgs)
		if err != nil {
			return err
		}
		var meta store.SessionMeta
		if raw := metaB.Get([]byte(key)); raw != nil {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return fmt.Errorf("%w: %s: session %q: %v", store.ErrCorrupt, d.path, key, err)
			}
		} else {
			if init.SessionID == "" {
				return fmt.Errorf("store/bolt: new session %q needs a session id", key)
			}
			meta = store.SessionMeta{Key: key, SessionID: init.SessionID, CreatedAtMs: msg.TimestampMs}
		}
		refreshMeta(&meta, init)
		b, err := msgsB.CreateBucketIfNotExists([]byte(key))
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		raw, err := json.Marshal(msg)
		if err != nil {
			return fmt.Errorf("store/bolt: encode message: %w", err)
		}
		if err := b.Put(seqKey(seq), raw); err != nil {
			return err
		}
		n := meta.MessageCount + 1
		if keep > 0 && n > keep {
			c := b.Cursor()
			for k, _ := c.First(); k != nil && n > keep; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
				n--
			}
		}
		meta.MessageCount = n
		meta.UpdatedAtMs = max(meta.UpdatedAtMs, msg.TimestampMs)
		meta.LastPreview = preview(msg.Text)
		rawMeta, err := json.Marshal(meta)
		if err != nil {
			return err
		}
		out = meta
		return metaB.Put([]byte(key), rawMeta)
	})
	return out, mapErr(err)
}

// refreshMeta copies the provider fields of init that are set.
func refreshMeta(m *store.SessionMeta, init store.SessionMeta) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&m.Channel, init.Channel)
	set(&m.AccountID, init.AccountID)
	set(&m.ChatID, init.ChatID)
	set(&m.ChatType, init.ChatType)
	set(&m.ThreadID, init.ThreadID)
	set(&m.DisplayName, init.DisplayName)
}

func seqKey(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

// preview keeps the first 120 characters of a message on one line.
func preview(s string) string {
	s = string(bytes.Join(bytes.Fields([]byte(s)), []byte(" ")))
	r := []rune(s)
	if len(r) > 120 {
		return string(r[:120]) + "…"
	}
	return s
}

// SessionHistory returns the newest limit messages of a session.
func (d *DB) SessionHistory(key string, limit int) (store.SessionMeta, []store.SessionMessage, error) {
	var meta store.SessionMeta
	var msgs []store.SessionMessage
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		metaB := tx.Bucket(bucketSessionMeta)
		if metaB == nil {
			return store.ErrNotFound
		}
		raw := metaB.Get([]byte(key))
		if raw == nil {
			return store.ErrNotFound
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			return fmt.Errorf("%w: %s: session %q: %v", store.ErrCorrupt, d.path, key, err)
		}
		var b *bbolt.Bucket
		if all := tx.Bucket(bucketSessionMsgs); all != nil {
			b = all.Bucket([]byte(key))
		}
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(msgs) < limit); k, v = c.Prev() {
			var m store.SessionMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("%w: %s: session %q message %x: %v", store.ErrCorrupt, d.path, key, k, err)
			}
			msgs = append(msgs, m)
		}
		return nil
	})
	if err != nil {
		return store.SessionMeta{}, nil, mapErr(err)
	}
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	return meta, msgs, nil
}

// ListSessions returns all sessions, newest first.
func (d *DB) ListSessions() ([]store.SessionMeta, error) {
	var out []store.SessionMeta
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		metaB := tx.Bucket(bucketSessionMeta)
		if metaB == nil {
			return nil
		}
		return metaB.ForEach(func(k, v []byte) error {
			var m store.SessionMeta
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("%w: %s: session %q: %v", store.ErrCorrupt, d.path, k, err)
			}
			out = append(out, m)
			return nil
		})
	})
	if err != nil {
		return nil, mapErr(err)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].UpdatedAtMs != out[j].UpdatedAtMs {
			return out[i].UpdatedAtMs > out[j].UpdatedAtMs
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}

// PruneSessions deletes sessions last updated before beforeMs.
func (d *DB) PruneSessions(beforeMs int64) (int, error) {
	n := 0
	err := d.bolt.Update(func(tx *bbolt.Tx) error {
		metaB := tx.Bucket(bucketSessionMeta)
		if metaB == nil {
			return nil
		}
		var stale [][]byte
		err := metaB.ForEach(func(k, v []byte) error {
			var m store.SessionMeta
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("%w: %s: session %q: %v", store.ErrCorrupt, d.path, k, err)
			}
			if m.UpdatedAtMs < beforeMs {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		msgsB := tx.Bucket(bucketSessionMsgs)
		for _, k := range stale {
			if err := metaB.Delete(k); err != nil {
				return err
			}
			if msgsB != nil && msgsB.Bucket(k) != nil {
				if err := msgsB.DeleteBucket(k); err != nil {
					return err
				}
			}
			n++
		}
		return nil
	})
	return n, mapErr(err)
}
