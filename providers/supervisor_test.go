package providers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scripted is a Provider whose Run and Send are test functions.
type scripted struct {
	name string
	caps Capabilities
	run  func(ctx context.Context, sink Sink) error
	send func(ctx context.Context, msg Outbound) (Result, error)

	mu   sync.Mutex
	sent []Outbound
	runs atomic.Int32
}

func (p *scripted) Name() string               { return p.name }
func (p *scripted) Capabilities() Capabilities { return p.caps }
func (p *scripted) Run(ctx context.Context, sink Sink) error {
	p.runs.Add(1)
	if p.run == nil {
		sink.SetState(StateConnected, nil)
		<-ctx.Done()
		return nil
	}
	return p.run(ctx, sink)
}
func (p *scripted) Send(ctx context.Context, msg Outbound) (Result, error) {
	p.mu.Lock()
	p.sent = append(p.sent, msg)
	p.mu.Unlock()
	if p.send != nil {
		return p.send(ctx, msg)
	}
	return Result{MessageID: "m1", ChatID: msg.To}, nil
}
func (p *scripted) sentMsgs() []Outbound {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Outbound(nil), p.sent...)
}

func newScripted(name string) *scripted {
	return &scripted{name: name, caps: Capabilities{Label: strings.ToUpper(name), IDs: IDNumeric, MaxTextLen: 100}}
}

// events collects what a Supervisor publishes.
type events struct {
	mu       sync.Mutex
	inbound  []Inbound
	statuses []Status
	kick     chan struct{}
}

func watch(t *testing.T, s *Supervisor) *events {
	e := &events{kick: make(chan struct{}, 1)}
	stop := s.Watch(func(ev Event) {
		e.mu.Lock()
		if ev.Inbound != nil {
			e.inbound = append(e.inbound, *ev.Inbound)
		}
		if ev.Status != nil {
			e.statuses = append(e.statuses, *ev.Status)
		}
		e.mu.Unlock()
		select {
		case e.kick <- struct{}{}:
		default:
		}
	})
	t.Cleanup(stop)
	return e
}

// waitFor polls cond until it holds or 5 s pass.
func (e *events) waitFor(t *testing.T, what string, cond func(in []Inbound, st []Status) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		e.mu.Lock()
		ok := cond(e.inbound, e.statuses)
		e.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-e.kick:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			e.mu.Lock()
			defer e.mu.Unlock()
			t.Fatalf("timed out waiting for %s; inbound %d, statuses %+v", what, len(e.inbound), e.statuses)
		}
	}
}

// runSupervisor starts a Supervisor (watched from before its first event)
// for the test's life.
func runSupervisor(t *testing.T, opts Options, accts ...Account) (*Supervisor, *events) {
	t.Helper()
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 5 * time.Millisecond
		opts.MaxBackoff = 20 * time.Millisecond
	}
	s, err := NewSupervisor(opts, accts...)
	if err != nil {
		t.Fatal(err)
	}
	ev := watch(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Supervisor.Run did not return after cancel")
		}
	})
	return s, ev
}

func stateSeq(st []Status, channel string) []State {
	var out []State
	for _, s := range st {
		if s.Channel == channel {
			out = append(out, s.State)
		}
	}
	return out
}

func hasState(st []Status, channel string, want State) bool {
	for _, s := range stateSeq(st, channel) {
		if s == want {
			return true
		}
	}
	return false
}

func msg(id, chat, sender, text string) Inbound {
	return Inbound{Kind: KindMessage, ID: id, MessageID: id, ChatID: chat, ChatType: ChatDirect, SenderID: sender, Text: text}
}

