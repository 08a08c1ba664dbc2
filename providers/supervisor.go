package providers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Hub is what the gateway needs from the providers: events, status,
// routing, sending and logout. *Supervisor implements it.
type Hub interface {
	// Watch calls fn for every admitted inbound message and every status
	// change, on the provider's goroutine; fn must not block. stop ends
	// the subscription.
	Watch(fn func(Event)) (stop func())
	Statuses() []Status
	// Resolve picks the account for a channel and account id; empty values
	// select the only configured channel and its default account.
	Resolve(channel, accountID string) (Route, error)
	Send(ctx context.Context, r Route, msg Outbound) (Result, error)
	Logout(ctx context.Context, r Route) (Status, error)
	// Probe runs the account's Prober; ok is false when it has none.
	Probe(ctx context.Context, r Route) (res ProbeResult, ok bool, err error)
	PairingRequests() []PairingRequest
	ApprovePairing(r Route, code string) (PairingRequest, error)
	DismissPairing(r Route, code string) error
}

// Route names one account.
type Route struct {
	Channel   string
	AccountID string
}

// Event is one thing the Supervisor publishes: exactly one field is set.
type Event struct {
	Inbound *Inbound
	Status  *Status
}

// Status is an account's observable state. It never holds a secret.
type Status struct {
	Channel      string
	ChannelLabel string
	AccountID    string
	Label        string
	Mode         string
	State        State
	Restarts     int
	LastError    string

	LastStartAt     time.Time
	LastStopAt      time.Time
	LastConnectedAt time.Time
	LastInboundAt   time.Time
	LastOutboundAt  time.Time

	AllowFrom   []string
	DMPairing   bool
	TokenSource string
	Dropped     int64 // inbound events dropped by policy or shape checks
	Duplicates  int64 // inbound events delivered more than once

	// Cleared is set only in Logout's answer: the provider forgot its
	// session (a LogoutProvider facet ran), so the account must be linked
	// again before it can run.
	Cleared bool
}

// Running reports whether the account's provider is (re)starting or up.
func (s Status) Running() bool {
	return s.State == StateStarting || s.State == StateConnected || s.State == StateReconnecting
}

// Connected reports whether the provider says it is connected.
func (s Status) Connected() bool { return s.State == StateConnected }

// Account is one provider with its identity and rules.
type Account struct {
	ID          string // account id within the channel, e.g. "default"
	Label       string // optional display name
	Provider    Provider
	Policy      Policy
	TokenSource string // where the credentials came from ("file", "env"); shown in status
}

// Options configure a Supervisor. Zero values take the defaults.
type Options struct {
	Logger *slog.Logger
	// Log keeps admitted messages per conversation; nil gets a MemoryLog.
	Log MessageLog
	// MinBackoff and MaxBackoff bound the restart delay (1 s and 60 s).
	MinBackoff, MaxBackoff time.Duration
	// StopTimeout is how long a provider gets to return after its context
	// ends before it is abandoned (10 s).
	StopTimeout time.Duration
	// PairingTimeout bounds the send of a pairing code (10 s).
	PairingTimeout time.Duration
	Now            func() time.Time
}

// Supervisor runs accounts, restarts them with backoff, recovers their
// panics, applies their policies and publishes what happens.
type Supervisor struct {
	opts     Options
	log      *slog.Logger
	accounts []*account
	byRoute  map[Route]*account
	channels []string // in configuration order, unique

	running atomic.Bool
	stopped atomic.Bool

	mu       sync.Mutex
	watchers map[int]func(Event)
	nextW    int
}

var _ Hub = (*Supervisor)(nil)

