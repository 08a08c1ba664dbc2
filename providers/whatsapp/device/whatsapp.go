package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"

	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/whatsapp"
)

// Defaults.
const (
	// DefaultQueueSize bounds the inbound event queue between whatsmeow's
	// handler and Run.
	DefaultQueueSize = 256
	// defaultConnectTimeout bounds a login, and the wait for the first QR
	// code when linking.
	defaultConnectTimeout = 30 * time.Second
	// keepAliveMaxFail ends a run whose keepalives have failed this long;
	// the Supervisor reconnects it.
	keepAliveMaxFail = 2 * time.Minute
	// remoteLogoutTimeout bounds the unlink request of Logout.
	remoteLogoutTimeout = 15 * time.Second
)

// Config configures one WhatsApp account.
type Config struct {
	// Dir holds the session: session.db (mode 0600) and session.lock. It
	// is created with mode 0700; one account per directory.
	Dir string
	// Lock, when set, is Dir's session.lock already locked by the process
	// that started this one (whatsapp.AdoptLock); otherwise New locks the
	// directory itself.
	Lock   *os.File
	Logger *slog.Logger
	// QueueSize bounds the inbound queue (DefaultQueueSize). When it is
	// full, messages are left unacknowledged for WhatsApp to redeliver.
	QueueSize int
	// QRFirst and QRNext are how long the first and each later QR code is
	// shown (60 s and 20 s, as WhatsApp Web does).
	QRFirst, QRNext time.Duration
	// ConnectTimeout bounds a login (30 s).
	ConnectTimeout time.Duration
	// HTTPClient carries the WebSocket and media requests. Leave it nil in
	// production; tests point it at a loopback fake.
	HTTPClient *http.Client
}

// Provider is one linked WhatsApp device.
type Provider struct {
	cfg   Config
	log   *slog.Logger
	lock  *whatsapp.SessionLock
	login *whatsapp.LoginBoard

	// storeMu is held by whoever has the session database open: Run, Link
	// or Logout. whatsmeow's store is not shared between clients.
	storeMu sync.Mutex

	mu       sync.Mutex
	closed   bool
	running  bool              // Run is active and can take link requests
	cli      *whatsmeow.Client // the logged-in client, for Send
	linkWant chan linkRequest  // StartLogin → Run
}

type linkRequest struct {
	force bool
}

var (
	_ providers.Provider       = (*Provider)(nil)
	_ providers.Prober         = (*Provider)(nil)
	_ providers.LogoutProvider = (*Provider)(nil)
)

// New checks cfg, creates the session directory and takes the session
// lock (or adopts Config.Lock), which it holds until Close (or the process
// exits). A second process, or a second New for the same directory, gets a
// *whatsapp.LockedError. It makes no network call.
func New(cfg Config) (*Provider, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.QRFirst <= 0 {
		cfg.QRFirst = 60 * time.Second
	}
	if cfg.QRNext <= 0 {
		cfg.QRNext = 20 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	var lock *whatsapp.SessionLock
	var err error
	if cfg.Lock != nil {
		if err := whatsapp.PrepareDir(cfg.Dir); err != nil {
			return nil, err
		}
		lock, err = whatsapp.AdoptLock(cfg.Dir, cfg.Lock)
	} else {
		lock, err = whatsapp.LockSession(cfg.Dir)
	}
	if err != nil {
		return nil, err
	}
	return &Provider{cfg: cfg, log: cfg.Logger.With("channel", whatsapp.Name), lock: lock, login: whatsapp.NewLoginBoard(),
		linkWant: make(chan linkRequest, 1)}, nil
}

// Close releases the session lock. The provider must not be running.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.lock.Release()
	}
	return nil
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return whatsapp.Name }

// Capabilities implements providers.Provider.
func (p *Provider) Capabilities() providers.Capabilities { return whatsapp.Capabilities() }