func TestSupervisorDeliversAdmittedMessages(t *testing.T) {
	p := newScripted("telegram")
	p.run = func(ctx context.Context, sink Sink) error {
		sink.SetState(StateConnected, nil)
		_ = sink.Deliver(ctx, msg("1", "100", "100", "hello"))
		_ = sink.Deliver(ctx, msg("2", "200", "200", "not allowed"))
		<-ctx.Done()
		return nil
	}
	log := NewMemoryLog(10, 10)
	s, ev := runSupervisor(t, Options{Log: log}, Account{ID: "main", Provider: p,
		Policy: Policy{AllowFrom: []string{"100"}, Owners: []string{"100"}}, TokenSource: "file"})
	ev.waitFor(t, "one inbound, one dropped", func(in []Inbound, _ []Status) bool {
		return len(in) == 1 && s.Statuses()[0].Dropped == 1
	})
	got := ev.inbound[0]
	if got.Channel != "telegram" || got.AccountID != "main" || got.Text != "hello" || !got.FromOwner || got.Time.IsZero() {
		t.Errorf("inbound = %+v", got)
	}
	recent, _ := log.Recent(context.Background(), got.ConversationKey(), 0)
	if len(recent) != 1 || recent[0].Text != "hello" {
		t.Errorf("message log = %+v", recent)
	}
	st := s.Statuses()[0]
	if !st.Connected() || st.Dropped != 1 || st.LastInboundAt.IsZero() || st.TokenSource != "file" || st.ChannelLabel != "TELEGRAM" {
		t.Errorf("status = %+v", st)
	}
}

// TestSupervisorDedupe is attack I12 at the supervisor: the same event
// delivered three times (and again after a reconnect) is processed once,
// and the order of distinct messages is kept.
func TestSupervisorDedupe(t *testing.T) {
	p := newScripted("telegram")
	var runs atomic.Int32
	p.run = func(ctx context.Context, sink Sink) error {
		sink.SetState(StateConnected, nil)
		n := runs.Add(1)
		for _, id := range []string{"1", "1", "2", "1", "3", "3"} {
			_ = sink.Deliver(ctx, msg(id, "100", "100", "m"+id))
		}
		if n == 1 {
			return errors.New("connection reset") // reconnect mid-stream: the service replays
		}
		_ = sink.Deliver(ctx, msg("4", "100", "100", "m4"))
		<-ctx.Done()
		return nil
	}
	s, ev := runSupervisor(t, Options{}, Account{Provider: p, Policy: Policy{AllowFrom: []string{"100"}}})
	ev.waitFor(t, "four messages", func(in []Inbound, _ []Status) bool { return len(in) >= 4 })
	time.Sleep(20 * time.Millisecond) // nothing more may arrive
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var texts []string
	for _, m := range ev.inbound {
		texts = append(texts, m.Text)
	}
	if strings.Join(texts, ",") != "m1,m2,m3,m4" {
		t.Errorf("delivered %v, want m1,m2,m3,m4 once each in order", texts)
	}
	// Three repeats in the first run, six replays after the reconnect.
	if st := s.Statuses()[0]; st.Duplicates != 9 {
		t.Errorf("duplicates = %d, want 9", st.Duplicates)
	}
}

func TestSupervisorRestartsWithBackoff(t *testing.T) {
	p := newScripted("slack")
	p.caps.IDs = IDSlack
	var n atomic.Int32
	p.run = func(ctx context.Context, sink Sink) error {
		if n.Add(1) <= 3 {
			return errors.New("dial failed")
		}
		sink.SetState(StateConnected, nil)
		<-ctx.Done()
		return nil
	}
	s, ev := runSupervisor(t, Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}, Account{Provider: p})
	start := time.Now()
	ev.waitFor(t, "connected", func(_ []Inbound, st []Status) bool { return hasState(st, "slack", StateConnected) })
	// Three failures wait 10+20+40 ms at least.
	if el := time.Since(start); el < 60*time.Millisecond {
		t.Errorf("reconnected after %v; backoff not applied", el)
	}
	st := s.Statuses()[0]
	if st.Restarts != 3 || st.LastError != "" || !st.Connected() {
		t.Errorf("status after recovery: %+v", st)
	}
	if !hasState(ev.statuses, "slack", StateReconnecting) {
		t.Errorf("no reconnecting status published: %v", stateSeq(ev.statuses, "slack"))
	}
}

