package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/whatsapp"
)

// ctlQueueSize bounds the connection events (connected, disconnected,
// logged out, QR, ...) queued for Run. They come a few per connection.
const ctlQueueSize = 64

// session is one open store and the whatsmeow client currently using it.
type session struct {
	p      *Provider
	st     *sessionStore
	sink   providers.Sink // nil for Link and Logout
	accept bool           // take messages (Run) or leave them unacknowledged
	log    *slog.Logger

	cli    *whatsmeow.Client
	cancel context.CancelFunc // ends the client's connection context
	// jid is the linked device, read from the store before a client runs
	// or taken from PairSuccess: once a client runs, whatsmeow's goroutines
	// write the device (a logout clears its ID), so Run never reads it.
	jid     types.JID
	msgs    chan *events.Message
	ctl     chan any
	refused atomic.Int64 // messages refused because the queue was full
}

func newSession(p *Provider, st *sessionStore, sink providers.Sink, accept bool) *session {
	return &session{p: p, st: st, sink: sink, accept: accept, log: p.log}
}

// attach builds a client for the current device. Each client gets its own
// queues, so events of a discarded client never reach the next one.
func (s *session) attach(ctx context.Context) context.Context {
	s.detach()
	cli := whatsmeow.NewClient(s.st.dev, newWALog(s.log, "client"))
	cli.EnableAutoReconnect = false // the Supervisor reconnects, with backoff
	cli.EnableDecryptedEventBuffer = true
	cli.ManualHistorySyncDownload = true
	if h := s.p.cfg.HTTPClient; h != nil {
		cli.SetPreLoginHTTPClient(h)
		cli.SetWebsocketHTTPClient(h)
		cli.SetMediaHTTPClient(h)
	}
	s.msgs = make(chan *events.Message, s.p.cfg.QueueSize)
	s.ctl = make(chan any, ctlQueueSize)
	cli.AddEventHandlerWithSuccessStatus(s.handler(s.msgs, s.ctl))
	// The connection context outlives ctx until detach has disconnected:
	// whatsmeow's read pump, woken by a cancelled context, races with
	// Disconnect on the socket's state (an unsynchronised read of
	// FrameSocket.closed inside whatsmeow).
	var cctx context.Context
	cctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	cli.BackgroundEventCtx = cctx
	s.cli = cli
	return cctx
}

// detach stops the client: no more events, connection closed.
func (s *session) detach() {
	if s.cli == nil {
		return
	}
	s.p.setClient(nil)
	s.cli.RemoveEventHandlers()
	// Disconnect before cancelling the connection context: the other order
	// lets whatsmeow's read pump close the socket while Disconnect is
	// stopping it, a data race inside whatsmeow (NoiseSocket.Stop writes
	// FrameSocket.OnDisconnect without the socket's lock).
	s.cli.Disconnect()
	s.cancel()
	s.cli = nil
}

// handler is whatsmeow's event handler. It runs on whatsmeow's goroutines
// and never blocks: messages go to a bounded queue, and when that is full
// the message is refused (false), so whatsmeow does not acknowledge it and
// WhatsApp delivers it again later.
func (s *session) handler(msgs chan<- *events.Message, ctl chan<- any) func(any) bool {
	return func(evt any) bool {
		switch ev := evt.(type) {
		case *events.Message:
			if !s.accept {
				return false
			}
			select {
			case msgs <- ev:
				return true
			default:
				if n := s.refused.Add(1); n == 1 || n%100 == 0 {
					s.log.Warn("inbound queue full; message left for WhatsApp to redeliver", "refused", n)
				}
				return false
			}
		case *events.UndecryptableMessage:
			s.log.Warn("undecryptable message", "chat", ev.Info.Chat.String(), "id", ev.Info.ID)
		case *events.Connected, *events.Disconnected, *events.LoggedOut, *events.StreamReplaced,
			*events.TemporaryBan, *events.ClientOutdated, *events.ConnectFailure, *events.StreamError,
			*events.KeepAliveTimeout, *events.QR, *events.PairSuccess, *events.PairError,
			*events.QRScannedWithoutMultidevice, *events.CATRefreshError, *events.ManualLoginReconnect:
			select {
			case ctl <- evt:
			default:
				s.log.Error("connection event queue full; event dropped", "event", fmt.Sprintf("%T", evt))
			}
		}
		// Receipts, presence, history sync, app state and the rest are not
		// used by the gateway.
		return true
	}
}

// relinkError ends a run whose device was unlinked; Run then waits for a
// new link instead of reconnecting.
type relinkError struct{ reason string }

func (e *relinkError) Error() string { return "whatsapp: device unlinked: " + e.reason }

func relinkReason(err error) (string, bool) {
	var re *relinkError
	if errors.As(err, &re) {
		return re.reason, true
	}
	return "", false
}

// relinked forgets the unlinked device: new keys for the next QR, and the
// state every watcher sees says it needs a link.
func (s *session) relinked(reason string) {
	s.detach()
	s.log.Warn("WhatsApp device unlinked; needs re-link", "reason", reason)
	s.forget()
	s.p.login.Update(func(st *whatsapp.LoginStatus) {
		*st = whatsapp.LoginStatus{State: whatsapp.LinkNeeded, Message: "needs re-link: " + reason, Seq: st.Seq}
	})
}