var (
	errNotConnected   = errors.New("whatsapp: not connected")
	errDisconnected   = errors.New("whatsapp: connection lost")
	errStreamReplaced = errors.New("whatsapp: another client opened this session (stream replaced); " +
		"stop it, then restart clawgate")
	errOutdated = errors.New("whatsapp: WhatsApp refused this client version (405 outdated); upgrade clawgate")
	errBusy     = errors.New("whatsapp: the session is busy (a link or logout is in progress)")
)

// Run implements providers.Provider: it opens the session, logs in (or
// waits for a link when there is no device), delivers messages and returns
// when the connection is lost, for the Supervisor to restart it.
func (p *Provider) Run(ctx context.Context, sink providers.Sink) error {
	if !p.storeMu.TryLock() {
		return errBusy
	}
	defer p.storeMu.Unlock()
	st, err := openStore(ctx, p.cfg.Dir, p.log)
	if err != nil {
		return err
	}
	defer st.close()
	p.setRunning(true)
	defer p.setRunning(false)
	s := newSession(p, st, sink, true)
	defer s.detach()

	reason := "not linked yet"
	for {
		if st.dev.ID == nil {
			if err := s.awaitLink(ctx, reason); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		} else if err := s.connect(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if r, ok := relinkReason(err); ok {
				reason = r
				s.relinked(r)
				continue
			}
			return s.finish(ctx, err)
		}
		err := s.serve(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if r, ok := relinkReason(err); ok {
			reason = r
			s.relinked(r)
			continue
		}
		return s.finish(ctx, err)
	}
}

// finish reports err; a ban is waited out here (reconnecting during a ban
// would only prolong it) before the Supervisor's backoff takes over.
func (s *session) finish(ctx context.Context, err error) error {
	s.detach()
	var ban *whatsapp.BannedError
	if errors.As(err, &ban) {
		s.sink.SetState(providers.StateReconnecting, err)
		t := time.NewTimer(time.Until(ban.Expire))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	return err
}

func (p *Provider) setRunning(on bool) {
	p.mu.Lock()
	p.running = on
	p.mu.Unlock()
	if !on {
		// A link request nobody will serve must not linger.
		select {
		case <-p.linkWant:
		default:
		}
		p.login.Update(func(st *whatsapp.LoginStatus) {
			st.Connected = false
			if st.State == whatsapp.LinkQR || st.State == whatsapp.LinkPaired {
				st.State, st.QR, st.Message = whatsapp.LinkFailed, "", "the account stopped while linking"
			}
		})
	}
}

func (p *Provider) setClient(cli *whatsmeow.Client) {
	p.mu.Lock()
	p.cli = cli
	p.mu.Unlock()
}

func (p *Provider) client() *whatsmeow.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cli
}

// Send implements providers.Provider: one text to a phone number, a LID
// or a group.
func (p *Provider) Send(ctx context.Context, msg providers.Outbound) (providers.Result, error) {
	user, server, err := whatsapp.ParseDestination(msg.To)
	if err != nil {
		return providers.Result{}, fmt.Errorf("%w: %v", providers.ErrBadOutbound, err)
	}
	jid := types.NewJID(user, server)
	cli := p.client()
	if cli == nil {
		return providers.Result{}, errNotConnected
	}
	resp, err := cli.SendMessage(ctx, jid, &waE2E.Message{Conversation: proto.String(msg.Text)})
	if err != nil {
		return providers.Result{}, fmt.Errorf("whatsapp: send: %w", err)
	}
	return providers.Result{MessageID: resp.ID, ChatID: msg.To}, nil
}

// Probe implements providers.Prober from the live state; it sends nothing.
func (p *Provider) Probe(context.Context) (providers.ProbeResult, error) {
	st := p.login.Get()
	switch {
	case st.Connected:
		return providers.ProbeResult{OK: true, BotID: st.Account}, nil
	case st.State == whatsapp.LinkLinked:
		return providers.ProbeResult{BotID: st.Account}, errNotConnected
	case st.State == whatsapp.LinkUnknown:
		return providers.ProbeResult{}, errors.New("whatsapp: the account has not started")
	}
	return providers.ProbeResult{}, &whatsapp.NeedsLinkError{Reason: "no linked device"}
}

// LoginStatus returns the current linking state.
func (p *Provider) LoginStatus() whatsapp.LoginStatus { return p.login.Get() }

// WatchLogin calls fn (which must not block) on every change of the
// linking state, QR rotations included.
func (p *Provider) WatchLogin(fn func(whatsapp.LoginStatus)) (stop func()) { return p.login.Watch(fn) }

// StartLogin asks the running account for a QR code and waits (bounded by
// ctx) for it. A linked device is reported as such unless force is set, in
// which case it is unlinked first and a new link starts.
func (p *Provider) StartLogin(ctx context.Context, force bool) (whatsapp.LoginStatus, error) {
	p.mu.Lock()
	running := p.running
	p.mu.Unlock()
	if !running {
		return p.login.Get(), whatsapp.ErrNotRunning
	}
	cur := p.login.Get()
	if cur.State == whatsapp.LinkLinked && !force {
		cur.Message = "WhatsApp is already linked"
		return cur, nil
	}
	if cur.State == whatsapp.LinkQR && !force {
		return cur, nil // a link is already showing codes
	}
	select {
	case p.linkWant <- linkRequest{force: force}:
	default: // one is pending already
	}
	st := p.login.Wait(ctx, func(st whatsapp.LoginStatus) bool {
		return st.Seq > cur.Seq && (st.State == whatsapp.LinkQR || st.Terminal())
	})
	return st, nil
}

// WaitLogin waits (bounded by ctx) until the QR code differs from
// currentQR or linking ends, and returns the state then.
func (p *Provider) WaitLogin(ctx context.Context, currentQR string) whatsapp.LoginStatus {
	return p.login.Wait(ctx, func(st whatsapp.LoginStatus) bool {
		return st.Terminal() || (st.State == whatsapp.LinkQR && st.QR != currentQR)
	})
}

// Link links a device without a gateway (the CLI, when no gateway holds the
// session): it shows codes through onStatus until the phone scans one and
// the device has logged in, every code expired (whatsapp.ErrQRTimeout), or ctx
// ends. A linked device is an error unless force is set, in which case it
// is unlinked first. Messages that arrive meanwhile are left for the
// gateway: they are not acknowledged.
func (p *Provider) Link(ctx context.Context, force bool, onStatus func(whatsapp.LoginStatus)) error {
	if !p.storeMu.TryLock() {
		return errBusy
	}
	defer p.storeMu.Unlock()
	st, err := openStore(ctx, p.cfg.Dir, p.log)
	if err != nil {
		return err
	}
	defer st.close()
	s := newSession(p, st, nil, false)
	defer s.detach()
	if st.dev.ID != nil {
		if !force {
			return whatsapp.ErrAlreadyLinked
		}
		s.unlink(ctx)
	}
	if onStatus != nil {
		stop := p.login.Watch(onStatus)
		defer stop()
	}
	if err := s.link(ctx); err != nil {
		return err
	}
	p.login.Update(func(st *whatsapp.LoginStatus) { st.Connected = false })
	return nil
}

// Logout implements providers.LogoutProvider: it asks WhatsApp to unlink
// the device, then deletes the local session whatever the answer (the
// phone's "Linked devices" list shows a device that could not be told).
func (p *Provider) Logout(ctx context.Context) error {
	p.storeMu.Lock()
	defer p.storeMu.Unlock()
	st, err := openStore(ctx, p.cfg.Dir, p.log)
	if err != nil {
		return err
	}
	defer st.close()
	s := newSession(p, st, nil, false)
	defer s.detach()
	if st.dev.ID != nil {
		s.unlink(ctx)
	}
	p.login.Update(func(st *whatsapp.LoginStatus) {
		*st = whatsapp.LoginStatus{State: whatsapp.LinkNeeded, Message: "logged out", Seq: st.Seq}
	})
	return nil
}
