package canvas

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/netip"
	"sync"
	"time"
)

// capTokenBytes is the capability's entropy: 128 bits.
const capTokenBytes = 16

// capTokenLen is the length of a token's base64url text.
var capTokenLen = base64.RawURLEncoding.EncodedLen(capTokenBytes)

// maxCapabilities bounds live capabilities (one per node session).
const maxCapabilities = 10000

// ErrTooManyCapabilities: the table is full of live sessions.
var ErrTooManyCapabilities = errors.New("canvas: too many live capabilities")

// Binding ties a capability to one live node session.
type Binding struct {
	// Session identifies the session (the gateway connection id); a new
	// Mint for the same session replaces its capability.
	Session string
	// Node is the node id, for logs.
	Node string
	// Remote is the address the node session came from; requests must
	// come from it (127.0.0.1 and ::1 count as the same).
	Remote netip.Addr
	// Done is closed when the session ends; the capability ends with it.
	Done <-chan struct{}
}

// Capability is a minted token and when it lapses unless used.
type Capability struct {
	Token     string
	ExpiresAt time.Time
}

// capKey is the table key: the token's SHA-256, so that lookups do not
// compare secrets byte by byte.
type capKey [sha256.Size]byte

type capEntry struct {
	b       Binding
	expires time.Time
}

// capTable holds the live capabilities.
type capTable struct {
	now func() time.Time
	ttl time.Duration

	mu        sync.Mutex
	byKey     map[capKey]*capEntry
	bySession map[string]capKey
}

func newCapTable(now func() time.Time, ttl time.Duration) *capTable {
	return &capTable{now: now, ttl: ttl, byKey: map[capKey]*capEntry{}, bySession: map[string]capKey{}}
}

func keyOf(token string) capKey { return sha256.Sum256([]byte(token)) }

// mint issues a capability for b, replacing the session's previous one.
func (t *capTable) mint(b Binding) (Capability, error) {
	var raw [capTokenBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Capability{}, err
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.bySession[b.Session]; ok {
		delete(t.byKey, old)
	}
	// Node connects are rare; a sweep on each keeps ended sessions from
	// accumulating.
	t.sweepLocked(now)
	if len(t.byKey) >= maxCapabilities {
		return Capability{}, ErrTooManyCapabilities
	}
	e := &capEntry{b: b, expires: now.Add(t.ttl)}
	k := keyOf(token)
	t.byKey[k] = e
	t.bySession[b.Session] = k
	return Capability{Token: token, ExpiresAt: e.expires}, nil
}

// sweepLocked drops capabilities of ended sessions and expired ones.
func (t *capTable) sweepLocked(now time.Time) {
	for k, e := range t.byKey {
		if !e.liveAt(now) {
			t.dropLocked(k, e)
		}
	}
}

func (t *capTable) dropLocked(k capKey, e *capEntry) {
	delete(t.byKey, k)
	if t.bySession[e.b.Session] == k {
		delete(t.bySession, e.b.Session)
	}
}

func (e *capEntry) liveAt(now time.Time) bool {
	select {
	case <-e.b.Done:
		return false
	default:
	}
	return now.Before(e.expires)
}

// capVerdict is the outcome of a capability check.
type capVerdict int

const (
	capOK        capVerdict = iota
	capMissing              // no token at all: 401
	capDead                 // unknown, expired, refreshed away or session ended: 401
	capWrongPeer            // live, but presented from another address: 403
)

// check looks a token up for a request from remote. A live one has its
// lapse time pushed out (sliding expiry while the node keeps using it).
func (t *capTable) check(token string, remote netip.Addr) (capVerdict, *capEntry) {
	if token == "" {
		return capMissing, nil
	}
	if len(token) != capTokenLen {
		return capDead, nil
	}
	now := t.now()
	k := keyOf(token)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.byKey[k]
	if e == nil {
		return capDead, nil
	}
	if !e.liveAt(now) {
		t.dropLocked(k, e)
		return capDead, nil
	}
	if !sameHost(e.b.Remote, remote) {
		return capWrongPeer, nil
	}
	e.expires = now.Add(t.ttl)
	return capOK, e
}

// live reports whether the capability behind e is still the current one of
// its session and has not lapsed (live-reload sockets recheck with it).
func (t *capTable) live(token string) bool {
	now := t.now()
	k := keyOf(token)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.byKey[k]
	return e != nil && e.liveAt(now)
}

// revoke ends the session's capability.
func (t *capTable) revoke(session string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if k, ok := t.bySession[session]; ok {
		delete(t.byKey, k)
		delete(t.bySession, session)
	}
}

// count returns how many capabilities are held (live or not yet swept).
func (t *capTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey)
}

var loopback4 = netip.MustParseAddr("127.0.0.1")

// sameHost compares addresses, treating ::1 as 127.0.0.1 so that a node
// that dialed "localhost" one way can load its page the other way. An
// invalid binding matches nothing.
func sameHost(bound, got netip.Addr) bool {
	if !bound.IsValid() || !got.IsValid() {
		return false
	}
	norm := func(a netip.Addr) netip.Addr {
		a = a.Unmap()
		if a == netip.IPv6Loopback() {
			return loopback4
		}
		return a
	}
	return norm(bound) == norm(got)
}