// forget deletes the linked device's row (whatsmeow deletes it on a logout
// too, but with a context detach has just cancelled) and starts over with
// new keys. The old device value stays with the discarded client.
func (s *session) forget() {
	if !s.jid.IsEmpty() {
		jid := s.jid
		if err := s.st.container.DeleteDevice(context.Background(), &store.Device{ID: &jid}); err != nil {
			s.log.Warn("could not delete the unlinked session", "err", err)
		}
	}
	s.jid = types.EmptyJID
	s.st.fresh()
}

// control turns a connection event into an error that ends the run, or
// nil when the run goes on.
func (s *session) control(ev any) error {
	switch ev := ev.(type) {
	case *events.Connected:
		if s.sink != nil {
			s.sink.SetState(providers.StateConnected, nil)
		}
	case *events.Disconnected:
		return errDisconnected
	case *events.LoggedOut:
		return &relinkError{reason: logoutReason(ev)}
	case *events.StreamReplaced:
		return providers.Permanent(errStreamReplaced)
	case *events.ClientOutdated:
		return providers.Permanent(errOutdated)
	case *events.TemporaryBan:
		return &whatsapp.BannedError{Code: ev.Code.String(), Expire: time.Now().Add(ev.Expire)}
	case *events.ConnectFailure:
		return fmt.Errorf("whatsapp: connect failure %d", int(ev.Reason))
	case *events.StreamError:
		return fmt.Errorf("whatsapp: stream error %q", ev.Code)
	case *events.CATRefreshError:
		return errors.New("whatsapp: session token refresh failed")
	case *events.KeepAliveTimeout:
		if time.Since(ev.LastSuccess) > keepAliveMaxFail {
			return fmt.Errorf("whatsapp: no keepalive answer for %s", time.Since(ev.LastSuccess).Round(time.Second))
		}
	}
	return nil
}

func logoutReason(ev *events.LoggedOut) string {
	switch ev.Reason {
	case events.ConnectFailureLoggedOut, 0:
		return "logged out from the phone"
	case events.ConnectFailureMainDeviceGone:
		return "the phone's WhatsApp account is gone"
	case events.ConnectFailureUnknownLogout:
		return "logged out by WhatsApp"
	}
	return "logged out (" + ev.Reason.String() + ")"
}

// connect logs in with the linked device and returns once whatsmeow says
// Connected (prekeys checked, presence set).
func (s *session) connect(ctx context.Context) error {
	s.jid = s.st.dev.GetJID()
	cctx := s.attach(ctx)
	deadline := time.NewTimer(s.p.cfg.ConnectTimeout)
	defer deadline.Stop()
	if err := s.cli.ConnectContext(cctx); err != nil {
		return fmt.Errorf("whatsapp: connect: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return errors.New("whatsapp: timed out logging in")
		case m := <-s.msgs: // offline messages can precede Connected
			s.deliver(ctx, m)
		case ev := <-s.ctl:
			if _, ok := ev.(*events.Connected); ok {
				return nil
			}
			if err := s.control(ev); err != nil {
				return err
			}
		}
	}
}

// serve runs a logged-in connection until it ends.
func (s *session) serve(ctx context.Context) error {
	s.p.setClient(s.cli)
	defer s.p.setClient(nil)
	s.p.login.Update(func(st *whatsapp.LoginStatus) {
		*st = whatsapp.LoginStatus{State: whatsapp.LinkLinked, Connected: true, Account: phoneID(s.jid.ToNonAD()),
			Message: "connected", Seq: st.Seq}
	})
	defer s.p.login.Update(func(st *whatsapp.LoginStatus) { st.Connected = false })
	s.sink.SetState(providers.StateConnected, nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-s.msgs:
			s.deliver(ctx, m)
		case ev := <-s.ctl:
			if err := s.control(ev); err != nil {
				return err
			}
		case req := <-s.p.linkWant:
			if !req.force {
				continue // already linked; StartLogin said so
			}
			s.log.Info("unlinking the device for a forced re-link")
			s.unlink(ctx)
			select {
			case s.p.linkWant <- linkRequest{}:
			default:
			}
			return &relinkError{reason: "re-link requested"}
		}
	}
}

// unlink tells WhatsApp to remove the device (bounded) and deletes the
// local session either way.
func (s *session) unlink(ctx context.Context) {
	uctx, cancel := context.WithTimeout(ctx, remoteLogoutTimeout)
	defer cancel()
	cli := s.cli
	if cli == nil || !cli.IsLoggedIn() {
		if err := s.connect(uctx); err != nil {
			s.log.Warn("could not reach WhatsApp to unlink; remove the device under Linked devices on the phone", "err", err)
		}
		cli = s.cli
	}
	if cli != nil && cli.IsLoggedIn() {
		if err := cli.Logout(uctx); err != nil {
			s.log.Warn("WhatsApp did not confirm the unlink; remove the device under Linked devices on the phone", "err", err)
		}
	}
	s.detach()
	s.forget()
}

