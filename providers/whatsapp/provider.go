package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/clawgate/clawgate/ipc"
	"github.com/clawgate/clawgate/providers"
)

// Timeouts of the helper.
const (
	// helperStopTimeout bounds a helper's exit after its connection closes
	// (it disconnects from WhatsApp and closes the database first).
	helperStopTimeout = 5 * time.Second
	// openTimeout bounds a helper's start and MethodOpen.
	openTimeout = 30 * time.Second
)

// Config configures one WhatsApp account.
type Config struct {
	// Dir holds the session: session.db (mode 0600) and session.lock. It
	// is created with mode 0700; one account per directory.
	Dir    string
	Logger *slog.Logger
	// QueueSize bounds the helper's inbound queue (0: its default). When
	// it is full, messages are left unacknowledged for WhatsApp to
	// redeliver.
	QueueSize int
	// Test points the helper at a loopback fake. Leave it nil in
	// production: only tests set it.
	Test *TestEndpoint
}

// Provider is one WhatsApp account, run by a clawgate-whatsapp helper
// process. New starts a helper (so a missing one is a startup error) that
// the first Run, Link or Logout takes; each of those stops its helper when
// it returns, and the next starts a new one. A helper that dies ends the
// Run with an error, and the Supervisor's restart starts another.
type Provider struct {
	cfg   Config
	log   *slog.Logger
	lock  *SessionLock
	board *LoginBoard // mirrors the helper's
	ctx   context.Context
	stop  context.CancelFunc

	mu      sync.Mutex
	closed  bool
	idle    *helper        // started and open, not used yet
	running *helper        // the helper of the current Run
	sink    providers.Sink // the current Run's
}

var (
	_ providers.Provider       = (*Provider)(nil)
	_ providers.Prober         = (*Provider)(nil)
	_ providers.LogoutProvider = (*Provider)(nil)
)

var (
	errNotConnected = errors.New("whatsapp: not connected")
	errClosed       = errors.New("whatsapp: the provider is closed")
)

// New takes the session lock, which it holds until Close (a second
// process, or a second New for the same directory, gets a *LockedError
// naming the holder), and starts the helper, which makes no network call
// until Run or Link. A helper that cannot be found is an error saying how
// to install it.
func New(cfg Config) (*Provider, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.QueueSize < 0 {
		return nil, errors.New("whatsapp: queue size must not be negative")
	}
	lock, err := LockSession(cfg.Dir)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &Provider{cfg: cfg, log: cfg.Logger.With("channel", Name), lock: lock, board: NewLoginBoard(), ctx: ctx, stop: stop}
	h, err := p.start()
	if err != nil {
		stop()
		lock.Release()
		return nil, err
	}
	p.idle = h
	return p, nil
}

// Close stops the helper and releases the session lock. The provider must
// not be running.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	h := p.idle
	p.idle = nil
	p.mu.Unlock()
	if h != nil {
		h.stop()
	}
	p.stop()
	p.lock.Release()
	return nil
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// Capabilities implements providers.Provider.
func (p *Provider) Capabilities() providers.Capabilities { return Capabilities() }

// helper is one clawgate-whatsapp process with its session open.
type helper struct {
	p    *Provider
	proc *ipc.Process
	conn *ipc.Conn

	mu  sync.Mutex // serialises login mirroring
	seq uint64     // the last LoginStatus.Seq mirrored
}

// start starts a helper and opens the session in it.
func (p *Provider) start() (*helper, error) {
	h := &helper{p: p}
	ctx, cancel := context.WithTimeout(p.ctx, openTimeout)
	defer cancel()
	// The helper logs JSON records on stderr; its logger names the channel.
	proc, err := ipc.Start(p.ctx, HelperName, ipc.StartOptions{Handler: h.serve,
		Stderr: ipc.NewLogWriter(p.cfg.Logger, "whatsapp helper")})
	if err != nil {
		return nil, fmt.Errorf("whatsapp: the WhatsApp session runs in a separate process: %w", err)
	}
	h.proc, h.conn = proc, proc.Conn()
	level := slog.LevelInfo
	if p.log.Enabled(ctx, slog.LevelDebug) {
		level = slog.LevelDebug
	}
	params := OpenParams{Version: WireVersion, Dir: p.cfg.Dir, QueueSize: p.cfg.QueueSize, LogLevel: level, Test: p.cfg.Test}
	if err := h.conn.Call(ctx, MethodOpen, params, nil, p.lock.File()); err != nil {
		h.stop()
		return nil, fmt.Errorf("whatsapp: open the session in %s: %w", HelperName, fromWire(err))
	}
	return h, nil
}

