package bolt

import (
	"errors"
	"reflect"
	"testing"

	"github.com/clawgate/clawgate/store"
	"go.etcd.io/bbolt"
)

// TestDeviceCacheNeverStale: reads served from the decoded-record cache see
// every committed change at once, never an uncommitted or rolled-back one,
// and hand out copies a caller may change freely.
func TestDeviceCacheNeverStale(t *testing.T) {
	db := mustOpen(t, statePath(t))
	d := testDevice(7)
	put := func(d store.PairedDevice) {
		t.Helper()
		if err := db.UpdatePairing(func(tx store.PairingTx) error { return tx.PutDevice(d) }); err != nil {
			t.Fatal(err)
		}
	}
	mustGet := func(want store.PairedDevice) {
		t.Helper()
		got, err := getDevice(db, want.DeviceID)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Device = %+v, %v; want %+v", got, err, want)
		}
	}
	put(d)
	mustGet(d)
	mustGet(d) // from the cache

	// A caller's changes to what it read do not reach the next reader.
	got, err := getDevice(db, d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	got.Roles[0] = "node"
	got.Scopes = append(got.Scopes[:0], "operator.admin")
	tok := got.Tokens["operator"]
	tok.Scopes[0] = "operator.admin"
	got.Tokens["operator"] = store.DeviceToken{RevokedAtMs: 1}
	got.Tokens["node"] = store.DeviceToken{}
	mustGet(d)

	// A revocation is seen by the very next read.
	revoked := testDevice(7)
	tok = revoked.Tokens["operator"]
	tok.RevokedAtMs = 99
	revoked.Tokens["operator"] = tok
	put(revoked)
	mustGet(revoked)

	// An uncommitted write is seen inside its own transaction only, and a
	// rolled-back one never afterwards, though both were read (and cached).
	rotated := testDevice(7)
	tok = rotated.Tokens["operator"]
	tok.Digest = store.DigestToken("rotated")
	rotated.Tokens["operator"] = tok
	sentinel := errors.New("roll back")
	err = db.UpdatePairing(func(tx store.PairingTx) error {
		if err := tx.PutDevice(rotated); err != nil {
			return err
		}
		in, err := tx.Device(rotated.DeviceID)
		if err != nil || !reflect.DeepEqual(in, rotated) {
			t.Errorf("inside the writing transaction: %+v, %v; want the write", in, err)
		}
		return sentinel
	})
	if err != sentinel {
		t.Fatalf("UpdatePairing = %v", err)
	}
	mustGet(revoked)

	// Removal: gone at once, and the same id re-paired reads the new record.
	if err := db.UpdatePairing(func(tx store.PairingTx) error { return tx.DeleteDevice(d.DeviceID) }); err != nil {
		t.Fatal(err)
	}
	if _, err := getDevice(db, d.DeviceID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removed device: %v, want ErrNotFound", err)
	}
	repaired := testDevice(7)
	repaired.PublicKey = "pk-new"
	put(repaired)
	mustGet(repaired)

	// A change written behind the store's back (same key, other bytes) is
	// seen too: entries are matched by content, not invalidated by writers.
	if err := db.bolt.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDevices).Put([]byte(d.DeviceID), []byte(`{"deviceId":"`+d.DeviceID+`","publicKey":"raw"}`))
	}); err != nil {
		t.Fatal(err)
	}
	got, err = getDevice(db, d.DeviceID)
	if err != nil || got.PublicKey != "raw" || got.Tokens != nil {
		t.Fatalf("after a raw write: %+v, %v", got, err)
	}
}

// TestDeviceCacheChecksKey: a record under another device's key is refused
// on every read, not once and then served from the cache.
func TestDeviceCacheChecksKey(t *testing.T) {
	db := mustOpen(t, statePath(t))
	d := testDevice(1)
	raw := []byte(`{"deviceId":"` + d.DeviceID + `","publicKey":"pk"}`)
	if err := db.bolt.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDevices).Put([]byte("other"), raw)
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := getDevice(db, "other"); !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("read %d: %v, want ErrCorrupt", i, err)
		}
	}
}

// TestDeviceCacheBounded: the cache holds at most maxCachedDevices records.
func TestDeviceCacheBounded(t *testing.T) {
	c := newDeviceCache()
	d := testDevice(1)
	for i := 0; i < maxCachedDevices+10; i++ {
		c.put(testDevice(i).DeviceID, []byte{byte(i)}, &d)
	}
	if n := len(c.m); n != maxCachedDevices {
		t.Fatalf("%d entries, want %d", n, maxCachedDevices)
	}
}
