package authn

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// LimitScope names which credential an auth failure was about. Each scope
// has its own buckets, so a device-token failure never locks out the shared
// secret of the same client and vice versa.
type LimitScope string

// The two credential scopes OpenClaw limits.
const (
	LimitSharedSecret LimitScope = "shared-secret"
	LimitDeviceToken  LimitScope = "device-token"
)

// keyKind is how a LimitKey's client part was chosen.
type keyKind uint8

const (
	kindIP       keyKind = iota // remote peer: bucket per IP
	kindBrowser                 // loopback browser: bucket per page origin
	kindProxied                 // loopback peer with forwarding headers: one shared bucket
	kindLoopback                // direct non-browser loopback: exempt by default
)

// maxOriginKey bounds how much of an Origin goes into a key.
const maxOriginKey = 256

// LimitKey identifies one rate-limit bucket: a scope plus a client. Build it
// with NewLimitKey; the zero value is a bucket for an unknown peer.
type LimitKey struct {
	scope  LimitScope
	client string
	kind   keyKind
}

// NewLimitKey chooses the bucket for an attempt that arrived as a:
//
//   - loopback peer with forwarding headers (a same-host proxy; any
//     listener): one shared bucket "proxied-loopback", never exempt and not
//     reset by a success, since the real client is unknown (A16);
//   - loopback peer with a browser Origin: "browser-origin:<origin>", never
//     exempt (ClawJacked, F4);
//   - direct loopback (Arrival.Locality() == Local): exempt unless
//     Limits.NoLoopbackExemption;
//   - anyone else: the peer IP (IPv4-mapped addresses unmapped, zones
//     dropped), or "unknown" when the address is not valid.
func NewLimitKey(scope LimitScope, a Arrival) LimitKey {
	loop := isLoopback(a.Remote)
	switch {
	case loop && a.Forwarded:
		return LimitKey{scope: scope, client: "proxied-loopback", kind: kindProxied}
	case loop && IsBrowser(a.Origin):
		return LimitKey{scope: scope, client: "browser-origin:" + truncate(a.Origin, maxOriginKey), kind: kindBrowser}
	case a.Locality() == Local:
		return LimitKey{scope: scope, client: peerIP(a.Remote), kind: kindLoopback}
	}
	return LimitKey{scope: scope, client: peerIP(a.Remote), kind: kindIP}
}

// peerIP renders the peer's IP for a key.
func peerIP(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "unknown"
	}
	return ap.Addr().Unmap().WithZone("").String()
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Scope returns the key's credential scope.
func (k LimitKey) Scope() LimitScope { return k.scope }

// String returns "<scope>|<client>", e.g. "shared-secret|203.0.113.9".
func (k LimitKey) String() string { return string(k.scope) + "|" + k.client }

// Limits configures a Limiter. Zero fields take the defaults.
type Limits struct {
	MaxFailures         int           // failures within Window that trigger a lockout (10)
	Window              time.Duration // sliding window for counting failures (60 s)
	Lockout             time.Duration // how long a locked bucket refuses every attempt (300 s)
	MaxEntries          int           // hard cap on tracked buckets (10,000)
	NoLoopbackExemption bool          // count direct loopback failures too (default: exempt)
}

// DefaultLimits returns OpenClaw's limits: 10 failures per 60 s → 300 s
// lockout, with at most 10,000 buckets.
func DefaultLimits() Limits {
	return Limits{MaxFailures: 10, Window: 60 * time.Second, Lockout: 300 * time.Second, MaxEntries: 10_000}
}

// withDefaults fills zero or negative fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFailures <= 0 {
		l.MaxFailures = d.MaxFailures
	}
	if l.Window <= 0 {
		l.Window = d.Window
	}
	if l.Lockout <= 0 {
		l.Lockout = d.Lockout
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	return l
}

// Limiter counts auth failures per LimitKey and locks a bucket out after
// too many. It is safe for concurrent use and its memory is bounded by
// Limits.MaxEntries: expired buckets are pruned and, when still full, the
// least recently active bucket is evicted.
//
// The caller's protocol for one attempt that carries a credential:
//
//	if retry, locked := l.Check(key, now); locked { refuse with AUTH_RATE_LIMITED, retryAfterMs = retry }
//	if credential is wrong { l.Fail(key, now) } else { l.Succeed(key) }
//
// Check comes first, so a correct credential during a lockout is still
// refused (A18). An attempt without any credential is not a failure and must
// not be passed to Fail (A17): a reconnect loop without a token would
// otherwise lock everyone out.
type Limiter struct {
	mu      sync.Mutex
	limits  Limits
	entries map[LimitKey]*list.Element // values are *limitEntry
	order   *list.List                 // front = most recently active
}

// limitEntry is one bucket's state.
type limitEntry struct {
	key         LimitKey
	failures    []time.Time // within Window, oldest first
	lockedUntil time.Time   // zero when not locked
}

// NewLimiter returns a Limiter with limits (zero fields defaulted).
func NewLimiter(limits Limits) *Limiter {
	return &Limiter{
		limits:  limits.withDefaults(),
		entries: make(map[LimitKey]*list.Element),
		order:   list.New(),
	}
}

