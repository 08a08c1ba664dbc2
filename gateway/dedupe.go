package gateway

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// dedupeCache remembers the outcome of side-effecting requests by
// idempotency key ("send:<key>", "agent:<key>", ...). A retry gets the
// cached (payload, error); a concurrent duplicate waits for the first and
// shares its outcome. Entries live for ttl; at most max are kept, oldest
// evicted first.
type dedupeCache struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element
	order   *list.List // front = oldest
}

type dedupeEntry struct {
	key     string
	created time.Time
	done    chan struct{}
	payload any
	err     error
}

func newDedupeCache(max int, ttl time.Duration, now func() time.Time) *dedupeCache {
	return &dedupeCache{max: max, ttl: ttl, now: now, entries: make(map[string]*list.Element), order: list.New()}
}

// do runs fn once per live key. cached reports that the outcome came from an
// earlier or concurrent call.
func (d *dedupeCache) do(ctx context.Context, key string, fn func() (any, error)) (payload any, err error, cached bool) {
	d.mu.Lock()
	if el, ok := d.entries[key]; ok {
		e := el.Value.(*dedupeEntry)
		if d.now().Sub(e.created) < d.ttl {
			d.mu.Unlock()
			select {
			case <-e.done:
				return e.payload, e.err, true
			case <-ctx.Done():
				return nil, ctx.Err(), true
			}
		}
		d.order.Remove(el)
		delete(d.entries, key)
	}
	e := &dedupeEntry{key: key, created: d.now(), done: make(chan struct{})}
	d.entries[key] = d.order.PushBack(e)
	d.evictLocked()
	d.mu.Unlock()

	e.payload, e.err = fn()
	close(e.done)
	return e.payload, e.err, false
}

// evictLocked drops the oldest finished entries beyond max. Entries still
// running are kept so their waiters are not orphaned.
func (d *dedupeCache) evictLocked() {
	for el := d.order.Front(); el != nil && d.order.Len() > d.max; {
		next := el.Next()
		e := el.Value.(*dedupeEntry)
		select {
		case <-e.done:
			d.order.Remove(el)
			delete(d.entries, e.key)
		default:
		}
		el = next
	}
}

// sweep drops expired entries.
func (d *dedupeCache) sweep() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for el := d.order.Front(); el != nil; {
		next := el.Next()
		e := el.Value.(*dedupeEntry)
		if now.Sub(e.created) < d.ttl {
			break // entries are in creation order
		}
		select {
		case <-e.done:
			d.order.Remove(el)
			delete(d.entries, e.key)
		default:
		}
		el = next
	}
}

func (d *dedupeCache) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.order.Len()
}
