package whatsapp

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// LinkState is where the device is in its life.
type LinkState string

// Link states.
const (
	// LinkUnknown: Run has not looked at the session yet.
	LinkUnknown LinkState = ""
	// LinkNeeded: no device is linked (first start, or the phone removed
	// it); linking needs a QR scan.
	LinkNeeded LinkState = "needs-relink"
	// LinkQR: a QR code is being shown and waits for a scan.
	LinkQR LinkState = "qr"
	// LinkPaired: the phone accepted the code; logging in.
	LinkPaired LinkState = "paired"
	// LinkTimeout: every code expired without a scan.
	LinkTimeout LinkState = "timeout"
	// LinkFailed: linking failed (the phone refused, or the connection
	// broke); Message says why.
	LinkFailed LinkState = "failed"
	// LinkLinked: a device is linked (connected or not).
	LinkLinked LinkState = "linked"
)

// LoginStatus is the linking state that `clawgate channels login whatsapp`
// and web.login.start/wait show. It never holds a key, only the QR
// payload, which is shown to the operator by design.
type LoginStatus struct {
	State     LinkState
	Connected bool   // logged in to WhatsApp right now
	QR        string // the code to scan while State is LinkQR
	QRExpires time.Time
	Message   string // human text for the operator
	Account   string // the linked phone number (+E.164), when linked
	Seq       uint64 // increases with every change
}

// Terminal reports whether a wait for this status can stop: connected,
// timed out, failed or (for a wait that was not linking) needs a link.
func (s LoginStatus) Terminal() bool {
	return s.Connected || s.State == LinkTimeout || s.State == LinkFailed
}

// Errors of the login API.
var (
	// ErrNotRunning: the account's Run is not active (stopped, logged out
	// through channels.logout, or failed); the gateway must start it.
	ErrNotRunning = errors.New("whatsapp: the account is not running (restart the gateway to link it)")
	// ErrAlreadyLinked is returned by Link when a device is linked and
	// force is not set.
	ErrAlreadyLinked = errors.New("whatsapp: a device is already linked (use --force to replace it)")
	// ErrQRTimeout: every QR code expired without a scan.
	ErrQRTimeout = errors.New("whatsapp: the QR code expired without being scanned")
)

// LoginBoard holds the current LoginStatus, wakes waiters and calls
// watchers on every change. The device publishes on one; the gateway
// mirrors the helper's on another.
type LoginBoard struct {
	mu       sync.Mutex
	st       LoginStatus
	changed  chan struct{} // closed and replaced on every change
	watchers map[int]func(LoginStatus)
	nextW    int
}

// NewLoginBoard returns a board in LinkUnknown.
func NewLoginBoard() *LoginBoard {
	return &LoginBoard{changed: make(chan struct{}), watchers: map[int]func(LoginStatus){}}
}

// Get returns the current status.
func (b *LoginBoard) Get() LoginStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

// Update applies fn and publishes the result when it changed anything;
// Seq is the board's own (what fn sets is ignored).
func (b *LoginBoard) Update(fn func(*LoginStatus)) {
	b.mu.Lock()
	next := b.st
	fn(&next)
	next.Seq = b.st.Seq
	if next == b.st {
		b.mu.Unlock()
		return
	}
	next.Seq++
	b.st = next
	close(b.changed)
	b.changed = make(chan struct{})
	fns := make([]func(LoginStatus), 0, len(b.watchers))
	for _, id := range sortedKeys(b.watchers) {
		fns = append(fns, b.watchers[id])
	}
	b.mu.Unlock()
	for _, fn := range fns {
		fn(next)
	}
}

func sortedKeys(m map[int]func(LoginStatus)) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Wait returns the status once cond holds, or the current one when ctx
// ends (not an error: the caller reports "still waiting").
func (b *LoginBoard) Wait(ctx context.Context, cond func(LoginStatus) bool) LoginStatus {
	for {
		b.mu.Lock()
		st, ch := b.st, b.changed
		b.mu.Unlock()
		if cond(st) {
			return st
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return b.Get()
		}
	}
}

// Watch calls fn (which must not block for long) after every change, in
// the changing goroutine, until stop is called.
func (b *LoginBoard) Watch(fn func(LoginStatus)) (stop func()) {
	b.mu.Lock()
	id := b.nextW
	b.nextW++
	b.watchers[id] = fn
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.watchers, id)
			b.mu.Unlock()
		})
	}
}