// TestSupervisorIsolatesPanics: a provider that panics in Run and in Send
// is restarted and reported; the other provider keeps working.
func TestSupervisorIsolatesPanics(t *testing.T) {
	bad := newScripted("discord")
	bad.caps.IDs = IDSnowflake
	bad.run = func(ctx context.Context, sink Sink) error { panic("nil map in handler") }
	bad.send = func(context.Context, Outbound) (Result, error) { panic("send exploded") }
	good := newScripted("telegram")
	var ticks atomic.Int32
	good.run = func(ctx context.Context, sink Sink) error {
		sink.SetState(StateConnected, nil)
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Millisecond):
			}
			_ = sink.Deliver(ctx, msg(string(rune('a'+i%26))+time.Now().String(), "100", "100", "tick"))
			ticks.Add(1)
		}
	}
	s, ev := runSupervisor(t, Options{}, Account{Provider: bad, Policy: Policy{AllowTo: []string{"*"}}},
		Account{Provider: good, Policy: Policy{AllowFrom: []string{"100"}}})
	ev.waitFor(t, "panicking provider restarted", func(_ []Inbound, _ []Status) bool { return bad.runs.Load() >= 3 })
	ev.waitFor(t, "healthy provider delivering", func(in []Inbound, _ []Status) bool { return len(in) >= 3 })
	st := s.Statuses()[0]
	if !strings.Contains(st.LastError, "panicked: nil map in handler") || st.Restarts < 2 {
		t.Errorf("panicking provider status: %+v", st)
	}
	_, err := s.Send(context.Background(), Route{"discord", "default"}, Outbound{To: "42", Text: "x"})
	var pe *PanicError
	if !errors.As(err, &pe) {
		t.Errorf("Send panic: err = %v", err)
	}
	if !s.Statuses()[1].Connected() {
		t.Error("healthy provider disturbed")
	}
}

func TestSupervisorPermanentFailure(t *testing.T) {
	p := newScripted("telegram")
	p.run = func(ctx context.Context, sink Sink) error {
		return Permanent(errors.New("401 Unauthorized"))
	}
	s, ev := runSupervisor(t, Options{}, Account{Provider: p})
	ev.waitFor(t, "failed", func(_ []Inbound, st []Status) bool { return hasState(st, "telegram", StateFailed) })
	time.Sleep(30 * time.Millisecond)
	if n := p.runs.Load(); n != 1 {
		t.Errorf("permanent failure retried: %d runs", n)
	}
	if st := s.Statuses()[0]; st.LastError != "401 Unauthorized" || st.Running() {
		t.Errorf("status: %+v", st)
	}
}

