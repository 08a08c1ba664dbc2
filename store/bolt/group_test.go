package bolt

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawgate/clawgate/store"
	"go.etcd.io/bbolt"
)

// groupHarness queues BatchPairing calls in a known order behind a call that
// holds the commit slot, so that the next group is exactly the queued calls.
type groupHarness struct {
	t       *testing.T
	db      *DB
	release chan struct{}
	first   chan error
	results []chan error
}

// newGroupHarness starts a call that blocks inside its transaction until
// run is called.
func newGroupHarness(t *testing.T, db *DB) *groupHarness {
	h := &groupHarness{t: t, db: db, release: make(chan struct{}), first: make(chan error, 1)}
	started := make(chan struct{})
	go func() {
		h.first <- db.BatchPairing(func(tx store.PairingTx) error {
			select {
			case <-started:
			default:
				close(started)
			}
			<-h.release
			return tx.PutDevice(testDevice(1000))
		})
	}()
	<-started
	return h
}

// queued is the number of calls waiting for the next group.
func (h *groupHarness) queued() int {
	h.db.groups.mu.Lock()
	defer h.db.groups.mu.Unlock()
	return len(h.db.groups.queue)
}

// add queues fn behind the calls added before it.
func (h *groupHarness) add(fn func(store.PairingTx) error) {
	h.t.Helper()
	n := h.queued()
	res := make(chan error, 1)
	h.results = append(h.results, res)
	go func() { res <- h.db.BatchPairing(fn) }()
	deadline := time.Now().Add(10 * time.Second)
	for h.queued() != n+1 {
		if time.Now().After(deadline) {
			h.t.Fatalf("call %d never queued", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// run lets the blocking call finish and returns every queued call's result.
func (h *groupHarness) run() []error {
	h.t.Helper()
	close(h.release)
	if err := <-h.first; err != nil {
		h.t.Fatalf("blocking call: %v", err)
	}
	out := make([]error, len(h.results))
	for i, r := range h.results {
		out[i] = <-r
	}
	return out
}

// putter writes device i and records the id of the transaction its last
// call ran in and how often it was called.
type putter struct {
	i     int
	calls atomic.Int64
	txID  atomic.Int64
}

func (p *putter) fn(tx store.PairingTx) error {
	p.calls.Add(1)
	p.txID.Store(int64(tx.(pairingTx).tx.ID()))
	return tx.PutDevice(testDevice(p.i))
}

// TestBatchPairingSharesOneCommit: calls that queue while a commit is in
// flight run in one transaction, and each sees the writes of those before.
func TestBatchPairingSharesOneCommit(t *testing.T) {
	db := mustOpen(t, statePath(t))
	h := newGroupHarness(t, db)
	var ps []*putter
	for i := 0; i < 20; i++ {
		p := &putter{i: i}
		ps = append(ps, p)
		h.add(p.fn)
	}
	var sawPrevious bool
	h.add(func(tx store.PairingTx) error {
		_, err := tx.Device(testDevice(19).DeviceID)
		sawPrevious = err == nil
		return err
	})
	for i, err := range h.run() {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if !sawPrevious {
		t.Error("a call did not see the write of the call before it in its group")
	}
	for _, p := range ps {
		if p.calls.Load() != 1 || p.txID.Load() != ps[0].txID.Load() {
			t.Errorf("call %d: %d runs, transaction %d; want 1 run in transaction %d",
				p.i, p.calls.Load(), p.txID.Load(), ps[0].txID.Load())
		}
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 19, 1000} {
		if _, err := getDevice(db, testDevice(i).DeviceID); err != nil {
			t.Errorf("device %d: %v", i, err)
		}
	}
}

// TestBatchPairingFailureIsIsolated: a call that fails inside a shared
// transaction gets its own error, keeps none of its writes, and fails no
// one else; the others run again and commit.
func TestBatchPairingFailureIsIsolated(t *testing.T) {
	db := mustOpen(t, statePath(t))
	errMine := errors.New("refused")
	var failCalls, firstFailCalls atomic.Int64
	h := newGroupHarness(t, db)
	// The first call of a group fails: it ran on the committed state, as it
	// would alone, so it is not run again.
	h.add(func(tx store.PairingTx) error {
		firstFailCalls.Add(1)
		if err := tx.PutDevice(testDevice(50)); err != nil {
			return err
		}
		return fmt.Errorf("first: %w", errMine)
	})
	a, b := &putter{i: 1}, &putter{i: 2}
	h.add(a.fn)
	h.add(func(tx store.PairingTx) error {
		failCalls.Add(1)
		if err := tx.PutDevice(testDevice(51)); err != nil {
			return err
		}
		return fmt.Errorf("middle: %w", errMine)
	})
	h.add(b.fn)
	errs := h.run()
	if !errors.Is(errs[0], errMine) || !errors.Is(errs[2], errMine) {
		t.Errorf("failing calls returned %v and %v, want their own errors", errs[0], errs[2])
	}
	if errs[1] != nil || errs[3] != nil {
		t.Errorf("other calls failed: %v, %v", errs[1], errs[3])
	}
	if n := firstFailCalls.Load(); n != 1 {
		t.Errorf("first failing call ran %d times, want 1", n)
	}
	if n := failCalls.Load(); n != 2 {
		t.Errorf("middle failing call ran %d times, want 2 (shared, then alone)", n)
	}
	// a ran before the middle call failed and again after; b only after.
	if a.calls.Load() != 2 || b.calls.Load() != 1 || a.txID.Load() != b.txID.Load() {
		t.Errorf("the others ran %d and %d times in transactions %d and %d; want 2 and 1, committed together",
			a.calls.Load(), b.calls.Load(), a.txID.Load(), b.txID.Load())
	}
	for _, i := range []int{50, 51} {
		if _, err := getDevice(db, testDevice(i).DeviceID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("write of failed call kept: device %d: %v", i, err)
		}
	}
	for _, i := range []int{1, 2} {
		if _, err := getDevice(db, testDevice(i).DeviceID); err != nil {
			t.Errorf("device %d: %v", i, err)
		}
	}
}

// TestBatchPairingPanicStaysWithCaller: a fn that panics in a shared
// transaction panics on its own caller's goroutine; the others commit.
func TestBatchPairingPanicStaysWithCaller(t *testing.T) {
	db := mustOpen(t, statePath(t))
	h := newGroupHarness(t, db)
	a := &putter{i: 1}
	h.add(a.fn)
	recovered := make(chan any, 1)
	n := h.queued()
	go func() {
		defer func() { recovered <- recover() }()
		_ = db.BatchPairing(func(tx store.PairingTx) error {
			_ = tx.PutDevice(testDevice(60))
			panic("boom")
		})
	}()
	for h.queued() != n+1 {
		time.Sleep(time.Millisecond)
	}
	b := &putter{i: 2}
	h.add(b.fn)
	for i, err := range h.run() {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if v := <-recovered; v != "boom" {
		t.Errorf("caller recovered %v, want the fn's panic", v)
	}
	if _, err := getDevice(db, testDevice(60).DeviceID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("write of panicking call kept: %v", err)
	}
	for _, i := range []int{1, 2} {
		if _, err := getDevice(db, testDevice(i).DeviceID); err != nil {
			t.Errorf("device %d: %v", i, err)
		}
	}
}

// TestBatchPairingConcurrent: many concurrent callers, each reading a shared
// counter and writing it back incremented; no increment is lost, so every
// call saw the writes committed (or grouped) before it.
func TestBatchPairingConcurrent(t *testing.T) {
	db := mustOpen(t, statePath(t))
	const n = 64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.BatchPairing(func(tx store.PairingTx) error {
				d, err := tx.Device(testDevice(0).DeviceID)
				if errors.Is(err, store.ErrNotFound) {
					d, err = testDevice(0), nil
					d.CreatedAtMs = 0
				}
				if err != nil {
					return err
				}
				d.CreatedAtMs++
				if err := tx.PutDevice(d); err != nil {
					return err
				}
				if i%7 == 3 { // some callers fail after writing
					return errors.New("refused")
				}
				return tx.PutDevice(testDevice(i + 1))
			})
			if (err != nil) != (i%7 == 3) {
				t.Errorf("call %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	d, err := getDevice(db, testDevice(0).DeviceID)
	failing := 0
	for i := 0; i < n; i++ {
		if i%7 == 3 {
			failing++
		}
	}
	if err != nil || d.CreatedAtMs != int64(n-failing) {
		t.Fatalf("counter %d, %v; want %d", d.CreatedAtMs, err, n-failing)
	}
	for i := 0; i < n; i++ {
		_, err := getDevice(db, testDevice(i+1).DeviceID)
		if want := i%7 != 3; (err == nil) != want {
			t.Errorf("device %d present %v, want %v", i+1, err == nil, want)
		}
	}
}

func TestBatchPairingClosed(t *testing.T) {
	db := mustOpen(t, statePath(t))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	err := db.BatchPairing(func(tx store.PairingTx) error { return tx.PutDevice(testDevice(1)) })
	if !errors.Is(err, store.ErrClosed) {
		t.Fatalf("BatchPairing after Close = %v, want ErrClosed", err)
	}
}

// TestBatchPairingMoreThanOneGroup: more calls are queued than one
// transaction takes, and the caller that gets the commit slot is the last
// of them; it runs the queue group by group until its own call has run.
func TestBatchPairingMoreThanOneGroup(t *testing.T) {
	db := mustOpen(t, statePath(t))
	h := newGroupHarness(t, db)
	// Calls whose callers wait only for their result (never for the slot),
	// queued ahead of one ordinary caller.
	const n = 2*maxGroup + 10
	queued := make([]*groupCall, n)
	db.groups.mu.Lock()
	for i := range queued {
		p := &putter{i: i}
		queued[i] = &groupCall{fn: func(tx *bbolt.Tx, wrote *bool) error {
			return p.fn(pairingTx{tx: tx, path: db.path, wrote: wrote})
		}, done: make(chan error, 1)}
	}
	db.groups.queue = append(db.groups.queue, queued...)
	db.groups.mu.Unlock()
	last := &putter{i: n}
	h.add(last.fn)
	errs := make(chan []error, 1)
	go func() { errs <- h.run() }()
	select {
	case got := <-errs:
		if got[0] != nil {
			t.Fatal(got[0])
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the last caller never returned")
	}
	for i, c := range queued {
		if err := <-c.done; err != nil {
			t.Fatalf("queued call %d: %v", i, err)
		}
	}
	var got int
	if err := db.ViewPairing(func(tx store.PairingTx) error {
		all, err := tx.AllDevices()
		got = len(all)
		return err
	}); err != nil || got != n+2 {
		t.Fatalf("%d devices stored, %v; want %d", got, err, n+2)
	}
}

// TestBatchPairingWithoutWritesSkipsCommit: a transaction in which no call
// wrote is rolled back instead of committed (no fsync); one write commits.
func TestBatchPairingWithoutWritesSkipsCommit(t *testing.T) {
	db := mustOpen(t, statePath(t))
	txid := func() int {
		var id int
		_ = db.bolt.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	before := txid()
	err := db.BatchPairing(func(tx store.PairingTx) error {
		_, err := tx.Device(testDevice(1).DeviceID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil || txid() != before {
		t.Fatalf("read-only BatchPairing = %v, transaction id %d → %d; want no commit", err, before, txid())
	}
	if err := db.BatchPairing(func(tx store.PairingTx) error { return tx.PutDevice(testDevice(1)) }); err != nil {
		t.Fatal(err)
	}
	if txid() != before+1 {
		t.Fatalf("writing BatchPairing: transaction id %d → %d; want one commit", before, txid())
	}
	if _, err := getDevice(db, testDevice(1).DeviceID); err != nil {
		t.Fatal(err)
	}
}
