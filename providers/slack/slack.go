package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/clawgate/clawgate/providers"
)

// Name is the channel id.
const Name = "slack"

// DefaultAPIURL is the Web API endpoint.
const DefaultAPIURL = "https://slack.com/api/"

// maxFrame caps one Socket Mode frame. Slack messages are at most 40,000
// characters; events carry some metadata around them.
const maxFrame = 4 << 20

// Config configures one Slack app installation.
type Config struct {
	BotToken string // xoxb-…: Web API calls; never logged
	AppToken string // xapp-…: Socket Mode; never logged
	// APIURL is the Web API base (default DefaultAPIURL); http only to
	// loopback (tests).
	APIURL string
	// PingTimeout is how long the socket may stay silent (no PING from
	// Slack) before it is reopened (default 30 s).
	PingTimeout time.Duration
	Logger      *slog.Logger
}

// Provider is one Slack app in one workspace, over Socket Mode.
type Provider struct {
	cfg       Config
	log       *slog.Logger
	transport *http.Transport
	client    *http.Client
	api       *slack.Client
}

var (
	_ providers.Provider = (*Provider)(nil)
	_ providers.Prober   = (*Provider)(nil)
	_ providers.Editor   = (*Provider)(nil)
)

// New checks cfg and builds the provider. It makes no network call.
func New(cfg Config) (*Provider, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if !strings.HasPrefix(cfg.BotToken, "xoxb-") || len(cfg.BotToken) < 20 {
		return nil, errors.New("slack: the bot token is missing or is not an xoxb- token")
	}
	if !strings.HasPrefix(cfg.AppToken, "xapp-") || len(cfg.AppToken) < 20 {
		return nil, errors.New("slack: the app-level token is missing or is not an xapp- token (Socket Mode needs one with connections:write)")
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if err := checkAPIURL(cfg.APIURL); err != nil {
		return nil, err
	}
	if !strings.HasSuffix(cfg.APIURL, "/") {
		cfg.APIURL += "/"
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 30 * time.Second
	}
	p := &Provider{cfg: cfg, log: cfg.Logger.With("channel", Name)}
	p.transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	p.client = &http.Client{Transport: p.transport, Timeout: 60 * time.Second}
	p.api = slack.New(cfg.BotToken, slack.OptionAppLevelToken(cfg.AppToken), slack.OptionAPIURL(cfg.APIURL),
		slack.OptionHTTPClient(p.client), slack.OptionLog(p.sdkLog()))
	return p, nil
}

func checkAPIURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return fmt.Errorf("slack: apiUrl %q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("slack: apiUrl %q must be https (plain http only to loopback)", raw)
}

// sdkLog routes the SDK's own logging to debug, redacted.
func (p *Provider) sdkLog() *log.Logger {
	return log.New(logWriter{p}, "", 0)
}

type logWriter struct{ p *Provider }

func (w logWriter) Write(b []byte) (int, error) {
	w.p.log.Debug("slack sdk", "msg", w.p.redact(strings.TrimSpace(string(b))))
	return len(b), nil
}

func (p *Provider) redact(s string) string {
	for _, secret := range []string{p.cfg.BotToken, p.cfg.AppToken} {
		s = strings.ReplaceAll(s, secret, "<token>")
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func (p *Provider) wrap(op string, err error) error {
	e := fmt.Errorf("slack %s: %s", op, p.redact(err.Error()))
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type":
			return providers.Permanent(e)
		}
	}
	switch err.Error() {
	case "invalid_auth", "not_authed", "account_inactive", "token_revoked":
		return providers.Permanent(e)
	}
	return e
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// Capabilities implements providers.Provider.
func (p *Provider) Capabilities() providers.Capabilities {
	return providers.Capabilities{Label: "Slack", IDs: providers.IDSlack,
		ChatTypes:  []providers.ChatType{providers.ChatDirect, providers.ChatGroup, providers.ChatChannel},
		MaxTextLen: 40000, Threads: true, Edits: true, Reactions: true, Mode: "socket"}
}

// Run implements providers.Provider: Socket Mode until ctx ends, acking
// every envelope once it is handled.
func (p *Provider) Run(ctx context.Context, sink providers.Sink) error {
	defer p.transport.CloseIdleConnections()
	dialer := &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 10 * time.Second,
		WriteBufferSize: 32 << 10, NetDialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	sm := socketmode.New(p.api, socketmode.OptionPingInterval(p.cfg.PingTimeout),
		socketmode.OptionReadLimit(maxFrame), socketmode.OptionDialer(dialer), socketmode.OptionLog(p.sdkLog()))

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	runErr := make(chan error, 1)
	wg.Go(func() { runErr <- sm.RunContext(runCtx) })

	connected := false
	for {
		select {
		case <-ctx.Done():
			cancel()
			return nil
		case err := <-runErr:
			if ctx.Err() != nil {
				return nil
			}
			return p.wrap("socket mode", err)
		case evt := <-sm.Events:
			switch evt.Type {
			case socketmode.EventTypeConnecting:
				if connected {
					sink.SetState(providers.StateReconnecting, errors.New("socket closed; reconnecting"))
				}
			case socketmode.EventTypeConnectionError:
				msg := "connection failed"
				if ce, ok := evt.Data.(*slack.ConnectionErrorEvent); ok && ce.ErrorObj != nil {
					msg += ": " + p.redact(ce.ErrorObj.Error())
				}
				sink.SetState(providers.StateReconnecting, errors.New(msg))
			case socketmode.EventTypeInvalidAuth:
				cancel()
				return providers.Permanent(errors.New("slack: invalid app-level token (apps.connections.open said invalid_auth)"))
			case socketmode.EventTypeConnected:
				connected = true
				sink.SetState(providers.StateConnected, nil)
			case socketmode.EventTypeEventsAPI:
				p.handleEvents(ctx, sink, evt)
				p.ack(ctx, sm, evt.Request)
			case socketmode.EventTypeSlashCommand, socketmode.EventTypeInteractive:
				p.ack(ctx, sm, evt.Request) // not handled, but acknowledged so Slack stops retrying
			case socketmode.EventTypeErrorBadMessage:
				// An envelope the SDK could not parse is still acknowledged.
				if bm, ok := evt.Data.(*socketmode.ErrorBadMessage); ok {
					var env struct {
						EnvelopeID string `json:"envelope_id"`
					}
					if json.Unmarshal(bm.Message, &env) == nil && env.EnvelopeID != "" {
						p.ack(ctx, sm, &socketmode.Request{EnvelopeID: env.EnvelopeID})
					}
					p.log.Debug("unparseable socket mode frame acknowledged", "err", p.redact(bm.Cause.Error()))
				}
			}
		}
	}
}

func (p *Provider) ack(ctx context.Context, sm *socketmode.Client, req *socketmode.Request) {
	if req == nil || req.EnvelopeID == "" {
		return
	}
	if err := sm.AckCtx(ctx, req.EnvelopeID, nil); err != nil && ctx.Err() == nil {
		p.log.Debug("ack failed", "err", p.redact(err.Error()))
	}
}

// handleEvents delivers one Events API callback. The dedupe key is the
// event_id, which Slack keeps when it retries an event.
func (p *Provider) handleEvents(ctx context.Context, sink providers.Sink, evt socketmode.Event) {
	ea, ok := evt.Data.(slackevents.EventsAPIEvent)
	if !ok {
		return
	}
	cb, ok := ea.Data.(*slackevents.EventsAPICallbackEvent)
	if !ok || cb.EventID == "" {
		return
	}
	var in providers.Inbound
	switch ev := ea.InnerEvent.Data.(type) {
	case *slackevents.MessageEvent:
		in, ok = messageInbound(ev)
	case *slackevents.ReactionAddedEvent:
		in, ok = reactionInbound(ev)
	default:
		ok = false
	}
	if !ok {
		return
	}
	in.ID = cb.EventID
	if cb.EventTime > 0 {
		in.Time = time.Unix(int64(cb.EventTime), 0)
	}
	_ = sink.Deliver(ctx, in)
}

func chatType(channelType, channel string) providers.ChatType {
	switch channelType {
	case "im":
		return providers.ChatDirect
	case "mpim", "group":
		return providers.ChatGroup
	case "channel":
		return providers.ChatChannel
	}
	if strings.HasPrefix(channel, "D") {
		return providers.ChatDirect
	}
	return providers.ChatChannel
}

func messageInbound(m *slackevents.MessageEvent) (providers.Inbound, bool) {
	if m.BotID != "" {
		return providers.Inbound{}, false
	}
	in := providers.Inbound{Kind: providers.KindMessage, ChatID: m.Channel, ChatType: chatType(m.ChannelType, m.Channel)}
	switch m.SubType {
	case "", "thread_broadcast", "file_share":
		in.SenderID, in.Text, in.MessageID = m.User, m.Text, m.TimeStamp
		if m.ThreadTimeStamp != "" && m.ThreadTimeStamp != m.TimeStamp {
			in.ThreadID = m.ThreadTimeStamp
		}
	case "message_changed":
		if m.Message == nil || m.Message.BotID != "" {
			return providers.Inbound{}, false
		}
		in.Kind = providers.KindEdit
		in.SenderID, in.Text, in.MessageID = m.Message.User, m.Message.Text, m.Message.Timestamp
		if t := m.Message.ThreadTimestamp; t != "" && t != m.Message.Timestamp {
			in.ThreadID = t
		}
	default:
		return providers.Inbound{}, false // joins, deletions, bot messages, ...
	}
	if in.SenderID == "" || in.Text == "" {
		return providers.Inbound{}, false
	}
	return in, true
}

func reactionInbound(r *slackevents.ReactionAddedEvent) (providers.Inbound, bool) {
	if r.User == "" || r.Item.Channel == "" {
		return providers.Inbound{}, false
	}
	return providers.Inbound{Kind: providers.KindReaction, ChatID: r.Item.Channel,
		ChatType: chatType("", r.Item.Channel), SenderID: r.User, MessageID: r.Item.Timestamp,
		Text: ":" + r.Reaction + ":"}, true
}

// Send implements providers.Provider with chat.postMessage.
func (p *Provider) Send(ctx context.Context, msg providers.Outbound) (providers.Result, error) {
	opts := []slack.MsgOption{slack.MsgOptionText(msg.Text, false)}
	if msg.ThreadID != "" {
		opts = append(opts, slack.MsgOptionTS(msg.ThreadID))
	} else if msg.ReplyToID != "" {
		opts = append(opts, slack.MsgOptionTS(msg.ReplyToID))
	}
	channel, ts, err := p.api.PostMessageContext(ctx, msg.To, opts...)
	if err != nil {
		return providers.Result{}, p.wrap("chat.postMessage", err)
	}
	return providers.Result{MessageID: ts, ChannelID: channel}, nil
}

// Probe implements providers.Prober with auth.test.
func (p *Provider) Probe(ctx context.Context) (providers.ProbeResult, error) {
	r, err := p.api.AuthTestContext(ctx)
	if err != nil {
		return providers.ProbeResult{}, p.wrap("auth.test", err)
	}
	return providers.ProbeResult{OK: true, BotID: r.UserID, BotName: r.User}, nil
}

// Edit implements providers.Editor with chat.update.
func (p *Provider) Edit(ctx context.Context, chatID, messageID, text string) error {
	if _, _, _, err := p.api.UpdateMessageContext(ctx, chatID, messageID, slack.MsgOptionText(text, false)); err != nil {
		return p.wrap("chat.update", err)
	}
	return nil
}
