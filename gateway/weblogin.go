package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/skip2/go-qrcode"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/providers"
)

// WebLoginer is an optional facet of Options.Providers: channels linked as
// a device by scanning a QR code (WhatsApp). web.login.start and
// web.login.wait call it; the gateway renders the codes as PNG data URLs.
// Implementations resolve an empty channel or account to their default.
type WebLoginer interface {
	// WebLoginStart asks for a QR code, waiting up to ctx for it. A linked
	// account is reported as Connected unless force is set, in which case
	// it is unlinked and a new code is issued.
	WebLoginStart(ctx context.Context, channel, accountID string, force bool) (WebLoginState, error)
	// WebLoginWait waits up to ctx for a code other than currentQR, or for
	// the link to succeed or fail.
	WebLoginWait(ctx context.Context, channel, accountID, currentQR string) (WebLoginState, error)
	// WebLoginStatus is the state now.
	WebLoginStatus(channel, accountID string) (WebLoginState, error)
	// WatchWebLogin calls fn, which must not block, on every change.
	WatchWebLogin(fn func(WebLoginState)) (stop func())
}

// WebLoginState is one account's linking state. QR is the raw code: it
// is returned to the admin who asked for it and never logged or broadcast.
type WebLoginState struct {
	Channel   string
	AccountID string
	// Status: "needs-relink", "qr", "paired", "connected", "linked"
	// (linked, not connected), "timeout" or "failed".
	Status    string
	Connected bool
	QR        string
	Message   string
}

// ErrWebLoginUnsupported is returned by a WebLoginer for a channel that
// has no QR login.
var ErrWebLoginUnsupported = errors.New("web login is not supported by this channel")

// ErrWebLoginNotRunning is returned when the account is not running (it
// was logged out with channels.logout, or failed).
var ErrWebLoginNotRunning = errors.New("the channel account is not running; restart the gateway to link it")

// EventWebLogin reports linking progress: pairing success ("connected"),
// an expired code ("timeout"), an unlinked device ("needs-relink"). Only
// admin connections receive it; it never carries the code.
const EventWebLogin = "web.login"

// Web login limits.
const (
	webLoginStartDefault = 30 * time.Second
	webLoginWaitDefault  = 120 * time.Second
	webLoginMaxTimeout   = 5 * time.Minute
	// qrPNGSize is the side of the PNG, in pixels.
	qrPNGSize = 256
)

func (s *Server) registerWebLogin() {
	s.handle("web.login.start", true, s.methodWebLoginStart)
	s.handle("web.login.wait", true, s.methodWebLoginWait)
}

type webLoginParams struct {
	Channel          string `json:"channel"`
	AccountID        string `json:"accountId"`
	Force            bool   `json:"force"`
	TimeoutMs        *int64 `json:"timeoutMs"`
	SessionKey       string `json:"sessionKey"`
	CurrentQRDataURL string `json:"currentQrDataUrl"`
}

func (p *webLoginParams) timeout(def time.Duration) time.Duration {
	if p.TimeoutMs == nil {
		return def
	}
	return min(time.Duration(*p.TimeoutMs)*time.Millisecond, webLoginMaxTimeout)
}

// webLoginResult is the result of both methods, shaped like OpenClaw's
// ChannelLoginWithQrStartResult / ChannelLoginWithQrWaitResult.
type webLoginResult struct {
	QRDataURL string `json:"qrDataUrl,omitempty"`
	// QRCode is the code itself (clawgate's extension), for clients that
	// draw it themselves, such as `clawgate channels login` in a terminal.
	QRCode     string `json:"qrCode,omitempty"`
	Message    string `json:"message"`
	Connected  bool   `json:"connected"`
	SessionKey string `json:"sessionKey,omitempty"`
	Channel    string `json:"channel"`
	AccountID  string `json:"accountId"`
	Status     string `json:"status"`
}

func (s *Server) webLoginer(method string, raw json.RawMessage) (WebLoginer, *webLoginParams, error) {
	var p webLoginParams
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, nil, protocol.InvalidRequest("invalid " + method + " params: " + err.Error())
		}
	}
	wl, ok := s.opts.Providers.(WebLoginer)
	if !ok || s.opts.Providers == nil {
		return nil, nil, protocol.InvalidRequest("web login provider is not available")
	}
	return wl, &p, nil
}

func webLoginError(method string, p *webLoginParams, err error) error {
	switch {
	case errors.Is(err, ErrWebLoginUnsupported):
		return protocol.InvalidRequest("web login is not supported by provider " + quote(p.Channel))
	case errors.Is(err, providers.ErrUnknownAccount):
		what := "channel " + quote(p.Channel)
		if p.AccountID != "" {
			what += " account " + quote(p.AccountID)
		}
		return protocol.InvalidRequest("unknown " + what + " for web login")
	case errors.Is(err, ErrWebLoginNotRunning):
		return &protocol.Error{Code: protocol.ErrUnavailable, Message: method + ": " + err.Error()}
	}
	return &protocol.Error{Code: protocol.ErrUnavailable, Message: method + " failed: " + err.Error()}
}

