package discord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/providers"
)

// Name is the channel id.
const Name = "discord"

// DefaultAPIURL is where discordgo sends REST calls.
const DefaultAPIURL = "https://discord.com"

// DefaultIntents: guild and direct messages with their content and
// reactions. Message content is a privileged intent; enable it for the
// bot in the developer portal.
const DefaultIntents = discordgo.IntentsGuildMessages | discordgo.IntentsDirectMessages |
	discordgo.IntentMessageContent | discordgo.IntentsGuildMessageReactions |
	discordgo.IntentsDirectMessageReactions

// Config configures one bot.
type Config struct {
	Token string // bot token; never logged
	// APIURL replaces https://discord.com for REST calls (tests, proxies);
	// http only to loopback. The gateway URL comes from GET /gateway.
	APIURL string
	// OpenTimeout bounds connecting: gateway discovery, dial, HELLO and
	// READY (default 30 s). discordgo's Open has no deadline of its own.
	OpenTimeout time.Duration
	// Intents default to DefaultIntents.
	Intents discordgo.Intent
	Logger  *slog.Logger
}

// Provider is one Discord bot on the gateway.
type Provider struct {
	cfg     Config
	log     *slog.Logger
	session *discordgo.Session
	base    *url.URL // REST rewrite target, nil for discord.com
	tr      *http.Transport

	mu       sync.Mutex
	run      *runState
	openCtx  context.Context // bounds the current Open's network calls
	lastConn net.Conn        // raw connection of the newest gateway dial
	selfID   string
}

type runState struct {
	ctx          context.Context
	sink         providers.Sink
	disconnected chan struct{}
	fatal        chan error
	closing      bool
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
	cfg.Token = strings.TrimPrefix(cfg.Token, "Bot ")
	if len(cfg.Token) < 30 || strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, errors.New("discord: the bot token is missing or malformed")
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = 30 * time.Second
	}
	if cfg.Intents == 0 {
		cfg.Intents = DefaultIntents
	}
	p := &Provider{cfg: cfg, log: cfg.Logger.With("channel", Name)}
	if cfg.APIURL != "" && cfg.APIURL != DefaultAPIURL {
		u, err := url.Parse(cfg.APIURL)
		if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("discord: apiUrl %q is not a base URL", cfg.APIURL)
		}
		ip := net.ParseIP(u.Hostname())
		if u.Scheme != "https" && !(u.Scheme == "http" && ((ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost")) {
			return nil, fmt.Errorf("discord: apiUrl %q must be https (plain http only to loopback)", cfg.APIURL)
		}
		p.base = u
	}
	p.tr = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	s, err := discordgo.New("Bot " + cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("discord: %s", p.redact(err.Error()))
	}
	s.Identify.Intents = cfg.Intents
	// The Supervisor owns reconnecting: discordgo's own loop cannot be
	// cancelled and sleeps up to ten minutes.
	s.ShouldReconnectOnError = false
	s.ShouldReconnectVoiceOnSessionError = false
	// Handlers run one at a time on the reader, so per-channel order holds.
	s.SyncEvents = true
	s.StateEnabled = false
	s.LogLevel = -1 // silence the SDK; errors come back to us
	s.Client = &http.Client{Transport: rewriter{p}, Timeout: 30 * time.Second}
	s.Dialer = &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 10 * time.Second,
		NetDialContext: p.dialGateway}
	s.AddHandler(p.onReady)
	s.AddHandler(p.onMessageCreate)
	s.AddHandler(p.onMessageUpdate)
	s.AddHandler(p.onReactionAdd)
	s.AddHandler(p.onDisconnect)
	p.session = s
	return p, nil
}

func (p *Provider) redact(s string) string {
	s = strings.ReplaceAll(s, p.cfg.Token, "<token>")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// rewriter points REST calls at APIURL and ties gateway discovery (which
// discordgo's Open does without a context) to the current Open's bound.
type rewriter struct{ p *Provider }

func (r rewriter) RoundTrip(req *http.Request) (*http.Response, error) {
	p := r.p
	req = req.Clone(req.Context())
	if p.base != nil && req.URL.Host == "discord.com" {
		req.URL.Scheme, req.URL.Host = p.base.Scheme, p.base.Host
		req.Host = ""
	}
	if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/gateway") {
		p.mu.Lock()
		octx := p.openCtx
		p.mu.Unlock()
		if octx != nil {
			ctx, cancel := context.WithCancel(req.Context())
			context.AfterFunc(octx, cancel)
			req = req.WithContext(ctx)
		}
	}
	return p.tr.RoundTrip(req)
}

