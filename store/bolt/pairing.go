package bolt

import (
	"encoding/json"
	"fmt"

	"github.com/clawgate/clawgate/store"
	"go.etcd.io/bbolt"
)

// maxKeyLen bounds record keys (request and device ids are far shorter).
const maxKeyLen = 256

// ViewPairing runs fn in a read-only transaction.
func (d *DB) ViewPairing(fn func(store.PairingTx) error) error {
	return mapErr(d.bolt.View(func(tx *bbolt.Tx) error { return fn(pairingTx{tx: tx, path: d.path, devices: d.devices}) }))
}

// UpdatePairing runs fn in a read-write transaction, committed and fsynced
// when fn returns nil, rolled back otherwise. fn's error is returned as is.
func (d *DB) UpdatePairing(fn func(store.PairingTx) error) error {
	return mapErr(d.bolt.Update(func(tx *bbolt.Tx) error { return fn(pairingTx{tx: tx, path: d.path, devices: d.devices}) }))
}

// BatchPairing runs fn in a read-write transaction that concurrent
// BatchPairing calls may share (one commit, one set of fsyncs for all of
// them); see store.PairingStore for the contract fn must meet. It returns
// after fn's writes are committed and fsynced, or fn's error with its
// writes rolled back.
func (d *DB) BatchPairing(fn func(store.PairingTx) error) error {
	return mapErr(d.groupUpdate(func(tx *bbolt.Tx, wrote *bool) error {
		return fn(pairingTx{tx: tx, path: d.path, wrote: wrote, devices: d.devices})
	}))
}

// pairingTx implements store.PairingTx over the pairing buckets.
type pairingTx struct {
	tx    *bbolt.Tx
	path  string
	wrote *bool // set on every write when non-nil (BatchPairing)

	devices *deviceCache
}

func (p pairingTx) noteWrite() {
	if p.wrote != nil {
		*p.wrote = true
	}
}

var _ store.PairingTx = pairingTx{}

func (p pairingTx) bucket(name []byte) (*bbolt.Bucket, error) {
	b := p.tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("%w: %s: missing bucket %q", store.ErrCorrupt, p.path, name)
	}
	return b, nil
}

// get decodes the value at key into v; store.ErrNotFound when absent.
func (p pairingTx) get(bucket []byte, key string, v any) error {
	b, err := p.bucket(bucket)
	if err != nil {
		return err
	}
	raw := b.Get([]byte(key))
	if raw == nil {
		return store.ErrNotFound
	}
	// json.Unmarshal copies every string and slice out of raw, so nothing
	// decoded points into the memory map after the transaction ends.
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: %s: %s %q: %v", store.ErrCorrupt, p.path, bucket, key, err)
	}
	return nil
}

// put encodes v at key.
func (p pairingTx) put(bucket []byte, key string, v any) error {
	if !p.tx.Writable() {
		return store.ErrReadOnly
	}
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("store/bolt: invalid key length %d in %s", len(key), bucket)
	}
	b, err := p.bucket(bucket)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store/bolt: encode %s: %w", bucket, err)
	}
	p.noteWrite()
	return mapErr(b.Put([]byte(key), raw))
}

func (p pairingTx) del(bucket []byte, key string) error {
	if !p.tx.Writable() {
		return store.ErrReadOnly
	}
	b, err := p.bucket(bucket)
	if err != nil {
		return err
	}
	if key == "" || len(key) > maxKeyLen {
		return nil // cannot exist
	}
	p.noteWrite()
	return mapErr(b.Delete([]byte(key)))
}

// all decodes every value of bucket with dec.
func (p pairingTx) all(bucket []byte, dec func(k string, raw []byte) error) error {
	b, err := p.bucket(bucket)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return nil // nested bucket: none in this schema
		}
		return dec(string(k), v)
	})
}

func (p pairingTx) Pending(requestID string) (store.PendingRequest, error) {
	var r store.PendingRequest
	if err := p.get(bucketPending, requestID, &r); err != nil {
		return store.PendingRequest{}, err
	}
	return r, p.checkKey(bucketPending, requestID, r.RequestID)
}

func (p pairingTx) AllPending() ([]store.PendingRequest, error) {
	var out []store.PendingRequest
	err := p.all(bucketPending, func(k string, raw []byte) error {
		var r store.PendingRequest
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("%w: %s: %s %q: %v", store.ErrCorrupt, p.path, bucketPending, k, err)
		}
		if err := p.checkKey(bucketPending, k, r.RequestID); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

func (p pairingTx) PutPending(r store.PendingRequest) error {
	return p.put(bucketPending, r.RequestID, r)
}

func (p pairingTx) DeletePending(requestID string) error { return p.del(bucketPending, requestID) }

func (p pairingTx) Device(deviceID string) (store.PairedDevice, error) {
	b, err := p.bucket(bucketDevices)
	if err != nil {
		return store.PairedDevice{}, err
	}
	raw := b.Get([]byte(deviceID))
	if raw == nil {
		return store.PairedDevice{}, store.ErrNotFound
	}
	if d, ok := p.devices.get(deviceID, raw); ok {
		return d, nil // decoded from these very bytes, key already checked
	}
	var d store.PairedDevice
	if err := json.Unmarshal(raw, &d); err != nil {
		return store.PairedDevice{}, fmt.Errorf("%w: %s: %s %q: %v", store.ErrCorrupt, p.path, bucketDevices, deviceID, err)
	}
	if err := p.checkKey(bucketDevices, deviceID, d.DeviceID); err != nil {
		return store.PairedDevice{}, err
	}
	p.devices.put(deviceID, raw, &d)
	return d, nil
}

func (p pairingTx) AllDevices() ([]store.PairedDevice, error) {
	var out []store.PairedDevice
	err := p.all(bucketDevices, func(k string, raw []byte) error {
		var d store.PairedDevice
		if err := json.Unmarshal(raw, &d); err != nil {
			return fmt.Errorf("%w: %s: %s %q: %v", store.ErrCorrupt, p.path, bucketDevices, k, err)
		}
		if err := p.checkKey(bucketDevices, k, d.DeviceID); err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

func (p pairingTx) PutDevice(d store.PairedDevice) error { return p.put(bucketDevices, d.DeviceID, d) }

func (p pairingTx) DeleteDevice(deviceID string) error {
	p.devices.drop(deviceID)
	return p.del(bucketDevices, deviceID)
}

// checkKey refuses a record stored under a key other than its own id.
func (p pairingTx) checkKey(bucket []byte, key, id string) error {
	if key != id {
		return fmt.Errorf("%w: %s: %s record under key %q names %q", store.ErrCorrupt, p.path, bucket, key, id)
	}
	return nil
}
