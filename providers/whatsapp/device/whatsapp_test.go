package device

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"

	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/providertest"
	"github.com/clawgate/clawgate/providers/whatsapp"
	"github.com/clawgate/clawgate/providers/whatsapp/fake"
)

// The tests that talk to the fake replace whatsmeow.WACertPubKey, a
// package global, so none of them runs in parallel.

const (
	alicePhone = "15551234567"
	aliceID    = "+" + alicePhone
)

// newFake starts a fake whose certificate root whatsmeow trusts for the
// test's duration.
func newFake(t testing.TB) *fake.Server {
	t.Helper()
	srv, err := fake.New()
	if err != nil {
		t.Fatal(err)
	}
	old := whatsmeow.WACertPubKey
	whatsmeow.WACertPubKey = srv.CertPubKey()
	t.Cleanup(func() {
		srv.Close()
		whatsmeow.WACertPubKey = old
	})
	return srv
}

// newProvider builds a provider on a fresh session directory, pointed at srv.
func newProvider(t testing.TB, srv *fake.Server, log *slog.Logger, mod ...func(*Config)) *Provider {
	t.Helper()
	// ConnectTimeout is the production one: the first login after a link
	// generates and stores 812 prekeys, which takes seconds under -race on a
	// loaded machine.
	cfg := Config{Dir: t.TempDir() + "/whatsapp", Logger: log, HTTPClient: testServerClient(srv.Addr(), srv.Certificate()),
		QRFirst: 2 * time.Second, QRNext: time.Second, ConnectTimeout: defaultConnectTimeout}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// codeFeed collects the QR codes a provider shows.
type codeFeed struct {
	mu    sync.Mutex
	codes []string
	ch    chan string
}

func newCodeFeed() *codeFeed { return &codeFeed{ch: make(chan string, 64)} }

func (f *codeFeed) on(st whatsapp.LoginStatus) {
	if st.State != whatsapp.LinkQR || st.QR == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.codes) > 0 && f.codes[len(f.codes)-1] == st.QR {
		return
	}
	f.codes = append(f.codes, st.QR)
	select {
	case f.ch <- st.QR:
	default:
	}
}

func (f *codeFeed) all() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.codes)
}

func (f *codeFeed) next(t testing.TB) string {
	t.Helper()
	select {
	case c := <-f.ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no QR code shown")
		return ""
	}
}

// link links p by QR against srv without a gateway (the CLI's path) and
// returns the codes shown.
func link(t testing.TB, p *Provider, srv *fake.Server) []string {
	t.Helper()
	feed := newCodeFeed()
	ctx, cancel := context.WithTimeout(context.Background(), 2*defaultConnectTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Link(ctx, false, feed.on) }()
	code := feed.next(t)
	if err := srv.ScanQR(code); err != nil {
		t.Fatalf("ScanQR: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Link: %v", err)
	}
	if !srv.Linked() || srv.Logins() != 1 {
		t.Fatalf("after Link: linked %v, logins %d; want a linked device logged in once", srv.Linked(), srv.Logins())
	}
	return feed.all()
}

type contractFake struct {
	*fake.Server
	t *testing.T
}

func (f contractFake) SenderID() string { return aliceID }

func (f contractFake) Inject(text string) string {
	if _, err := f.Server.Inject(alicePhone, "Alice", text); err != nil {
		f.t.Errorf("fake Inject: %v", err)
		return ""
	}
	return aliceID
}

func (f contractFake) Sent() []providertest.Sent {
	var out []providertest.Sent
	for _, s := range f.Server.Sent() {
		out = append(out, providertest.Sent{ChatID: s.ChatID, Text: s.Text})
	}
	return out
}

// TestContract: QR linking, login, one Signal-encrypted inbound message
// from a peer, the encrypted reply decrypted by the peer, a dropped
// connection with reconnect-and-login, and a clean stop.
func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T, log *slog.Logger) providertest.Subject {
		srv := newFake(t)
		p := newProvider(t, srv, log)
		codes := link(t, p, srv)
		secrets := append(codes, sessionKeys(t, p)...)
		t.Cleanup(func() {
			if n := srv.Logins(); n < 3 {
				t.Errorf("fake saw %d logins; want the link's, the run's and the reconnect's", n)
			}
		})
		return providertest.Subject{Provider: p, Fake: contractFake{srv, t}, Secrets: secrets}
	})
}

// sessionKeys returns the linked device's private keys (Noise, Signal
// identity, signed prekey, ADV secret) in the encodings a log line could
// carry them in, for the contract's no-secrets-in-logs check.
func sessionKeys(t testing.TB, p *Provider) []string {
	t.Helper()
	st, err := openStore(context.Background(), p.cfg.Dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	d := st.dev
	if d.ID == nil {
		t.Fatal("no linked device in the session store")
	}
	var out []string
	for _, k := range [][]byte{d.NoiseKey.Priv[:], d.IdentityKey.Priv[:], d.SignedPreKey.Priv[:], d.AdvSecretKey} {
		out = append(out, hex.EncodeToString(k), base64.StdEncoding.EncodeToString(k),
			base64.RawURLEncoding.EncodeToString(k), fmt.Sprint(k))
	}
	return out
}

// recSink records what a provider reports.
type recSink struct {
	mu     sync.Mutex
	in     []providers.Inbound
	states []stateRec
	block  chan struct{} // when set, Deliver waits for it
}

type stateRec struct {
	state providers.State
	err   error
}

func (s *recSink) Deliver(ctx context.Context, m providers.Inbound) error {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	s.in = append(s.in, m)
	s.mu.Unlock()
	return nil
}

func (s *recSink) SetState(st providers.State, err error) {
	s.mu.Lock()
	s.states = append(s.states, stateRec{st, err})
	s.mu.Unlock()
}

func (s *recSink) inbound() []providers.Inbound {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.in)
}

func (s *recSink) lastState() stateRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.states) == 0 {
		return stateRec{}
	}
	return s.states[len(s.states)-1]
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// supervise runs p under a Supervisor that admits only Alice.
func supervise(t *testing.T, p *Provider, log *slog.Logger, allow ...string) (*providers.Supervisor, *statusLog) {
	t.Helper()
	if len(allow) == 0 {
		allow = []string{aliceID}
	}
	sup, err := providers.NewSupervisor(providers.Options{Logger: log, MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, StopTimeout: 20 * time.Second},
		providers.Account{ID: "default", Provider: p, Policy: providers.Policy{AllowFrom: allow}})
	if err != nil {
		t.Fatal(err)
	}
	sl := &statusLog{}
	stop := sup.Watch(sl.on)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sup.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		stop()
	})
	return sup, sl
}

type statusLog struct {
	mu       sync.Mutex
	statuses []providers.Status
	inbound  []providers.Inbound
}

func (l *statusLog) on(ev providers.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ev.Status != nil {
		l.statuses = append(l.statuses, *ev.Status)
	}
	if ev.Inbound != nil {
		l.inbound = append(l.inbound, *ev.Inbound)
	}
}

func (l *statusLog) has(cond func(providers.Status) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.statuses, cond)
}

func (l *statusLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.statuses)
}

func (l *statusLog) since(n int) []providers.Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.statuses[min(n, len(l.statuses)):])
}

func (l *statusLog) texts() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.inbound {
		out = append(out, m.Text)
	}
	return out
}

func connected(st providers.Status) bool { return st.State == providers.StateConnected }

func needsRelink(st providers.Status) bool {
	return st.State == providers.StateReconnecting && strings.Contains(st.LastError, "needs re-link")
}

var _ = errors.New