// dialGateway dials the gateway under the current Open's context and
// remembers the raw connection, so a stuck handshake can be cut.
func (p *Provider) dialGateway(ctx context.Context, network, addr string) (net.Conn, error) {
	p.mu.Lock()
	if p.openCtx != nil {
		ctx = p.openCtx
	}
	p.mu.Unlock()
	c, err := (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.lastConn = c
	p.mu.Unlock()
	return c, nil
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// Capabilities implements providers.Provider.
func (p *Provider) Capabilities() providers.Capabilities {
	return providers.Capabilities{Label: "Discord", IDs: providers.IDSnowflake,
		ChatTypes:  []providers.ChatType{providers.ChatDirect, providers.ChatGroup},
		MaxTextLen: 2000, Threads: true, Edits: true, Reactions: true, Mode: "gateway"}
}

// Run implements providers.Provider: open the gateway (bounded by
// OpenTimeout; a RESUME when a session exists), then wait until ctx ends
// or the connection drops. A drop returns an error so the Supervisor
// reopens after its backoff.
func (p *Provider) Run(ctx context.Context, sink providers.Sink) error {
	rs := &runState{ctx: ctx, sink: sink, disconnected: make(chan struct{}, 1), fatal: make(chan error, 1)}
	p.mu.Lock()
	p.run = rs
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.run = nil
		p.mu.Unlock()
		p.tr.CloseIdleConnections()
	}()
	if err := p.open(ctx); err != nil {
		return err
	}
	sink.SetState(providers.StateConnected, nil)
	var err error
	select {
	case <-ctx.Done():
	case <-rs.disconnected:
		err = errors.New("discord: gateway connection lost")
	case err = <-rs.fatal:
	}
	p.mu.Lock()
	rs.closing = true
	p.mu.Unlock()
	_ = p.session.Close() // sends close 1000; discordgo then waits 1 s
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// open runs discordgo's Open with a deadline it does not have itself.
func (p *Provider) open(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, p.cfg.OpenTimeout)
	defer cancel()
	p.mu.Lock()
	p.openCtx, p.lastConn = octx, nil
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.openCtx = nil
		p.mu.Unlock()
	}()
	done := make(chan error, 1)
	go func() { done <- p.session.Open() }()
	var err error
	select {
	case err = <-done:
	case <-octx.Done():
		p.mu.Lock()
		c := p.lastConn
		p.mu.Unlock()
		if c != nil {
			_ = c.Close() // unblocks Open's read of HELLO or READY
		}
		<-done
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("discord: gateway did not finish HELLO and READY within %v", p.cfg.OpenTimeout)
	}
	if err == nil {
		return nil
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case 4004:
			return providers.Permanent(errors.New("discord: gateway rejected the bot token (4004 authentication failed)"))
		case 4013, 4014:
			return providers.Permanent(fmt.Errorf("discord: gateway refused the intents (%d %s); enable them in the developer portal", ce.Code, ce.Text))
		}
	}
	var re *discordgo.RESTError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusUnauthorized {
		return providers.Permanent(errors.New("discord: REST rejected the bot token (401)"))
	}
	return fmt.Errorf("discord: open gateway: %s", p.redact(err.Error()))
}

// current returns the running Run's state, or nil.
func (p *Provider) current() *runState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.run
}

// guard turns a panic in an SDK callback (which would otherwise kill the
// process from discordgo's goroutine) into an error that ends the run.
func (p *Provider) guard(rs *runState) {
	if r := recover(); r != nil {
		p.log.Error("discord handler panicked", "panic", fmt.Sprint(r))
		select {
		case rs.fatal <- fmt.Errorf("discord: handler panicked: %v", r):
		default:
		}
	}
}

func (p *Provider) onReady(_ *discordgo.Session, r *discordgo.Ready) {
	if r.User == nil {
		return
	}
	p.mu.Lock()
	p.selfID = r.User.ID
	p.mu.Unlock()
}

func (p *Provider) onDisconnect(_ *discordgo.Session, _ *discordgo.Disconnect) {
	rs := p.current()
	if rs == nil {
		return
	}
	p.mu.Lock()
	closing := rs.closing
	p.mu.Unlock()
	if closing {
		return
	}
	select {
	case rs.disconnected <- struct{}{}:
	default:
	}
}

func (p *Provider) self() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.selfID
}

func (p *Provider) deliver(rs *runState, in providers.Inbound) {
	_ = rs.sink.Deliver(rs.ctx, in)
}