// qrDataURL renders a code as a PNG data URL.
func qrDataURL(code string) (string, error) {
	png, err := qrcode.Encode(code, qrcode.Medium, qrPNGSize)
	if err != nil {
		return "", err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(png), nil
}

func (s *Server) webLoginResult(st WebLoginState) (webLoginResult, error) {
	res := webLoginResult{Message: st.Message, Connected: st.Connected, Channel: st.Channel,
		AccountID: st.AccountID, Status: st.Status}
	if st.QR != "" && !st.Connected {
		url, err := qrDataURL(st.QR)
		if err != nil {
			return res, &protocol.Error{Code: protocol.ErrUnavailable, Message: "could not render the QR code"}
		}
		res.QRDataURL, res.QRCode = url, st.QR
		res.SessionKey = "web-login:" + st.Channel + ":" + st.AccountID
	}
	if res.Message == "" {
		res.Message = st.Status
	}
	return res, nil
}

func (s *Server) methodWebLoginStart(ctx context.Context, c *Conn, raw json.RawMessage) (any, error) {
	wl, p, err := s.webLoginer("web.login.start", raw)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, p.timeout(webLoginStartDefault))
	defer cancel()
	st, err := wl.WebLoginStart(wctx, p.Channel, p.AccountID, p.Force)
	if err != nil {
		return nil, webLoginError("web.login.start", p, err)
	}
	c.log.Info("web login started", "channel", st.Channel, "account", st.AccountID, "status", st.Status, "force", p.Force)
	return s.webLoginResult(st)
}

func (s *Server) methodWebLoginWait(ctx context.Context, c *Conn, raw json.RawMessage) (any, error) {
	wl, p, err := s.webLoginer("web.login.wait", raw)
	if err != nil {
		return nil, err
	}
	if p.SessionKey != "" {
		// The key start handed out names the account; an explicit
		// accountId wins.
		ch, acct, ok := strings.Cut(strings.TrimPrefix(p.SessionKey, "web-login:"), ":")
		if !ok || !strings.HasPrefix(p.SessionKey, "web-login:") {
			return nil, protocol.InvalidRequest("invalid web.login.wait params: unknown sessionKey")
		}
		if p.Channel == "" {
			p.Channel = ch
		}
		if p.AccountID == "" {
			p.AccountID = acct
		}
	}
	// The client shows the code as a data URL; the one it shows is the
	// current code when it renders to the same URL.
	current := ""
	if p.CurrentQRDataURL != "" {
		st, err := wl.WebLoginStatus(p.Channel, p.AccountID)
		if err != nil {
			return nil, webLoginError("web.login.wait", p, err)
		}
		if st.QR != "" {
			if url, err := qrDataURL(st.QR); err == nil && url == p.CurrentQRDataURL {
				current = st.QR
			}
		}
	}
	wctx, cancel := context.WithTimeout(ctx, p.timeout(webLoginWaitDefault))
	defer cancel()
	st, err := wl.WebLoginWait(wctx, p.Channel, p.AccountID, current)
	if err != nil {
		return nil, webLoginError("web.login.wait", p, err)
	}
	res, err := s.webLoginResult(st)
	if err != nil {
		return nil, err
	}
	if res.QRDataURL == p.CurrentQRDataURL {
		res.QRDataURL, res.QRCode = "", "" // unchanged: the client keeps what it shows
	}
	return res, nil
}

// webLoginEvent is the payload of EventWebLogin.
type webLoginEvent struct {
	Channel   string `json:"channel"`
	AccountID string `json:"accountId"`
	Status    string `json:"status"`
	Connected bool   `json:"connected"`
	Message   string `json:"message,omitempty"`
	Ts        int64  `json:"ts"`
}

// watchWebLogin broadcasts linking changes to admin connections. The
// returned func stops it.
func (s *Server) watchWebLogin() (stop func()) {
	wl, ok := s.opts.Providers.(WebLoginer)
	if !ok || s.opts.Providers == nil {
		return func() {}
	}
	var mu sync.Mutex
	last := map[[2]string]string{}
	return wl.WatchWebLogin(func(st WebLoginState) {
		// QR rotations repeat the status; publish changes only.
		id, k := [2]string{st.Channel, st.AccountID}, st.Status+"/"+boolWord(st.Connected)
		mu.Lock()
		same := last[id] == k
		last[id] = k
		mu.Unlock()
		if same {
			return
		}
		s.bus.broadcast(EventWebLogin, webLoginEvent{Channel: st.Channel, AccountID: st.AccountID,
			Status: st.Status, Connected: st.Connected, Message: st.Message, Ts: s.nowMs()}, nil,
			func(c *Conn) bool {
				sess := c.Session()
				return sess != nil && authn.Satisfies(sess.Scopes, protocol.ScopeAdmin)
			})
	})
}

func boolWord(b bool) string {
	if b {
		return "up"
	}
	return "down"
}