// awaitLink reports the account as needing a link and serves link
// requests until one succeeds (nil: linked and logged in) or ctx ends.
func (s *session) awaitLink(ctx context.Context, reason string) error {
	for {
		s.sink.SetState(providers.StateReconnecting, &whatsapp.NeedsLinkError{Reason: reason})
		s.p.login.Update(func(st *whatsapp.LoginStatus) {
			if st.State != whatsapp.LinkTimeout && st.State != whatsapp.LinkFailed {
				*st = whatsapp.LoginStatus{State: whatsapp.LinkNeeded, Message: "needs re-link: " + reason, Seq: st.Seq}
			}
		})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.p.linkWant:
		}
		err := s.link(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var perm *providers.PermanentError
		if errors.As(err, &perm) {
			return err
		}
		s.log.Info("linking ended without a device", "err", err)
	}
}

// link connects without a device, shows the QR codes WhatsApp hands out,
// rotating them as they expire, and returns nil once the phone has scanned
// one and the new device has logged in.
func (s *session) link(ctx context.Context) (err error) {
	board := s.p.login
	fail := func(state whatsapp.LinkState, e error) error {
		s.detach()
		board.Update(func(st *whatsapp.LoginStatus) {
			*st = whatsapp.LoginStatus{State: state, Message: e.Error(), Seq: st.Seq}
		})
		return e
	}
	board.Update(func(st *whatsapp.LoginStatus) {
		*st = whatsapp.LoginStatus{State: whatsapp.LinkNeeded, Message: "connecting to WhatsApp for a QR code", Seq: st.Seq}
	})
	cctx := s.attach(ctx)
	if err := s.cli.ConnectContext(cctx); err != nil {
		return fail(whatsapp.LinkFailed, fmt.Errorf("whatsapp: connect for linking: %w", err))
	}
	var codes []string
	rotate := time.NewTimer(time.Hour)
	rotate.Stop()
	defer rotate.Stop()
	deadline := time.NewTimer(s.p.cfg.ConnectTimeout) // until the first code, then after the scan
	defer deadline.Stop()
	show := func(code string, d time.Duration) {
		board.Update(func(st *whatsapp.LoginStatus) {
			*st = whatsapp.LoginStatus{State: whatsapp.LinkQR, QR: code, QRExpires: time.Now().Add(d),
				Message: "scan this code in WhatsApp: Settings > Linked devices > Link a device", Seq: st.Seq}
		})
		rotate.Reset(d)
	}
	paired := false
	for {
		select {
		case <-ctx.Done():
			return fail(whatsapp.LinkFailed, ctx.Err())
		case <-deadline.C:
			if paired {
				return fail(whatsapp.LinkFailed, errors.New("whatsapp: linked, but the login did not complete"))
			}
			return fail(whatsapp.LinkFailed, errors.New("whatsapp: WhatsApp sent no QR code"))
		case <-rotate.C:
			if len(codes) == 0 {
				return fail(whatsapp.LinkTimeout, whatsapp.ErrQRTimeout)
			}
			show(codes[0], s.p.cfg.QRNext)
			codes = codes[1:]
		case m := <-s.msgs:
			s.deliver(ctx, m)
		case ev := <-s.ctl:
			switch ev := ev.(type) {
			case *events.QR:
				if paired || len(ev.Codes) == 0 {
					continue
				}
				deadline.Stop()
				show(ev.Codes[0], s.p.cfg.QRFirst)
				codes = append([]string(nil), ev.Codes[1:]...)
			case *events.PairSuccess:
				paired = true
				s.jid = ev.ID
				codes = nil
				rotate.Stop()
				deadline.Reset(s.p.cfg.ConnectTimeout)
				s.log.Info("WhatsApp device linked", "account", phoneID(ev.ID.ToNonAD()), "platform", ev.Platform)
				board.Update(func(st *whatsapp.LoginStatus) {
					*st = whatsapp.LoginStatus{State: whatsapp.LinkPaired, Account: phoneID(ev.ID.ToNonAD()),
						Message: "linked; logging in", Seq: st.Seq}
				})
			case *events.PairError:
				return fail(whatsapp.LinkFailed, fmt.Errorf("whatsapp: linking failed: %w", ev.Error))
			case *events.QRScannedWithoutMultidevice:
				board.Update(func(st *whatsapp.LoginStatus) {
					st.Message = "the phone has multi-device off; turn it on and scan again"
				})
			case *events.Connected:
				if paired {
					return nil
				}
			default:
				if cerr := s.control(ev); cerr != nil {
					if _, ok := relinkReason(cerr); ok {
						cerr = errors.New("whatsapp: the phone refused the link")
					}
					var perm *providers.PermanentError
					if errors.As(cerr, &perm) {
						fail(whatsapp.LinkFailed, cerr)
						return cerr
					}
					return fail(whatsapp.LinkFailed, fmt.Errorf("whatsapp: linking interrupted: %w", cerr))
				}
			}
		}
	}
}