// NewSupervisor validates the accounts (unique channel and id, policies
// well formed for each provider's id syntax) and returns a Supervisor.
func NewSupervisor(opts Options, accounts ...Account) (*Supervisor, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Log == nil {
		opts.Log = NewMemoryLog(0, 0)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(60*time.Second, opts.MinBackoff)
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.PairingTimeout <= 0 {
		opts.PairingTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Supervisor{opts: opts, log: opts.Logger, byRoute: map[Route]*account{}, watchers: map[int]func(Event){}}
	for _, acct := range accounts {
		if acct.Provider == nil {
			return nil, fmt.Errorf("providers.NewSupervisor: account %q has no provider", acct.ID)
		}
		if acct.ID == "" {
			acct.ID = "default"
		}
		if !ValidID(IDOpaque, acct.ID) || len(acct.ID) > 64 {
			return nil, fmt.Errorf("providers.NewSupervisor: account id %q is not a short printable word", acct.ID)
		}
		name := acct.Provider.Name()
		r := Route{Channel: name, AccountID: acct.ID}
		if _, dup := s.byRoute[r]; dup {
			return nil, fmt.Errorf("providers.NewSupervisor: %s account %q is configured twice", name, acct.ID)
		}
		caps := acct.Provider.Capabilities()
		pol, err := compilePolicy(acct.Policy, caps.IDs)
		if err != nil {
			return nil, fmt.Errorf("providers.NewSupervisor: %s account %q: %w", name, acct.ID, err)
		}
		a := &account{
			sup: s, route: r, label: acct.Label, p: acct.Provider, caps: caps, pol: pol,
			seen: newSeenSet(10000), replyTo: newSeenSet(10000), pairing: newPairingBook(opts.Now),
			log: s.log.With("channel", name, "account", acct.ID),
		}
		a.st = Status{Channel: name, ChannelLabel: caps.Label, AccountID: acct.ID, Label: acct.Label,
			Mode: caps.Mode, State: StateStopped, AllowFrom: slices.Clone(acct.Policy.AllowFrom),
			DMPairing: acct.Policy.DMPairing, TokenSource: acct.TokenSource}
		if a.st.ChannelLabel == "" {
			a.st.ChannelLabel = name
		}
		s.accounts = append(s.accounts, a)
		s.byRoute[r] = a
		if !slices.Contains(s.channels, name) {
			s.channels = append(s.channels, name)
		}
	}
	return s, nil
}

// Channels returns the configured channel ids in configuration order.
func (s *Supervisor) Channels() []string { return slices.Clone(s.channels) }

// Run runs every account until ctx ends, then waits for each provider to
// stop (each bounded by Options.StopTimeout). It can be called once.
func (s *Supervisor) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("providers.Supervisor.Run: already running")
	}
	defer s.stopped.Store(true)
	var wg sync.WaitGroup
	for _, a := range s.accounts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.loop(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Watch implements Hub.
func (s *Supervisor) Watch(fn func(Event)) (stop func()) {
	s.mu.Lock()
	id := s.nextW
	s.nextW++
	s.watchers[id] = fn
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.watchers, id)
			s.mu.Unlock()
		})
	}
}