// Limits returns the effective limits.
func (l *Limiter) Limits() Limits { return l.limits }

// exempt reports whether key's attempts are never counted.
func (l *Limiter) exempt(key LimitKey) bool {
	return key.kind == kindLoopback && !l.limits.NoLoopbackExemption
}

// Check reports whether key is locked out at now, and for how much longer.
func (l *Limiter) Check(key LimitKey, now time.Time) (retryAfter time.Duration, locked bool) {
	if l.exempt(key) {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.entries[key]
	if !ok {
		return 0, false
	}
	e := el.Value.(*limitEntry)
	if now.Before(e.lockedUntil) {
		l.touch(el) // an attacker still knocking keeps the lockout from being evicted
		return e.lockedUntil.Sub(now), true
	}
	if !e.lockedUntil.IsZero() { // lockout over: start afresh
		l.remove(el)
	}
	return 0, false
}

// Fail records a wrong credential for key at now and reports whether key is
// now locked out, and for how long. A failure during a lockout does not
// extend it.
func (l *Limiter) Fail(key LimitKey, now time.Time) (retryAfter time.Duration, locked bool) {
	if l.exempt(key) {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el := l.lookupOrInsert(key, now)
	e := el.Value.(*limitEntry)
	l.touch(el)
	if now.Before(e.lockedUntil) {
		return e.lockedUntil.Sub(now), true
	}
	e.lockedUntil = time.Time{}
	e.failures = append(dropOlder(e.failures, now.Add(-l.limits.Window)), now)
	if len(e.failures) >= l.limits.MaxFailures {
		e.failures = nil
		e.lockedUntil = now.Add(l.limits.Lockout)
		return l.limits.Lockout, true
	}
	return 0, false
}

// Succeed records a correct credential for key: its failures are forgotten.
// An active lockout stays until it expires, and the shared proxied-loopback
// bucket is never reset (one client's success must not wipe another's
// failures).
func (l *Limiter) Succeed(key LimitKey) {
	if l.exempt(key) || key.kind == kindProxied {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.entries[key]
	if !ok {
		return
	}
	e := el.Value.(*limitEntry)
	if e.lockedUntil.IsZero() {
		l.remove(el)
		return
	}
	e.failures = nil
}

// Len returns the number of tracked buckets.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// Prune drops every bucket that has expired at now (no lockout in force and
// no failure inside the window). Buckets are also pruned on demand when the
// limiter is full; calling Prune from a maintenance tick just returns memory
// sooner.
func (l *Limiter) Prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for el := l.order.Back(); el != nil; {
		prev := el.Prev()
		if l.expired(el.Value.(*limitEntry), now) {
			l.remove(el)
		}
		el = prev
	}
}

// lookupOrInsert returns key's bucket, creating it (and making room) if new.
func (l *Limiter) lookupOrInsert(key LimitKey, now time.Time) *list.Element {
	if el, ok := l.entries[key]; ok {
		return el
	}
	l.makeRoom(now)
	el := l.order.PushFront(&limitEntry{key: key})
	l.entries[key] = el
	return el
}

// evictScan bounds how many buckets, counted from the least recently active
// end, makeRoom examines per insert, so a full limiter costs O(1) per new key.
const evictScan = 16

// makeRoom keeps the map under MaxEntries. Among the evictScan least
// recently active buckets it first drops the expired ones; if the map is
// still full it evicts the least recently active bucket that is not locked
// out, or, when all of those are locked, the least recently active one.
func (l *Limiter) makeRoom(now time.Time) {
	if len(l.entries) < l.limits.MaxEntries {
		return
	}
	el := l.order.Back()
	for i := 0; el != nil && i < evictScan; i++ {
		prev := el.Prev()
		if l.expired(el.Value.(*limitEntry), now) {
			l.remove(el)
		}
		el = prev
	}
	for len(l.entries) >= l.limits.MaxEntries {
		l.remove(l.evictionVictim(now))
	}
}

// evictionVictim picks the bucket makeRoom evicts when nothing has expired.
func (l *Limiter) evictionVictim(now time.Time) *list.Element {
	el := l.order.Back()
	for i := 0; el != nil && i < evictScan; i, el = i+1, el.Prev() {
		if !now.Before(el.Value.(*limitEntry).lockedUntil) {
			return el
		}
	}
	return l.order.Back()
}

// expired reports whether e holds no information that matters at now.
func (l *Limiter) expired(e *limitEntry, now time.Time) bool {
	if now.Before(e.lockedUntil) {
		return false
	}
	n := len(e.failures)
	return n == 0 || now.Sub(e.failures[n-1]) >= l.limits.Window
}

// touch marks el as the most recently active bucket.
func (l *Limiter) touch(el *list.Element) { l.order.MoveToFront(el) }

// remove forgets el's bucket.
func (l *Limiter) remove(el *list.Element) {
	delete(l.entries, el.Value.(*limitEntry).key)
	l.order.Remove(el)
}

// dropOlder removes the times at or before cutoff from the sorted slice ts.
func dropOlder(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(cutoff) {
		i++
	}
	return append(ts[:0], ts[i:]...)
}