// stop closes the helper's connection and waits for it to exit; what it
// still sends is ignored.
func (h *helper) stop() {
	if err := h.proc.Stop(helperStopTimeout); err != nil {
		h.p.log.Warn(HelperName+" did not stop cleanly", "err", err)
	}
	h.mu.Lock()
	h.seq = ^uint64(0)
	h.mu.Unlock()
}

// acquire returns the idle helper, or starts one.
func (p *Provider) acquire() (*helper, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errClosed
	}
	h := p.idle
	p.idle = nil
	p.mu.Unlock()
	if h != nil {
		select {
		case <-h.proc.Done():
			h.stop() // it died while idle
		default:
			return h, nil
		}
	}
	return p.start()
}

// runEnded is called once a Run's helper has exited: a link it was
// showing ends.
func (p *Provider) runEnded() {
	p.board.Update(func(st *LoginStatus) {
		st.Connected = false
		if st.State == LinkQR || st.State == LinkPaired {
			st.State, st.QR, st.Message = LinkFailed, "", "the account stopped while linking"
		}
	})
}

// current returns the running helper and the Run's sink.
func (p *Provider) current() (*helper, providers.Sink) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running, p.sink
}

// serve answers the helper's calls.
func (h *helper) serve(ctx context.Context, req *ipc.Request) (any, error) {
	for _, f := range req.Files {
		f.Close() // the helper sends none
	}
	p := h.p
	switch req.Method {
	case MethodDeliver:
		var in providers.Inbound
		if err := json.Unmarshal(req.Params, &in); err != nil {
			return nil, err
		}
		cur, sink := p.current()
		if cur != h || sink == nil {
			return nil, ErrNotRunning
		}
		return nil, sink.Deliver(ctx, in)
	case MethodState:
		var sp StateParams
		if err := json.Unmarshal(req.Params, &sp); err != nil {
			return nil, err
		}
		cur, sink := p.current()
		if cur != h || sink == nil {
			return nil, nil
		}
		var err error
		if sp.Error != "" {
			err = errors.New(sp.Error)
		}
		sink.SetState(sp.State, err)
		return nil, nil
	case MethodLogin:
		var st LoginStatus
		if err := json.Unmarshal(req.Params, &st); err != nil {
			return nil, err
		}
		h.mirror(st)
		return nil, nil
	}
	return nil, fmt.Errorf("whatsapp: unknown method %q", req.Method)
}

// mirror publishes the helper's login status on the gateway's board, in
// the helper's order.
func (h *helper) mirror(st LoginStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st.Seq <= h.seq {
		return
	}
	h.seq = st.Seq
	h.p.board.Update(func(cur *LoginStatus) { *cur = st })
}

// Run implements providers.Provider: it runs the device in a helper until
// ctx ends (nil) or the connection is lost or the helper exits (an error,
// for the Supervisor to restart it with a new helper).
func (p *Provider) Run(ctx context.Context, sink providers.Sink) error {
	h, err := p.acquire()
	if err != nil {
		return err
	}
	defer p.runEnded()
	defer h.stop()
	p.mu.Lock()
	p.running, p.sink = h, sink
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.running, p.sink = nil, nil
		p.mu.Unlock()
	}()
	err = h.conn.Call(ctx, MethodRun, nil, nil)
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, ipc.ErrClosed):
		return fmt.Errorf("whatsapp: %s exited", HelperName)
	}
	return fromWire(err)
}