func (s *Supervisor) emit(ev Event) {
	s.mu.Lock()
	fns := make([]func(Event), 0, len(s.watchers))
	for _, fn := range s.watchers {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// Statuses implements Hub, in configuration order.
func (s *Supervisor) Statuses() []Status {
	out := make([]Status, 0, len(s.accounts))
	for _, a := range s.accounts {
		out = append(out, a.status())
	}
	return out
}

// Resolve implements Hub.
func (s *Supervisor) Resolve(channel, accountID string) (Route, error) {
	if channel == "" {
		switch len(s.channels) {
		case 0:
			return Route{}, ErrNoChannel
		case 1:
			channel = s.channels[0]
		default:
			return Route{}, ErrAmbiguous
		}
	}
	if accountID == "" {
		for _, a := range s.accounts {
			if a.route.Channel == channel {
				return a.route, nil
			}
		}
		return Route{}, ErrUnknownAccount
	}
	r := Route{Channel: channel, AccountID: accountID}
	if _, ok := s.byRoute[r]; !ok {
		return Route{}, ErrUnknownAccount
	}
	return r, nil
}

func (s *Supervisor) account(r Route) (*account, error) {
	a, ok := s.byRoute[r]
	if !ok {
		return nil, ErrUnknownAccount
	}
	return a, nil
}

// Send implements Hub: it checks the text and the destination against the
// account's rules, then calls the provider (recovering a panic).
func (s *Supervisor) Send(ctx context.Context, r Route, msg Outbound) (Result, error) {
	a, err := s.account(r)
	if err != nil {
		return Result{}, err
	}
	if a.isLoggedOut() {
		return Result{}, ErrLoggedOut
	}
	if err := a.checkOutbound(msg); err != nil {
		return Result{}, err
	}
	if !a.pol.toAny && !a.pol.allowTo[msg.To] && !a.replyTo.has(msg.To) {
		return Result{}, ErrNotAllowed
	}
	res, err := a.send(ctx, msg)
	if err != nil {
		return Result{}, err
	}
	a.mu.Lock()
	a.st.LastOutboundAt = s.opts.Now()
	a.mu.Unlock()
	return res, nil
}

// Logout implements Hub: the account stops and is not restarted; a
// provider with a LogoutProvider facet also forgets its remote session.
func (s *Supervisor) Logout(ctx context.Context, r Route) (Status, error) {
	a, err := s.account(r)
	if err != nil {
		return Status{}, err
	}
	a.mu.Lock()
	a.loggedOut = true
	cancel, done := a.cancel, a.done
	a.mu.Unlock()
	if cancel != nil {
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			return a.status(), ctx.Err()
		}
	}
	lp, cleared := a.p.(LogoutProvider)
	if cleared {
		if err := safeCall(func() error { return lp.Logout(ctx) }); err != nil {
			a.log.Warn("provider logout failed", "err", err)
			return a.status(), fmt.Errorf("providers: %s logout: %w", r.Channel, err)
		}
	}
	a.setState(StateLoggedOut, nil)
	st := a.status()
	st.Cleared = cleared
	return st, nil
}

// Probe implements Hub.
func (s *Supervisor) Probe(ctx context.Context, r Route) (ProbeResult, bool, error) {
	a, err := s.account(r)
	if err != nil {
		return ProbeResult{}, false, err
	}
	pr, ok := a.p.(Prober)
	if !ok {
		return ProbeResult{}, false, nil
	}
	start := s.opts.Now()
	var res ProbeResult
	err = safeCall(func() error {
		var e error
		res, e = pr.Probe(ctx)
		return e
	})
	res.Elapsed = s.opts.Now().Sub(start).Milliseconds()
	if err != nil {
		res.OK = false
		res.Error = err.Error()
	}
	return res, true, nil
}

// PairingRequests implements Hub: every live request, oldest first.
func (s *Supervisor) PairingRequests() []PairingRequest {
	var out []PairingRequest
	for _, a := range s.accounts {
		out = append(out, a.pairing.list()...)
	}
	return out
}

// ErrNoPairingRequest is returned for an unknown or expired pairing code.
var ErrNoPairingRequest = errors.New("providers: no pending pairing request with that code")

// ApprovePairing implements Hub: the sender holding code is admitted from
// now on (until restart; list the id in allowFrom to keep it).
func (s *Supervisor) ApprovePairing(r Route, code string) (PairingRequest, error) {
	a, err := s.account(r)
	if err != nil {
		return PairingRequest{}, err
	}
	req, ok := a.pairing.approve(code)
	if !ok {
		return PairingRequest{}, ErrNoPairingRequest
	}
	a.replyTo.add(req.ChatID) // the owner may now answer this conversation
	a.log.Info("pairing approved", "sender", req.SenderID)
	return req, nil
}

// DismissPairing implements Hub.
func (s *Supervisor) DismissPairing(r Route, code string) error {
	a, err := s.account(r)
	if err != nil {
		return err
	}
	if !a.pairing.dismiss(code) {
		return ErrNoPairingRequest
	}
	return nil
}

// account is one supervised provider.
type account struct {
	sup     *Supervisor
	route   Route
	label   string
	p       Provider
	caps    Capabilities
	pol     *policy
	seen    *seenSet // inbound dedupe keys
	replyTo *seenSet // chats that delivered admitted messages
	pairing *pairingBook
	log     *slog.Logger

	gen atomic.Int64 // run generation; sinks of older runs are ignored

	mu        sync.Mutex
	st        Status
	loggedOut bool
	cancel    context.CancelFunc
	done      chan struct{}
	connected bool // the current run reported StateConnected
}

func (a *account) status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.st
	st.AllowFrom = slices.Clone(st.AllowFrom)
	return st
}