func TestSupervisorSendPolicy(t *testing.T) {
	p := newScripted("telegram")
	inbound := make(chan struct{})
	p.run = func(ctx context.Context, sink Sink) error {
		sink.SetState(StateConnected, nil)
		<-inbound
		_ = sink.Deliver(ctx, msg("9", "-100500", "100", "group hello"))
		<-ctx.Done()
		return nil
	}
	s, ev := runSupervisor(t, Options{}, Account{Provider: p,
		Policy: Policy{AllowFrom: []string{"100"}, AllowTo: []string{"777"}}})
	r := Route{"telegram", "default"}
	ctx := context.Background()

	if _, err := s.Send(ctx, r, Outbound{To: "888", Text: "hi"}); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("unlisted destination: %v", err)
	}
	if _, err := s.Send(ctx, r, Outbound{To: "+999777", Text: "hi"}); !errors.Is(err, ErrBadOutbound) {
		t.Errorf("malformed destination: %v", err)
	}
	if _, err := s.Send(ctx, r, Outbound{To: "777", Text: ""}); !errors.Is(err, ErrBadOutbound) {
		t.Errorf("empty text: %v", err)
	}
	if _, err := s.Send(ctx, r, Outbound{To: "777", Text: strings.Repeat("x", 101)}); !errors.Is(err, ErrBadOutbound) {
		t.Errorf("too long: %v", err)
	}
	if _, err := s.Send(ctx, r, Outbound{To: "777", Text: "a\xffb"}); !errors.Is(err, ErrBadOutbound) {
		t.Errorf("invalid utf-8: %v", err)
	}
	if n := len(p.sentMsgs()); n != 0 {
		t.Fatalf("provider called %d times for refused sends", n)
	}
	if res, err := s.Send(ctx, r, Outbound{To: "777", Text: "hi"}); err != nil || res.MessageID != "m1" {
		t.Errorf("allowed send: %+v %v", res, err)
	}
	if _, err := s.Send(ctx, r, Outbound{To: "-100500", Text: "reply"}); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("unknown group before any message: %v", err)
	}
	close(inbound)
	ev.waitFor(t, "group message", func(in []Inbound, _ []Status) bool { return len(in) == 1 })
	if _, err := s.Send(ctx, r, Outbound{To: "-100500", Text: "reply"}); err != nil {
		t.Errorf("reply to a conversation that delivered an admitted message: %v", err)
	}
	if _, err := s.Send(ctx, Route{"slack", "default"}, Outbound{To: "1", Text: "x"}); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("unknown route: %v", err)
	}
	if st := s.Statuses()[0]; st.LastOutboundAt.IsZero() {
		t.Error("LastOutboundAt not set")
	}
}

type logoutProvider struct {
	*scripted
	loggedOut atomic.Bool
}

func (p *logoutProvider) Logout(context.Context) error { p.loggedOut.Store(true); return nil }