// Send implements providers.Provider: one text to a phone number, a LID
// or a group, through the running helper.
func (p *Provider) Send(ctx context.Context, msg providers.Outbound) (providers.Result, error) {
	if _, _, err := ParseDestination(msg.To); err != nil {
		return providers.Result{}, fmt.Errorf("%w: %v", providers.ErrBadOutbound, err)
	}
	h, _ := p.current()
	if h == nil {
		return providers.Result{}, errNotConnected
	}
	var res providers.Result
	if err := h.conn.Call(ctx, MethodSend, msg, &res); err != nil {
		if errors.Is(err, ipc.ErrClosed) {
			return providers.Result{}, errNotConnected
		}
		return providers.Result{}, fromWire(err)
	}
	return res, nil
}

// Probe implements providers.Prober from the live state; it sends nothing.
func (p *Provider) Probe(ctx context.Context) (providers.ProbeResult, error) {
	h, _ := p.current()
	if h == nil {
		st := p.board.Get()
		if st.State == LinkLinked {
			return providers.ProbeResult{BotID: st.Account}, errNotConnected
		}
		if st.State == LinkUnknown {
			return providers.ProbeResult{}, errors.New("whatsapp: the account has not started")
		}
		return providers.ProbeResult{}, &NeedsLinkError{Reason: "no linked device"}
	}
	var r ProbeReply
	if err := h.conn.Call(ctx, MethodProbe, nil, &r); err != nil {
		return providers.ProbeResult{}, fmt.Errorf("whatsapp: probe: %w", fromWire(err))
	}
	if r.Error != "" {
		return r.Result, errors.New(r.Error)
	}
	return r.Result, nil
}

// LoginStatus returns the current linking state.
func (p *Provider) LoginStatus() LoginStatus { return p.board.Get() }

// WatchLogin calls fn (which must not block) on every change of the
// linking state, QR rotations included.
func (p *Provider) WatchLogin(fn func(LoginStatus)) (stop func()) { return p.board.Watch(fn) }

// StartLogin asks the running account for a QR code and waits (bounded by
// ctx) for it. A linked device is reported as such unless force is set, in
// which case it is unlinked first and a new link starts. ErrNotRunning
// when no Run is active.
func (p *Provider) StartLogin(ctx context.Context, force bool) (LoginStatus, error) {
	h, _ := p.current()
	if h == nil {
		return p.board.Get(), ErrNotRunning
	}
	var st LoginStatus
	if err := h.conn.Call(ctx, MethodLoginStart, LoginStartParams{Force: force}, &st); err != nil {
		if errors.Is(err, ipc.ErrClosed) {
			return p.board.Get(), ErrNotRunning
		}
		return p.board.Get(), fromWire(err)
	}
	return st, nil
}

// WaitLogin waits (bounded by ctx) until the QR code differs from
// currentQR or linking ends, and returns the state then.
func (p *Provider) WaitLogin(ctx context.Context, currentQR string) LoginStatus {
	h, _ := p.current()
	if h == nil {
		return p.board.Get()
	}
	var st LoginStatus
	if err := h.conn.Call(ctx, MethodLoginWait, LoginWaitParams{CurrentQR: currentQR}, &st); err != nil {
		return p.board.Get()
	}
	return st
}

// Link links a device without a gateway (the CLI, when no gateway holds the
// session): it shows codes through onStatus until the phone scans one and
// the device has logged in, every code expired (ErrQRTimeout), or ctx
// ends. A linked device is ErrAlreadyLinked unless force is set, in which
// case it is unlinked first.
func (p *Provider) Link(ctx context.Context, force bool, onStatus func(LoginStatus)) error {
	h, err := p.acquire()
	if err != nil {
		return err
	}
	defer h.stop()
	if onStatus != nil {
		stop := p.board.Watch(onStatus)
		defer stop()
	}
	if err := h.conn.Call(ctx, MethodLink, LinkParams{Force: force}, nil); err != nil {
		if errors.Is(err, ipc.ErrClosed) {
			return fmt.Errorf("whatsapp: %s exited while linking", HelperName)
		}
		return fromWire(err)
	}
	return nil
}

// Logout implements providers.LogoutProvider: the helper asks WhatsApp to
// unlink the device, then deletes the local session whatever the answer.
func (p *Provider) Logout(ctx context.Context) error {
	h, err := p.acquire()
	if err != nil {
		return err
	}
	defer h.stop()
	if err := h.conn.Call(ctx, MethodLogout, nil, nil); err != nil {
		return fromWire(err)
	}
	return nil
}