func (a *account) isLoggedOut() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.loggedOut
}

// setState records a state change and publishes it when something a
// watcher cares about changed.
func (a *account) setState(state State, err error) {
	now := a.sup.opts.Now()
	a.mu.Lock()
	prev := a.st
	a.st.State = state
	switch state {
	case StateConnected:
		a.st.LastConnectedAt = now
		a.st.LastError = ""
		a.connected = true
	case StateStarting:
		a.st.LastStartAt = now
	case StateStopped, StateLoggedOut, StateFailed:
		if prev.Running() {
			a.st.LastStopAt = now
		}
	}
	if err != nil {
		a.st.LastError = err.Error()
	}
	st := a.st
	a.mu.Unlock()
	if prev.State == st.State && prev.LastError == st.LastError && prev.Restarts == st.Restarts {
		return
	}
	if state == StateConnected || state == StateReconnecting || state == StateFailed {
		a.log.Info("channel "+string(state), "err", st.LastError)
	}
	st.AllowFrom = slices.Clone(st.AllowFrom)
	a.sup.emit(Event{Status: &st})
}

// loop runs the provider until ctx ends or the account is logged out.
func (a *account) loop(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	a.mu.Lock()
	if a.loggedOut {
		a.mu.Unlock()
		return
	}
	a.cancel, a.done = cancel, make(chan struct{})
	done := a.done
	a.mu.Unlock()
	defer close(done)

	attempt := 0
	for ctx.Err() == nil {
		a.mu.Lock()
		a.connected = false
		a.mu.Unlock()
		a.setState(StateStarting, nil)
		err := a.runOnce(ctx)
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = errors.New("provider stopped on its own")
		}
		var perm *PermanentError
		if errors.As(err, &perm) {
			a.setState(StateFailed, err)
			a.log.Error("channel failed; not restarting until the gateway restarts", "err", err)
			<-ctx.Done()
			return
		}
		a.mu.Lock()
		if a.connected {
			attempt = 0
		}
		a.st.Restarts++
		a.mu.Unlock()
		delay := a.backoff(attempt)
		attempt++
		a.setState(StateReconnecting, err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	if a.isLoggedOut() {
		a.setState(StateLoggedOut, nil)
	} else {
		a.setState(StateStopped, nil)
	}
}

func (a *account) backoff(attempt int) time.Duration {
	d := a.sup.opts.MinBackoff
	for i := 0; i < attempt && d < a.sup.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, a.sup.opts.MaxBackoff)
}

