package pairing

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clawgate/clawgate/store"
)

// Defaults for Options.
const (
	DefaultPendingTTL          = 5 * time.Minute
	DefaultMaxPendingPerClient = 5
	DefaultMaxPending          = 64
	DefaultFlushInterval       = time.Minute
)

// Options configure a Manager. Zero fields take the defaults.
type Options struct {
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// PendingTTL is how long a pending request lives after the device's
	// last retry. Default 5 min.
	PendingTTL time.Duration
	// MaxPendingPerClient caps pending requests per client key; beyond it a
	// new device gets ErrTooManyPending. Default 5.
	MaxPendingPerClient int
	// MaxPending caps pending requests in total. Default 64.
	MaxPending int
	// FlushInterval is how often lastUsedAtMs and refreshed connect metadata
	// are written. Default 1 min; negative disables the background flush
	// (then only Flush and Close write them).
	FlushInterval time.Duration
	// Logger receives background flush failures; nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PendingTTL <= 0 {
		o.PendingTTL = DefaultPendingTTL
	}
	if o.MaxPendingPerClient <= 0 {
		o.MaxPendingPerClient = DefaultMaxPendingPerClient
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Manager is the pairing state machine over a store. It is safe for
// concurrent use; the store's transactions serialize the writes, so, for
// example, concurrent approvals of one request succeed exactly once.
type Manager struct {
	st   store.PairingStore
	opts Options

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}

	mu      sync.Mutex
	touches map[string]*touch // deviceId → unflushed connect facts
}

// touch is what connects learned about a paired device since the last
// flush: when each role's token was last used, and fresh display metadata.
type touch struct {
	publicKey string
	used      map[string]usedMark // role → last use of the token with digest
	meta      *metaRefresh
}

type usedMark struct {
	digest store.TokenDigest
	atMs   int64
}

type metaRefresh struct{ displayName, clientID, clientMode, remoteIP string }

// New returns a Manager over st and starts its background flush (unless
// disabled). Close stops it. The Manager does not own st.
func New(st store.PairingStore, opts Options) (*Manager, error) {
	if st == nil {
		return nil, errors.New("pairing.New: nil store")
	}
	m := &Manager{
		st:      st,
		opts:    opts.withDefaults(),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		touches: make(map[string]*touch),
	}
	if m.opts.FlushInterval > 0 {
		go m.run()
	} else {
		close(m.done)
	}
	return m, nil
}

// run is the background flush loop, owned by the Manager and stopped by Close.
func (m *Manager) run() {
	defer close(m.done)
	t := time.NewTicker(m.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			if err := m.Flush(); err != nil {
				m.opts.Logger.Warn("pairing: flush last-used times", "err", err)
			}
			if err := m.PurgeExpired(); err != nil {
				m.opts.Logger.Warn("pairing: purge expired requests", "err", err)
			}
		}
	}
}

// Close stops the background flush and writes what it still holds. It is
// idempotent; afterwards every method returns ErrClosed.
func (m *Manager) Close() error {
	var err error
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		close(m.stop)
		<-m.done
		err = m.Flush()
	})
	return err
}

func (m *Manager) nowMs() int64 { return m.opts.Now().UnixMilli() }

func (m *Manager) checkOpen(op string) error {
	if m.closed.Load() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	return nil
}

// noteUsed records, in memory, that a token was just used.
func (m *Manager) noteUsed(dev *store.PairedDevice, role string, digest store.TokenDigest, atMs int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.touchLocked(dev)
	t.used[role] = usedMark{digest: digest, atMs: atMs}
}

// noteMeta records, in memory, display metadata from a paired connect when
// it differs from what is stored.
func (m *Manager) noteMeta(dev *store.PairedDevice, in connectIn) {
	mr := metaRefresh{displayName: in.DisplayName, clientID: in.ClientID, clientMode: in.ClientMode, remoteIP: in.RemoteIP}
	if mr == (metaRefresh{dev.DisplayName, dev.ClientID, dev.ClientMode, dev.RemoteIP}) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.touchLocked(dev).meta = &mr
}

func (m *Manager) touchLocked(dev *store.PairedDevice) *touch {
	t := m.touches[dev.DeviceID]
	if t == nil || t.publicKey != dev.PublicKey {
		t = &touch{publicKey: dev.PublicKey, used: make(map[string]usedMark)}
		m.touches[dev.DeviceID] = t
	}
	return t
}

