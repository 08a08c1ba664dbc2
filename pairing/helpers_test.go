package pairing_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/store"
	"github.com/clawgate/clawgate/store/bolt"
)

// Callers used across the tests.
var (
	admin       = pairing.Caller{Scopes: []string{"operator.admin"}}
	pairingOnly = pairing.Caller{Scopes: []string{"operator.pairing"}}
	pairingRead = pairing.Caller{Scopes: []string{"operator.pairing", "operator.read"}}
	readScopes  = []string{"operator.read"}
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingStore counts write transactions, to prove read paths never
// write, and read transactions.
type countingStore struct {
	store.PairingStore
	updates atomic.Int64
	views   atomic.Int64
}

func (c *countingStore) ViewPairing(fn func(store.PairingTx) error) error {
	c.views.Add(1)
	return c.PairingStore.ViewPairing(fn)
}

func (c *countingStore) UpdatePairing(fn func(store.PairingTx) error) error {
	c.updates.Add(1)
	return c.PairingStore.UpdatePairing(fn)
}

func (c *countingStore) BatchPairing(fn func(store.PairingTx) error) error {
	c.updates.Add(1)
	return c.PairingStore.BatchPairing(fn)
}

type env struct {
	t     testing.TB
	path  string
	db    *bolt.DB
	st    *countingStore
	m     *pairing.Manager
	clock *clock
}

// newEnv opens a real bbolt file in a temp dir and a Manager over it with a
// fake clock and no background flush.
func newEnv(t testing.TB, opts ...func(*pairing.Options)) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "clawgate.db")
	db, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, path: path, db: db, st: &countingStore{PairingStore: db},
		clock: &clock{t: time.UnixMilli(1_760_000_000_000)}}
	o := pairing.Options{Now: e.clock.Now, FlushInterval: -1}
	for _, f := range opts {
		f(&o)
	}
	e.m, err = pairing.New(e.st, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.m.Close()
		_ = e.db.Close()
	})
	return e
}

// device is a test device identity.
type device struct {
	id  string
	pk  string
	key ed25519.PrivateKey
}

func newDevice(t testing.TB) device {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pub)
	return device{id: hex.EncodeToString(sum[:]), pk: base64.RawURLEncoding.EncodeToString(pub), key: priv}
}

// withKey returns d claiming another key (attack row B4).
func (d device) withKey(t testing.TB) device {
	other := newDevice(t)
	return device{id: d.id, pk: other.pk, key: other.key}
}

// info is a remote connect of d.
func info(d device, role string, scopes []string) pairing.ConnectInfo {
	return pairing.ConnectInfo{
		DeviceID: d.id, PublicKey: d.pk, Role: role, Scopes: scopes,
		ClientID: "cli", ClientMode: "cli", Platform: "linux", DisplayName: "test box",
		RemoteIP: "192.0.2.10",
	}
}

func local(ci pairing.ConnectInfo) pairing.ConnectInfo {
	ci.SilentAllowed = true
	ci.RemoteIP = "127.0.0.1"
	return ci
}

func (e *env) check(ci pairing.ConnectInfo) pairing.Decision {
	e.t.Helper()
	d, err := e.m.Check(ci)
	if err != nil {
		e.t.Fatalf("Check: %v", err)
	}
	return d
}

// request creates a pending request for d and returns its id.
func (e *env) request(d device, role string, scopes []string) string {
	e.t.Helper()
	dec := e.check(info(d, role, scopes))
	if dec.Outcome != pairing.PendingRequired {
		e.t.Fatalf("Check = %v, want pending", dec.Outcome)
	}
	return dec.Request.RequestID
}

// pair takes d through request → admin approval → first connect, and
// returns the token the device received.
func (e *env) pair(d device, role string, scopes []string) string {
	e.t.Helper()
	id := e.request(d, role, scopes)
	if _, err := e.m.Approve(id, admin); err != nil {
		e.t.Fatalf("Approve: %v", err)
	}
	tok, _, minted, err := e.m.EnsureToken(d.id, role, scopes)
	if err != nil || !minted {
		e.t.Fatalf("EnsureToken = minted %v, %v", minted, err)
	}
	return tok
}

// stored reads the raw stored record (tests only).
func (e *env) stored(id string) (store.PairedDevice, error) {
	var d store.PairedDevice
	err := e.db.ViewPairing(func(tx store.PairingTx) error {
		var err error
		d, err = tx.Device(id)
		return err
	})
	return d, err
}

func (e *env) pendingCount() int {
	var n int
	_ = e.db.ViewPairing(func(tx store.PairingTx) error {
		all, err := tx.AllPending()
		n = len(all)
		return err
	})
	return n
}