// runOnce runs the provider once, recovering a panic, and gives it
// StopTimeout to return after ctx ends.
func (a *account) runOnce(ctx context.Context) error {
	sink := &accountSink{a: a, gen: a.gen.Add(1)}
	done := make(chan error, 1)
	go func() {
		done <- safeCall(func() error { return a.p.Run(ctx, sink) })
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	t := time.NewTimer(a.sup.opts.StopTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		a.gen.Add(1) // ignore whatever the abandoned run still reports
		a.log.Error("provider did not stop in time; abandoning it", "timeout", a.sup.opts.StopTimeout)
		return ctx.Err()
	}
}

// safeCall runs fn, turning a panic into an error (the stack is kept in
// the error text for the log).
func safeCall(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return fn()
}

// PanicError is a recovered provider panic.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("provider panicked: %v", e.Value) }

func (a *account) send(ctx context.Context, msg Outbound) (Result, error) {
	var res Result
	err := safeCall(func() error {
		var e error
		res, e = a.p.Send(ctx, msg)
		return e
	})
	var pe *PanicError
	if errors.As(err, &pe) {
		a.log.Error("provider send panicked", "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
	}
	return res, err
}

func (a *account) checkOutbound(msg Outbound) error {
	switch {
	case !ValidID(a.caps.IDs, msg.To):
		return fmt.Errorf("%w: %q is not a valid %s destination id", ErrBadOutbound, msg.To, a.route.Channel)
	case msg.Text == "":
		return fmt.Errorf("%w: empty text", ErrBadOutbound)
	case !utf8.ValidString(msg.Text):
		return fmt.Errorf("%w: text is not valid UTF-8", ErrBadOutbound)
	case a.caps.MaxTextLen > 0 && utf8.RuneCountInString(msg.Text) > a.caps.MaxTextLen:
		return fmt.Errorf("%w: text longer than %d characters", ErrBadOutbound, a.caps.MaxTextLen)
	case msg.ThreadID != "" && !ValidID(IDOpaque, msg.ThreadID):
		return fmt.Errorf("%w: malformed thread id", ErrBadOutbound)
	case msg.ReplyToID != "" && !ValidID(IDOpaque, msg.ReplyToID):
		return fmt.Errorf("%w: malformed reply-to id", ErrBadOutbound)
	}
	return nil
}

// accountSink is the Sink one run of a provider gets.
type accountSink struct {
	a   *account
	gen int64
}

func (k *accountSink) current() bool { return k.a.gen.Load() == k.gen }

// SetState implements Sink.
func (k *accountSink) SetState(state State, err error) {
	if !k.current() {
		return
	}
	switch state {
	case StateConnected, StateReconnecting:
		k.a.setState(state, err)
	default:
		// Starting, stopped, failed and logged-out belong to the Supervisor.
	}
}

// Deliver implements Sink.
func (k *accountSink) Deliver(ctx context.Context, m Inbound) error {
	a := k.a
	if !k.current() {
		return ErrStopped
	}
	m.Channel, m.AccountID = a.route.Channel, a.route.AccountID
	if reason := a.pol.checkShape(&m); reason != "" {
		a.dropped(&m, reason)
		return nil
	}
	if !a.seen.add(string(m.Kind) + ":" + m.ID) {
		a.mu.Lock()
		a.st.Duplicates++
		a.mu.Unlock()
		a.log.Debug("duplicate inbound event ignored", "id", m.ID, "kind", m.Kind)
		return nil
	}
	switch a.pol.decide(&m, a.pairing.isApproved) {
	case drop:
		a.dropped(&m, "sender not allowed")
		return nil
	case offerPairing:
		a.offerPairing(ctx, &m)
		return nil
	}
	m.FromOwner = a.pol.isOwner(m.SenderID)
	now := a.sup.opts.Now()
	if m.Time.IsZero() {
		m.Time = now
	}
	a.replyTo.add(m.ChatID)
	if err := a.sup.opts.Log.Append(ctx, m); err != nil {
		a.log.Warn("inbound message not persisted", "err", err)
	}
	a.mu.Lock()
	a.st.LastInboundAt = now
	a.mu.Unlock()
	a.sup.emit(Event{Inbound: &m})
	return nil
}

func (a *account) dropped(m *Inbound, reason string) {
	a.mu.Lock()
	a.st.Dropped++
	a.mu.Unlock()
	// The text is never logged: it may be hostile or private.
	a.log.Debug("inbound event dropped", "reason", reason, "kind", m.Kind,
		"sender", truncateID(m.SenderID), "chat", truncateID(m.ChatID), "bytes", len(m.Text))
}

func truncateID(s string) string {
	if len(s) > maxIDLen {
		s = s[:maxIDLen]
	}
	if !utf8.ValidString(s) {
		return "(invalid)"
	}
	return s
}

// offerPairing sends a pairing code to an unknown direct-chat sender, at
// most once per sender per PairingTTL.
func (a *account) offerPairing(ctx context.Context, m *Inbound) {
	req := a.pairing.offer(m)
	if req == nil {
		a.dropped(m, "sender not allowed (pairing code already issued)")
		return
	}
	a.log.Info("pairing requested by unknown sender", "sender", m.SenderID)
	text := "This bot only answers approved senders. Your pairing code is " + req.Code +
		". Ask the owner to approve it (valid for 1 hour)."
	sctx, cancel := context.WithTimeout(ctx, a.sup.opts.PairingTimeout)
	defer cancel()
	if _, err := a.send(sctx, Outbound{To: m.ChatID, Text: text}); err != nil {
		a.log.Warn("pairing code not delivered", "sender", m.SenderID, "err", err)
	}
}