// forget drops unflushed facts about a device (removed or re-keyed).
func (m *Manager) forget(deviceID string) {
	m.mu.Lock()
	delete(m.touches, deviceID)
	m.mu.Unlock()
}

// lastUsedOverlay returns the unflushed last-use times for a device.
func (m *Manager) lastUsedOverlay(deviceID string) map[string]usedMark {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.touches[deviceID]
	if t == nil {
		return nil
	}
	out := make(map[string]usedMark, len(t.used))
	for k, v := range t.used {
		out[k] = v
	}
	return out
}

// Flush writes the in-memory lastUsedAtMs times and connect metadata in one
// transaction. It runs every FlushInterval and on Close.
func (m *Manager) Flush() error {
	m.mu.Lock()
	batch := m.touches
	m.touches = make(map[string]*touch)
	m.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := m.st.UpdatePairing(func(tx store.PairingTx) error {
		for id, t := range batch {
			dev, err := tx.Device(id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if dev.PublicKey != t.publicKey {
				continue
			}
			if applyTouch(&dev, t) {
				if err := tx.PutDevice(dev); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		m.mu.Lock()
		for id, t := range batch {
			if _, newer := m.touches[id]; !newer {
				m.touches[id] = t
			}
		}
		m.mu.Unlock()
		return fmt.Errorf("pairing.Flush: %w", err)
	}
	return nil
}

// applyTouch merges t into dev and reports whether anything changed. A
// last-use time only lands on the very token that was used.
func applyTouch(dev *store.PairedDevice, t *touch) bool {
	changed := false
	for role, u := range t.used {
		tok, ok := dev.Tokens[role]
		if ok && tok.Digest.Equal(u.digest) && u.atMs > tok.LastUsedAtMs {
			tok.LastUsedAtMs = u.atMs
			dev.Tokens[role] = tok
			changed = true
		}
	}
	if mr := t.meta; mr != nil {
		if mr.displayName != "" && mr.displayName != dev.DisplayName {
			dev.DisplayName, changed = mr.displayName, true
		}
		if mr.clientID != "" && mr.clientID != dev.ClientID {
			dev.ClientID, changed = mr.clientID, true
		}
		if mr.clientMode != "" && mr.clientMode != dev.ClientMode {
			dev.ClientMode, changed = mr.clientMode, true
		}
		if mr.remoteIP != "" && mr.remoteIP != dev.RemoteIP {
			dev.RemoteIP, changed = mr.remoteIP, true
		}
	}
	return changed
}

// PurgeExpired deletes expired pending requests. Writes happen only when
// there is something to delete; every write operation also purges.
func (m *Manager) PurgeExpired() error {
	now := m.nowMs()
	var any bool
	err := m.st.ViewPairing(func(tx store.PairingTx) error {
		all, err := tx.AllPending()
		any = slices.ContainsFunc(all, func(p store.PendingRequest) bool { return m.expired(p, now) })
		return err
	})
	if err != nil || !any {
		return wrapOp("pairing.PurgeExpired", err)
	}
	return wrapOp("pairing.PurgeExpired", m.st.UpdatePairing(func(tx store.PairingTx) error {
		_, err := m.livePending(tx, now)
		return err
	}))
}

func wrapOp(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

// expiresAt is when p lapses: PendingTTL after its creation or last retry.
func (m *Manager) expiresAt(p store.PendingRequest) int64 {
	return max(p.TS, p.RefreshedAtMs) + m.opts.PendingTTL.Milliseconds()
}

func (m *Manager) expired(p store.PendingRequest, now int64) bool { return now >= m.expiresAt(p) }

// livePending returns the unexpired pending requests, deleting the expired
// ones when tx is writable.
func (m *Manager) livePending(tx store.PairingTx, now int64) ([]store.PendingRequest, error) {
	all, err := tx.AllPending()
	if err != nil {
		return nil, err
	}
	live := all[:0]
	for _, p := range all {
		if !m.expired(p, now) {
			live = append(live, p)
			continue
		}
		if err := tx.DeletePending(p.RequestID); err != nil && !errors.Is(err, store.ErrReadOnly) {
			return nil, err
		}
	}
	return live, nil
}