func TestSupervisorLogout(t *testing.T) {
	p := &logoutProvider{scripted: newScripted("telegram")}
	s, ev := runSupervisor(t, Options{}, Account{Provider: p, Policy: Policy{AllowTo: []string{"*"}}})
	ev.waitFor(t, "connected", func(_ []Inbound, _ []Status) bool { return s.Statuses()[0].Connected() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.Logout(ctx, Route{"telegram", "default"})
	if err != nil || st.State != StateLoggedOut || !p.loggedOut.Load() || !st.Cleared {
		t.Fatalf("logout: %+v %v (facet called %v)", st, err, p.loggedOut.Load())
	}
	time.Sleep(30 * time.Millisecond)
	if n := p.runs.Load(); n != 1 {
		t.Errorf("restarted after logout: %d runs", n)
	}
	if _, err := s.Send(ctx, Route{"telegram", "default"}, Outbound{To: "1", Text: "x"}); !errors.Is(err, ErrLoggedOut) {
		t.Errorf("send after logout: %v", err)
	}
}

func TestSupervisorAbandonsStuckProvider(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	p := newScripted("telegram")
	p.run = func(ctx context.Context, sink Sink) error {
		sink.SetState(StateConnected, nil)
		<-release // ignores ctx
		return nil
	}
	s, err := NewSupervisor(Options{StopTimeout: 50 * time.Millisecond}, Account{Provider: p})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for !s.Statuses()[0].Connected() {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run blocked on a provider that ignores its context")
	}
	if st := s.Statuses()[0]; st.State != StateStopped {
		t.Errorf("state %s", st.State)
	}
}

func TestSupervisorPairingFlow(t *testing.T) {
	p := newScripted("telegram")
	type job struct {
		m    Inbound
		done chan struct{}
	}
	jobs := make(chan job)
	p.run = func(ctx context.Context, sink Sink) error {
		sink.SetState(StateConnected, nil)
		for {
			select {
			case <-ctx.Done():
				return nil
			case j := <-jobs:
				_ = sink.Deliver(ctx, j.m)
				close(j.done)
			}
		}
	}
	deliver := func(m Inbound) {
		j := job{m, make(chan struct{})}
		jobs <- j
		<-j.done
	}
	s, ev := runSupervisor(t, Options{}, Account{Provider: p, Policy: Policy{DMPairing: true}})
	deliver(msg("1", "555", "555", "hi"))
	deliver(msg("2", "555", "555", "hello?"))
	sent := p.sentMsgs()
	if len(sent) != 1 || sent[0].To != "555" {
		t.Fatalf("pairing replies: %+v", sent)
	}
	reqs := s.PairingRequests()
	if len(reqs) != 1 || !strings.Contains(sent[0].Text, reqs[0].Code) || reqs[0].SenderID != "555" {
		t.Fatalf("requests %+v, reply %q", reqs, sent[0].Text)
	}
	r := Route{"telegram", "default"}
	if _, err := s.ApprovePairing(r, "AAAAAAAA"); !errors.Is(err, ErrNoPairingRequest) {
		t.Errorf("wrong code: %v", err)
	}
	if _, err := s.ApprovePairing(r, reqs[0].Code); err != nil {
		t.Fatal(err)
	}
	deliver(msg("3", "555", "555", "now?"))
	ev.waitFor(t, "admitted after approval", func(in []Inbound, _ []Status) bool { return len(in) == 1 && in[0].Text == "now?" })
	if len(s.PairingRequests()) != 0 {
		t.Error("request still pending after approval")
	}
}

func TestSupervisorResolve(t *testing.T) {
	one, _ := NewSupervisor(Options{}, Account{ID: "a", Provider: newScripted("telegram")}, Account{ID: "b", Provider: newScripted("telegram")})
	if r, err := one.Resolve("", ""); err != nil || r != (Route{"telegram", "a"}) {
		t.Errorf("default route: %+v %v", r, err)
	}
	if r, err := one.Resolve("telegram", "b"); err != nil || r.AccountID != "b" {
		t.Errorf("explicit account: %+v %v", r, err)
	}
	if _, err := one.Resolve("telegram", "c"); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("unknown account: %v", err)
	}
	two, _ := NewSupervisor(Options{}, Account{Provider: newScripted("telegram")}, Account{Provider: newScripted("slack")})
	if _, err := two.Resolve("", ""); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("two channels, none chosen: %v", err)
	}
	none, _ := NewSupervisor(Options{})
	if _, err := none.Resolve("", ""); !errors.Is(err, ErrNoChannel) {
		t.Errorf("no channels: %v", err)
	}
	if _, err := NewSupervisor(Options{}, Account{Provider: newScripted("telegram")}, Account{Provider: newScripted("telegram")}); err == nil {
		t.Error("duplicate account accepted")
	}
	if _, err := NewSupervisor(Options{}, Account{Provider: newScripted("telegram"), Policy: Policy{AllowFrom: []string{"@bob"}}}); err == nil {
		t.Error("username allowlist accepted")
	}
}

func TestMemoryLogBounds(t *testing.T) {
	l := NewMemoryLog(3, 2)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		_ = l.Append(ctx, Inbound{Channel: "t", AccountID: "a", ChatID: "1", Text: string(rune('a' + i))})
	}
	got, _ := l.Recent(ctx, ConversationKey{"t", "a", "1"}, 0)
	if len(got) != 3 || got[0].Text != "c" || got[2].Text != "e" {
		t.Errorf("per-conversation bound: %+v", got)
	}
	_ = l.Append(ctx, Inbound{Channel: "t", AccountID: "a", ChatID: "2"})
	_ = l.Append(ctx, Inbound{Channel: "t", AccountID: "a", ChatID: "3"})
	if l.Conversations() != 2 {
		t.Errorf("conversations = %d, want 2", l.Conversations())
	}
	if got, _ := l.Recent(ctx, ConversationKey{"t", "a", "1"}, 0); got != nil {
		t.Error("least recently active conversation not evicted")
	}
}