func (p *Provider) onMessageCreate(_ *discordgo.Session, m *discordgo.MessageCreate) {
	rs := p.current()
	if rs == nil || m == nil || m.Message == nil {
		return
	}
	defer p.guard(rs)
	if in, ok := p.messageInbound(m.Message, providers.KindMessage); ok {
		p.deliver(rs, in)
	}
}

func (p *Provider) onMessageUpdate(_ *discordgo.Session, m *discordgo.MessageUpdate) {
	rs := p.current()
	if rs == nil || m == nil || m.Message == nil {
		return
	}
	defer p.guard(rs)
	if in, ok := p.messageInbound(m.Message, providers.KindEdit); ok {
		p.deliver(rs, in)
	}
}

func (p *Provider) messageInbound(m *discordgo.Message, kind providers.Kind) (providers.Inbound, bool) {
	if m.Author == nil || m.Author.Bot || m.Author.ID == p.self() || m.WebhookID != "" || m.Content == "" {
		return providers.Inbound{}, false
	}
	in := providers.Inbound{Kind: kind, ID: m.ID, MessageID: m.ID, ChatID: m.ChannelID,
		ChatType: providers.ChatDirect, SenderID: m.Author.ID, SenderName: m.Author.Username,
		Text: m.Content, Time: m.Timestamp}
	if m.Author.GlobalName != "" {
		in.SenderName = m.Author.GlobalName
	}
	if m.GuildID != "" {
		in.ChatType = providers.ChatGroup
		if m.Member != nil {
			in.SenderRoles = m.Member.Roles
		}
	}
	if kind == providers.KindEdit {
		in.ID += ":edit"
		if m.EditedTimestamp != nil {
			in.ID += ":" + m.EditedTimestamp.UTC().Format(time.RFC3339Nano)
			in.Time = *m.EditedTimestamp
		}
	}
	return in, true
}

func (p *Provider) onReactionAdd(_ *discordgo.Session, r *discordgo.MessageReactionAdd) {
	rs := p.current()
	if rs == nil || r == nil || r.MessageReaction == nil {
		return
	}
	defer p.guard(rs)
	if r.UserID == "" || r.UserID == p.self() || (r.Member != nil && r.Member.User != nil && r.Member.User.Bot) {
		return
	}
	emoji := r.Emoji.Name
	if emoji == "" {
		emoji = r.Emoji.ID
	}
	in := providers.Inbound{Kind: providers.KindReaction,
		ID:        r.MessageID + ":react:" + r.UserID + ":" + emoji,
		MessageID: r.MessageID, ChatID: r.ChannelID, ChatType: providers.ChatDirect,
		SenderID: r.UserID, Text: emoji, Time: time.Now()}
	if r.GuildID != "" {
		in.ChatType = providers.ChatGroup
		if r.Member != nil {
			in.SenderRoles = r.Member.Roles
		}
	}
	p.deliver(rs, in)
}

func (p *Provider) restErr(op string, err error) error {
	return fmt.Errorf("discord %s: %s", op, p.redact(err.Error()))
}

// Send implements providers.Provider: a message in the channel (or the
// thread, which is a channel too), optionally as a reply.
func (p *Provider) Send(ctx context.Context, msg providers.Outbound) (providers.Result, error) {
	channel := msg.To
	if msg.ThreadID != "" {
		channel = msg.ThreadID
	}
	data := &discordgo.MessageSend{Content: msg.Text,
		AllowedMentions: &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{}}}
	if msg.ReplyToID != "" {
		f := false
		data.Reference = &discordgo.MessageReference{MessageID: msg.ReplyToID, ChannelID: channel, FailIfNotExists: &f}
	}
	m, err := p.session.ChannelMessageSendComplex(channel, data, discordgo.WithContext(ctx))
	if err != nil {
		return providers.Result{}, p.restErr("create message", err)
	}
	return providers.Result{MessageID: m.ID, ChannelID: m.ChannelID}, nil
}

// Probe implements providers.Prober with GET /users/@me.
func (p *Provider) Probe(ctx context.Context) (providers.ProbeResult, error) {
	u, err := p.session.User("@me", discordgo.WithContext(ctx))
	if err != nil {
		return providers.ProbeResult{}, p.restErr("users/@me", err)
	}
	return providers.ProbeResult{OK: true, BotID: u.ID, BotName: u.Username}, nil
}

// Edit implements providers.Editor.
func (p *Provider) Edit(ctx context.Context, chatID, messageID, text string) error {
	if _, err := p.session.ChannelMessageEdit(chatID, messageID, text, discordgo.WithContext(ctx)); err != nil {
		return p.restErr("edit message", err)
	}
	return nil
}
