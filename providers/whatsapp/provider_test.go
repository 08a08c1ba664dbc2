package whatsapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/ipc"
	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/providertest"
	"github.com/clawgate/clawgate/providers/whatsapp/fake"
)

// These tests run the real helper (cmd/clawgate-whatsapp), built once,
// against the loopback fake.

const (
	alicePhone = "15551234567"
	aliceID    = "+" + alicePhone
	// linkTimeout bounds a link: the first login stores 812 prekeys, which
	// takes seconds under -race on a loaded machine.
	linkTimeout = 60 * time.Second
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clawgate-helpers")
	if err != nil {
		panic(err)
	}
	if out, err := exec.Command("go", "build", "-o", dir, "../../cmd/clawgate-whatsapp").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build %s: %v\n%s", HelperName, err, out)
		os.Exit(1)
	}
	os.Setenv(ipc.EnvHelperDir, dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newFake(t testing.TB) *fake.Server {
	t.Helper()
	srv, err := fake.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func endpoint(srv *fake.Server) *TestEndpoint {
	return &TestEndpoint{Addr: srv.Addr(), Cert: srv.Certificate(), RootKey: srv.CertPubKey()}
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// newProvider builds a provider on a fresh session directory, pointed at srv.
func newProvider(t testing.TB, srv *fake.Server, log *slog.Logger) *Provider {
	t.Helper()
	p, err := New(Config{Dir: t.TempDir() + "/whatsapp", Logger: log, Test: endpoint(srv)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// link links p by QR (the CLI's path) and returns the codes shown.
func link(t testing.TB, p *Provider, srv *fake.Server) []string {
	t.Helper()
	codes := make(chan string, 64)
	var mu sync.Mutex
	var all []string
	ctx, cancel := context.WithTimeout(context.Background(), linkTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- p.Link(ctx, false, func(st LoginStatus) {
			if st.State == LinkQR {
				mu.Lock()
				all = append(all, st.QR)
				mu.Unlock()
				codes <- st.QR
			}
		})
	}()
	select {
	case code := <-codes:
		if err := srv.ScanQR(code); err != nil {
			t.Fatalf("ScanQR: %v", err)
		}
	case err := <-done:
		t.Fatalf("Link ended before a code: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Link: %v", err)
	}
	if st := p.LoginStatus(); !srv.Linked() || st.Account != "+15550000001" {
		t.Fatalf("after Link: fake linked %v, status %+v", srv.Linked(), st)
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(all)
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

// TestContractThroughHelper: the provider contract (connect, a message in,
// the reply out, a dropped connection and reconnect, a clean stop leaving
// no goroutine) with the device in the helper process.
func TestContractThroughHelper(t *testing.T) {
	providertest.Run(t, func(t *testing.T, log *slog.Logger) providertest.Subject {
		srv := newFake(t)
		p := newProvider(t, srv, log)
		codes := link(t, p, srv)
		return providertest.Subject{Provider: p, Fake: contractFake{srv, t}, Secrets: codes}
	})
}

// orderSink checks that Deliver calls never overlap and records them.
type orderSink struct {
	mu       sync.Mutex
	inFlight int
	overlap  bool
	started  bool
	texts    []string
	gate     chan struct{} // the first Deliver waits for it
	entered  chan struct{} // closed when the first Deliver has started
	states   []providers.State
}

func (s *orderSink) Deliver(ctx context.Context, m providers.Inbound) error {
	s.mu.Lock()
	s.inFlight++
	if s.inFlight > 1 {
		s.overlap = true
	}
	first := !s.started
	s.started = true
	s.mu.Unlock()
	if first {
		close(s.entered)
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	s.texts = append(s.texts, m.Text)
	s.inFlight--
	s.mu.Unlock()
	return nil
}

func (s *orderSink) SetState(st providers.State, _ error) {
	s.mu.Lock()
	s.states = append(s.states, st)
	s.mu.Unlock()
}

func (s *orderSink) snapshot() (texts []string, overlap bool, states []providers.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.texts), s.overlap, slices.Clone(s.states)
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

// TestInboundOrderThroughHelper: messages reach the gateway's sink one at
// a time and in WhatsApp's order: the helper's Deliver returns only once
// the gateway's has, so while the first is held every later one waits in
// the helper.
func TestInboundOrderThroughHelper(t *testing.T) {
	srv := newFake(t)
	p := newProvider(t, srv, testLog(t))
	link(t, p, srv)
	sink := &orderSink{gate: make(chan struct{}), entered: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, sink) }()
	eventually(t, "connected", func() bool { return p.LoginStatus().Connected })

	want := []string{"one", "two", "three", "four", "five"}
	for _, text := range want {
		if _, err := srv.Inject(alicePhone, "Alice", text); err != nil {
			t.Fatal(err)
		}
	}
	<-sink.entered
	if texts, _, _ := sink.snapshot(); len(texts) != 0 {
		t.Fatalf("delivered %q while the first Deliver was held", texts)
	}
	close(sink.gate)
	eventually(t, "every message", func() bool { texts, _, _ := sink.snapshot(); return len(texts) == len(want) })
	texts, overlap, states := sink.snapshot()
	if !slices.Equal(texts, want) || overlap {
		t.Errorf("delivered %q (overlapping %v); want %q one at a time", texts, overlap, want)
	}
	if !slices.Contains(states, providers.StateConnected) {
		t.Errorf("states %v; want connected", states)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if st := p.LoginStatus(); st.Connected || st.State != LinkLinked {
		t.Errorf("status after Run: %+v; want linked, not connected", st)
	}
}

// helperPid is the running helper's pid, 0 when none runs.
func helperPid(p *Provider) int {
	h, _ := p.current()
	if h == nil {
		return 0
	}
	return h.proc.Pid()
}

// TestHelperLifecycle: through the helper, a second link is refused
// (ErrAlreadyLinked), the supervised account connects and probes OK, a
// killed helper makes Run fail and the Supervisor's restart start a new
// one that carries messages both ways, and logout unlinks the device.
func TestHelperLifecycle(t *testing.T) {
	srv := newFake(t)
	log := testLog(t)
	p := newProvider(t, srv, log)
	link(t, p, srv)
	ctx, cancel := context.WithTimeout(context.Background(), linkTimeout)
	defer cancel()
	if err := p.Link(ctx, false, nil); !errors.Is(err, ErrAlreadyLinked) {
		t.Fatalf("second Link: %v; want ErrAlreadyLinked", err)
	}
	if _, err := p.StartLogin(ctx, false); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("StartLogin without a run: %v; want ErrNotRunning", err)
	}

	sup, err := providers.NewSupervisor(providers.Options{Logger: log, MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, StopTimeout: 20 * time.Second},
		providers.Account{ID: "default", Provider: p, Policy: providers.Policy{AllowFrom: []string{aliceID}}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var statuses []providers.Status
	var texts []string
	defer sup.Watch(func(ev providers.Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Status != nil {
			statuses = append(statuses, *ev.Status)
		}
		if ev.Inbound != nil {
			texts = append(texts, ev.Inbound.Text)
		}
	})()
	seen := func(cond func(providers.Status) bool) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(statuses, cond)
	}
	connectedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, st := range statuses {
			if st.State == providers.StateConnected {
				n++
			}
		}
		return n
	}
	sctx, stop := context.WithCancel(context.Background())
	supDone := make(chan struct{})
	go func() { defer close(supDone); _ = sup.Run(sctx) }()
	defer func() { stop(); <-supDone }()
	route := providers.Route{Channel: Name, AccountID: "default"}

	eventually(t, "connected", func() bool { return connectedCount() == 1 })
	res, ok, err := sup.Probe(ctx, route)
	if err != nil || !ok || !res.OK || res.BotID != "+15550000001" {
		t.Fatalf("probe: %+v %v %v", res, ok, err)
	}
	if st, err := p.StartLogin(ctx, false); err != nil || st.State != LinkLinked || !st.Connected {
		t.Fatalf("StartLogin while linked: %+v %v", st, err)
	}

	first := helperPid(p)
	if first == 0 {
		t.Fatal("no helper runs")
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the helper's death reported", func() bool {
		return seen(func(st providers.Status) bool {
			return st.State == providers.StateReconnecting && strings.Contains(st.LastError, HelperName+" exited")
		})
	})
	eventually(t, "reconnected", func() bool { return connectedCount() == 2 })
	if second := helperPid(p); second == 0 || second == first {
		t.Fatalf("helper pid after restart %d; want a new one (was %d)", second, first)
	}
	if _, err := srv.Inject(alicePhone, "Alice", "after restart"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(texts, "after restart")
	})
	if _, err := sup.Send(ctx, route, providers.Outbound{To: aliceID, Text: "still here"}); err != nil {
		t.Fatalf("send: %v", err)
	}
	if s := srv.Sent(); len(s) != 1 || s[0].Text != "still here" {
		t.Errorf("the fake decrypted %+v", s)
	}
	if _, err := p.Send(ctx, providers.Outbound{To: "status@broadcast", Text: "x"}); !errors.Is(err, providers.ErrBadOutbound) {
		t.Errorf("send to a broadcast list: %v; want ErrBadOutbound", err)
	}

	st, err := sup.Logout(ctx, route)
	if err != nil || !st.Cleared || st.State != providers.StateLoggedOut {
		t.Fatalf("logout: %+v %v", st, err)
	}
	if srv.Linked() {
		t.Error("the device is still linked after logout")
	}
	if ls := p.LoginStatus(); ls.State != LinkNeeded {
		t.Errorf("status after logout: %+v; want needs-relink", ls)
	}
}

// TestHelperNotFound: a missing helper is a startup error saying how to
// install it, and the session lock is not left held.
func TestHelperNotFound(t *testing.T) {
	// Not in $CLAWGATE_HELPER_DIR (unset), or beside the test binary; $PATH is not searched.
	t.Setenv(ipc.EnvHelperDir, "")
	t.Setenv("PATH", t.TempDir())
	dir := filepath.Join(t.TempDir(), "wa")
	_, err := New(Config{Dir: dir})
	if !errors.Is(err, ipc.ErrNotFound) || !strings.Contains(err.Error(), "go install") {
		t.Fatalf("New without the helper: %v; want ErrNotFound saying how to install it", err)
	}
	l, err := LockSession(dir)
	if err != nil {
		t.Fatalf("the lock is still held: %v", err)
	}
	l.Release()
}

// TestSessionLockedInProcess: a second New for a session this process
// holds is refused with the holder's pid, before any helper starts.
func TestSessionLockedInProcess(t *testing.T) {
	srv := newFake(t)
	p := newProvider(t, srv, testLog(t))
	_, err := New(Config{Dir: p.cfg.Dir})
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrSessionLocked) || le.PID != os.Getpid() {
		t.Fatalf("second New: %v; want a LockedError naming pid %d", err, os.Getpid())
	}
}

// TestWireErrors: the sentinel errors and permanence survive the trip
// from the helper's handler to the gateway, with the helper's text.
func TestWireErrors(t *testing.T) {
	for _, sentinel := range []error{ErrNotRunning, ErrSessionLocked, ErrAlreadyLinked, ErrQRTimeout, providers.ErrBadOutbound} {
		err := fromWire(WireError(fmt.Errorf("context: %w", sentinel)))
		if !errors.Is(err, sentinel) || err.Error() != "context: "+sentinel.Error() {
			t.Errorf("%v came back as %v", sentinel, err)
		}
	}
	err := fromWire(WireError(&LockedError{Dir: "/d", PID: 7}))
	if !errors.Is(err, ErrSessionLocked) || !strings.Contains(err.Error(), "pid 7") {
		t.Errorf("LockedError came back as %v", err)
	}
	var perm *providers.PermanentError
	if err := fromWire(WireError(providers.Permanent(errors.New("stream replaced")))); !errors.As(err, &perm) || err.Error() != "stream replaced" {
		t.Errorf("a permanent error came back as %v", err)
	}
	if err := fromWire(WireError(errors.New("plain"))); err == nil || err.Error() != "plain" {
		t.Errorf("a plain error came back as %v", err)
	}
}

// TestHelperRefusesOtherVersion: a helper from another release refuses to
// open the session instead of misreading the calls.
func TestHelperRefusesOtherVersion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wa")
	lock, err := LockSession(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	proc, err := ipc.Start(context.Background(), HelperName, ipc.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Stop(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = proc.Conn().Call(ctx, MethodOpen, OpenParams{Version: WireVersion + 1, Dir: dir}, nil, lock.File())
	if err == nil || !strings.Contains(err.Error(), "same release") {
		t.Fatalf("open with version %d: %v; want a refusal", WireVersion+1, err)
	}
	if err := proc.Conn().Call(ctx, MethodProbe, nil, nil); err == nil || !strings.Contains(err.Error(), "not open") {
		t.Fatalf("probe after the refused open: %v; want the session not open", err)
	}
}

// TestHelperLogReachesGateway: the helper's log records come out of the
// gateway's logger with their level, message and attributes.
func TestHelperLogReachesGateway(t *testing.T) {
	srv := newFake(t)
	var mu sync.Mutex
	var lines []string
	log := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, strings.TrimSpace(string(b)))
		return len(b), nil
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := newProvider(t, srv, log)
	link(t, p, srv)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		found := slices.ContainsFunc(lines, func(l string) bool {
			return strings.Contains(l, `level=INFO msg="WhatsApp device linked" channel=whatsapp account=+15550000001`)
		})
		mu.Unlock()
		if found {
			return
		}
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("the helper's \"WhatsApp device linked\" record is not in the gateway's log:\n%s", strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
