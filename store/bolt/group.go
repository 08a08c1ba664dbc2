package bolt

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.etcd.io/bbolt"
)

// maxGroup bounds how many calls share one transaction.
const maxGroup = 256

// groupCommit turns concurrent write transactions into one bbolt
// transaction and one commit (group commit). It has bbolt.DB.Batch's
// semantics (a failing fn is taken out, the rest run again, the failing one
// runs alone) without its MaxBatchDelay timer: a caller that finds no commit
// in flight commits at once, alone; callers that arrive while a commit is in
// flight queue up, and the first of them to get the commit slot runs the
// whole queue in the next transaction. A lone caller therefore pays no added
// latency, and N concurrent callers pay about one fsync instead of N.
type groupCommit struct {
	slot  chan struct{} // capacity 1: held while a group is run
	mu    sync.Mutex
	queue []*groupCall
}

// groupFn is one caller's part of a shared transaction; it sets *wrote when
// it writes anything.
type groupFn func(tx *bbolt.Tx, wrote *bool) error

type groupCall struct {
	fn   groupFn
	done chan error // capacity 1: the call's result, or errRunAlone
}

func newGroupCommit() *groupCommit {
	return &groupCommit{slot: make(chan struct{}, 1)}
}

// errRunAlone tells a caller that its fn failed (or panicked) inside a
// shared transaction and must be run again in a transaction of its own, so
// that its error is its own and not an artefact of the others.
var errRunAlone = errors.New("store/bolt: run alone")

// groupUpdate runs fn in a write transaction that may be shared with concurrent
// callers, committed and fsynced before it returns. See
// store.PairingStore.BatchPairing for the contract fn must meet.
func (d *DB) groupUpdate(fn groupFn) error {
	g := d.groups
	c := &groupCall{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	g.mu.Unlock()

	var err error
	select {
	case err = <-c.done: // run by another caller's group
	case g.slot <- struct{}{}:
		// Run the queue, up to maxGroup calls at a time, until this call
		// has run (perhaps already, in the group that just released the
		// slot). The queue is first in, first out, so that happens.
		for done := false; !done; {
			select {
			case err = <-c.done:
				done = true
			default:
				d.runGroup(g.take())
			}
		}
		<-g.slot
	}
	if errors.Is(err, errRunAlone) {
		return d.updateIfWritten(fn)
	}
	return err
}

// errNoWrites rolls back a transaction in which nothing was written: the
// same state a commit would leave, without the commit's fsyncs (a flood of
// refused connects costs no disk flushes).
var errNoWrites = errors.New("store/bolt: nothing written")

// updateIfWritten runs fn in a write transaction, committed when fn wrote
// something and returned nil, rolled back otherwise.
func (d *DB) updateIfWritten(fn groupFn) error {
	err := d.bolt.Update(func(tx *bbolt.Tx) error {
		wrote := false
		if err := fn(tx, &wrote); err != nil {
			return err
		}
		if !wrote {
			return errNoWrites
		}
		return nil
	})
	if errors.Is(err, errNoWrites) {
		return nil
	}
	return err
}

// take removes and returns the oldest queued calls, at most maxGroup.
func (g *groupCommit) take() []*groupCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := min(len(g.queue), maxGroup)
	calls := slices.Clone(g.queue[:n])
	g.queue = slices.Delete(g.queue, 0, n)
	return calls
}

// runGroup runs calls in one transaction and hands every call its result.
// A call whose fn fails is taken out and told to run alone, except the
// first one: it ran on the committed state, exactly as it would alone, so
// its error is final. The others run again in a fresh transaction.
func (d *DB) runGroup(calls []*groupCall) {
	for len(calls) > 0 {
		failed := -1
		var fnErr error
		err := d.updateIfWritten(func(tx *bbolt.Tx, wrote *bool) error {
			for i, c := range calls {
				if fnErr = safeCall(c.fn, tx, wrote); fnErr != nil {
					failed = i
					return fnErr
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range calls {
				c.done <- err // nil, or the commit's error for every caller
			}
			return
		}
		if _, isPanic := fnErr.(panicked); failed == 0 && !isPanic {
			calls[0].done <- fnErr
		} else {
			calls[failed].done <- errRunAlone
		}
		calls = slices.Delete(calls, failed, failed+1)
	}
}

// panicked is a panic recovered from a fn inside a shared transaction; the
// caller's own run repeats it on the caller's goroutine.
type panicked struct{ v any }

func (p panicked) Error() string { return fmt.Sprintf("panic: %v", p.v) }

func safeCall(fn groupFn, tx *bbolt.Tx, wrote *bool) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicked{v}
		}
	}()
	return fn(tx, wrote)
}
