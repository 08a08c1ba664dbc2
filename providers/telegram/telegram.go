package telegram

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/clawgate/clawgate/providers"
)

// Name is the channel id.
const Name = "telegram"

// DefaultAPIURL is the Bot API endpoint.
const DefaultAPIURL = "https://api.telegram.org"

// Modes.
const (
	ModePolling = "polling"
	ModeWebhook = "webhook"
)

// Limits.
const (
	// MaxWebhookBody caps a webhook request body. Telegram updates are a
	// few KB; 1 MiB leaves room for long captions and entities.
	MaxWebhookBody = 1 << 20
	// maxJSONDepth refuses deeply nested webhook bodies before decoding.
	maxJSONDepth = 32
	// maxResponse caps any Bot API response (100 updates of 4096
	// characters are well under it).
	maxResponse = 32 << 20
)

// Config configures one bot account.
type Config struct {
	Token  string // from a file or the environment; never logged
	APIURL string // default DefaultAPIURL; http only for loopback (tests, a local Bot API server)
	Mode   string // ModePolling (default) or ModeWebhook
	// PollTimeout is the long-poll duration (default 50 s).
	PollTimeout time.Duration
	Webhook     WebhookConfig
	Logger      *slog.Logger
}

// WebhookConfig is the webhook mode's listener.
type WebhookConfig struct {
	// Listen is the address the webhook server binds, e.g. "127.0.0.1:8443"
	// behind a TLS-terminating proxy.
	Listen string
	// Path is the request path (default "/telegram-webhook").
	Path string
	// PublicURL, when set, is registered with setWebhook on start.
	PublicURL string
	// Secret is sent by Telegram in X-Telegram-Bot-Api-Secret-Token. It is
	// required: webhook mode without it is refused (1-256 characters of
	// A-Z, a-z, 0-9, '_' and '-').
	Secret string
	// MaxBody caps a request body (default MaxWebhookBody).
	MaxBody int64
}

// Provider is one Telegram bot.
type Provider struct {
	cfg       Config
	log       *slog.Logger
	transport *http.Transport
	client    *http.Client
	api       *bot.Bot // for Send, Probe and Edit; no handlers

	// lastTaken is the highest update_id the gateway has taken; getUpdates
	// never confirms past it.
	lastTaken atomic.Int64

	mu   sync.Mutex
	addr string // webhook listener's bound address
	run  *runState
}

// runState is what one Run shares with the transport and handlers.
type runState struct {
	sink   providers.Sink
	failed chan struct{} // a poll failed at the transport: probe until back
	fatal  chan error    // a permanent error (401)
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
	if !validToken(cfg.Token) {
		return nil, errors.New("telegram: the bot token is missing or malformed (want <digits>:<secret> from @BotFather)")
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if err := checkAPIURL(cfg.APIURL); err != nil {
		return nil, err
	}
	cfg.APIURL = strings.TrimRight(cfg.APIURL, "/")
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 50 * time.Second
	}
	if cfg.PollTimeout < 2*time.Second {
		cfg.PollTimeout = 2 * time.Second
	}
	switch cfg.Mode {
	case "", ModePolling:
		cfg.Mode = ModePolling
	case ModeWebhook:
		if err := checkWebhook(&cfg.Webhook); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("telegram: unknown mode %q (want %q or %q)", cfg.Mode, ModePolling, ModeWebhook)
	}
	p := &Provider{cfg: cfg, log: cfg.Logger.With("channel", Name)}
	p.transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
	p.client = &http.Client{Transport: &observer{p: p}, Timeout: cfg.PollTimeout + 15*time.Second}
	api, err := bot.New(cfg.Token, p.botOptions(nil)...)
	if err != nil {
		return nil, fmt.Errorf("telegram: %s", p.redact(err.Error()))
	}
	p.api = api
	return p, nil
}

func validToken(t string) bool {
	id, secret, ok := strings.Cut(t, ":")
	if !ok || id == "" || len(secret) < 20 || len(t) > 256 {
		return false
	}
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return false
	}
	for _, c := range secret {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkAPIURL allows https anywhere and plain http only to loopback, so the
// token never crosses a network in the clear.
func checkAPIURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return fmt.Errorf("telegram: apiUrl %q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("telegram: apiUrl %q must be https (plain http only to loopback)", raw)
}

// checkWebhook refuses webhook mode without a usable secret (attack I8).
func checkWebhook(w *WebhookConfig) error {
	if w.Secret == "" {
		return errors.New("telegram: webhook mode needs a secret token (webhook.secretFile or CLAWGATE_TELEGRAM_WEBHOOK_SECRET); refusing to accept unauthenticated updates")
	}
	if len(w.Secret) > 256 {
		return errors.New("telegram: webhook secret longer than 256 characters")
	}
	for _, c := range w.Secret {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return errors.New("telegram: webhook secret may use only A-Z, a-z, 0-9, '_' and '-'")
		}
	}
	if len(w.Secret) < 16 {
		return errors.New("telegram: webhook secret shorter than 16 characters")
	}
	if w.Listen == "" {
		return errors.New("telegram: webhook mode needs webhook.listen (host:port)")
	}
	if w.Path == "" {
		w.Path = "/telegram-webhook"
	}
	if !strings.HasPrefix(w.Path, "/") {
		return fmt.Errorf("telegram: webhook path %q must start with /", w.Path)
	}
	if w.PublicURL != "" {
		u, err := url.Parse(w.PublicURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("telegram: webhook publicUrl %q must be an https URL", w.PublicURL)
		}
	}
	if w.MaxBody <= 0 {
		w.MaxBody = MaxWebhookBody
	}
	return nil
}

func (p *Provider) botOptions(rs *runState) []bot.Option {
	opts := []bot.Option{
		bot.WithSkipGetMe(),
		bot.WithServerURL(p.cfg.APIURL),
		bot.WithHTTPClient(p.cfg.PollTimeout, p.client),
		bot.WithErrorsHandler(func(err error) { p.onLibError(rs, err) }),
		bot.WithDebugHandler(func(string, ...any) {}),
		bot.WithDefaultHandler(func(ctx context.Context, _ *bot.Bot, u *models.Update) {
			if rs != nil {
				p.handle(ctx, rs, u)
			}
		}),
		bot.WithNotAsyncHandlers(),
		bot.WithWorkers(1),
		bot.WithUpdatesChannelCap(1),
		bot.WithAllowedUpdates(bot.AllowedUpdates{models.AllowedUpdateMessage,
			models.AllowedUpdateEditedMessage, models.AllowedUpdateMessageReaction}),
		bot.WithInitialOffset(p.lastTaken.Load()),
	}
	return opts
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// Capabilities implements providers.Provider.
func (p *Provider) Capabilities() providers.Capabilities {
	return providers.Capabilities{Label: "Telegram", IDs: providers.IDNumeric,
		ChatTypes:  []providers.ChatType{providers.ChatDirect, providers.ChatGroup},
		MaxTextLen: 4096, Threads: true, Edits: true, Reactions: true, Mode: p.cfg.Mode}
}

// Addr returns the webhook listener's address once it is bound.
func (p *Provider) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Run implements providers.Provider.
func (p *Provider) Run(ctx context.Context, sink providers.Sink) error {
	rs := &runState{sink: sink, failed: make(chan struct{}, 1), fatal: make(chan error, 1)}
	p.mu.Lock()
	p.run = rs
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.run = nil
		p.mu.Unlock()
		p.transport.CloseIdleConnections()
	}()
	if p.cfg.Mode == ModeWebhook {
		return p.runWebhook(ctx, rs)
	}
	return p.runPolling(ctx, rs)
}

func (p *Provider) runPolling(ctx context.Context, rs *runState) error {
	// A registered webhook makes getUpdates fail with 409; polling mode
	// removes it (keeping pending updates).
	if _, err := p.api.DeleteWebhook(ctx, &bot.DeleteWebhookParams{}); err != nil {
		return p.classify("deleteWebhook", err)
	}
	rs.sink.SetState(providers.StateConnected, nil)
	b, err := bot.New(p.cfg.Token, p.botOptions(rs)...)
	if err != nil {
		return fmt.Errorf("telegram: %s", p.redact(err.Error()))
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { b.Start(runCtx) })
	wg.Go(func() { p.recoveryProbe(runCtx, rs) })
	var fatal error
	select {
	case <-ctx.Done():
	case fatal = <-rs.fatal:
	}
	cancel()
	wg.Wait()
	if fatal != nil {
		return fatal
	}
	return nil
}

// recoveryProbe notices a recovery soon after a failed poll, instead of
// waiting for the next long poll to come back: it calls getMe until it
// succeeds.
func (p *Provider) recoveryProbe(ctx context.Context, rs *runState) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-rs.failed:
		}
		delay := 200 * time.Millisecond
		for {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if _, err := p.api.GetMe(ctx); err == nil {
				rs.sink.SetState(providers.StateConnected, nil)
				break
			}
			delay = min(2*delay, 5*time.Second)
		}
	}
}

// classify turns an SDK error into one with the token redacted, marking
// revoked or invalid credentials as permanent.
func (p *Provider) classify(op string, err error) error {
	e := fmt.Errorf("telegram %s: %s", op, p.redact(err.Error()))
	if errors.Is(err, bot.ErrorUnauthorized) || errors.Is(err, bot.ErrorNotFound) {
		return providers.Permanent(fmt.Errorf("%w (check the bot token)", e))
	}
	return e
}

// onLibError receives the SDK's asynchronous errors (failed polls,
// undeliverable updates). Texts may quote response bodies, so they are
// redacted and shortened.
func (p *Provider) onLibError(rs *runState, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if rs != nil && (errors.Is(err, bot.ErrorUnauthorized) || errors.Is(err, bot.ErrorNotFound)) {
		select {
		case rs.fatal <- p.classify("getUpdates", err):
		default:
		}
		return
	}
	msg := p.redact(err.Error())
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	if rs != nil && errors.Is(err, bot.ErrorConflict) {
		msg = "another client is polling with this bot token, or a webhook is set: " + msg
		rs.sink.SetState(providers.StateReconnecting, errors.New(msg))
	}
	p.log.Debug("telegram client error", "err", msg)
}

func (p *Provider) redact(s string) string {
	s = strings.ReplaceAll(s, p.cfg.Token, "<token>")
	if p.cfg.Webhook.Secret != "" {
		s = strings.ReplaceAll(s, p.cfg.Webhook.Secret, "<secret>")
	}
	return s
}

// handle turns one update into an Inbound and delivers it. Updates arrive
// one at a time, in order.
func (p *Provider) handle(ctx context.Context, rs *runState, u *models.Update) {
	if u == nil {
		return
	}
	if u.ID != 0 && u.ID <= p.lastTaken.Load() {
		return // re-fetched because the offset was held back; already taken
	}
	if in, ok := toInbound(u); ok {
		if err := rs.sink.Deliver(ctx, in); err != nil {
			return // not taken: the offset stays, the update comes again
		}
	}
	if u.ID > p.lastTaken.Load() {
		p.lastTaken.Store(u.ID)
	}
}

func toInbound(u *models.Update) (providers.Inbound, bool) {
	switch {
	case u.Message != nil:
		return messageInbound(u.Message, providers.KindMessage)
	case u.EditedMessage != nil:
		return messageInbound(u.EditedMessage, providers.KindEdit)
	case u.MessageReaction != nil:
		return reactionInbound(u.MessageReaction)
	}
	return providers.Inbound{}, false
}

func chatType(t models.ChatType) providers.ChatType {
	switch t {
	case models.ChatTypePrivate:
		return providers.ChatDirect
	case models.ChatTypeChannel:
		return providers.ChatChannel
	}
	return providers.ChatGroup
}

func messageInbound(m *models.Message, kind providers.Kind) (providers.Inbound, bool) {
	if m.From == nil || m.From.IsBot {
		return providers.Inbound{}, false // channel posts and bots
	}
	text := m.Text
	if text == "" {
		text = m.Caption
	}
	if text == "" {
		return providers.Inbound{}, false // stickers, media without caption
	}
	chat := strconv.FormatInt(m.Chat.ID, 10)
	mid := strconv.Itoa(m.ID)
	in := providers.Inbound{
		Kind: kind, ID: chat + ":" + mid, MessageID: mid, ChatID: chat, ChatType: chatType(m.Chat.Type),
		SenderID: strconv.FormatInt(m.From.ID, 10), SenderName: displayName(m.From),
		Text: text, Time: time.Unix(int64(m.Date), 0),
	}
	if kind == providers.KindEdit {
		in.ID += ":edit:" + strconv.Itoa(m.EditDate)
	}
	if m.IsTopicMessage && m.MessageThreadID != 0 {
		in.ThreadID = strconv.Itoa(m.MessageThreadID)
	}
	return in, true
}

func reactionInbound(r *models.MessageReactionUpdated) (providers.Inbound, bool) {
	if r.User == nil || r.User.IsBot {
		return providers.Inbound{}, false // anonymous group admins
	}
	var emoji []string
	for _, t := range r.NewReaction {
		if t.ReactionTypeEmoji != nil {
			emoji = append(emoji, t.ReactionTypeEmoji.Emoji)
		}
	}
	chat := strconv.FormatInt(r.Chat.ID, 10)
	mid := strconv.Itoa(r.MessageID)
	return providers.Inbound{
		Kind: providers.KindReaction, ID: chat + ":" + mid + ":react:" + strconv.FormatInt(r.User.ID, 10) + ":" + strconv.Itoa(r.Date),
		MessageID: mid, ChatID: chat, ChatType: chatType(r.Chat.Type),
		SenderID: strconv.FormatInt(r.User.ID, 10), SenderName: displayName(r.User),
		Text: strings.Join(emoji, ""), Time: time.Unix(int64(r.Date), 0),
	}, true
}

func displayName(u *models.User) string {
	name := strings.TrimSpace(u.FirstName + " " + u.LastName)
	if name == "" {
		name = u.Username
	}
	return name
}

// Send implements providers.Provider.
func (p *Provider) Send(ctx context.Context, msg providers.Outbound) (providers.Result, error) {
	chatID, err := strconv.ParseInt(msg.To, 10, 64)
	if err != nil {
		return providers.Result{}, fmt.Errorf("telegram: chat id %q is not numeric", msg.To)
	}
	params := &bot.SendMessageParams{ChatID: chatID, Text: msg.Text}
	if msg.ThreadID != "" {
		params.MessageThreadID, err = strconv.Atoi(msg.ThreadID)
		if err != nil {
			return providers.Result{}, fmt.Errorf("telegram: thread id %q is not numeric", msg.ThreadID)
		}
	}
	if msg.ReplyToID != "" {
		id, err := strconv.Atoi(msg.ReplyToID)
		if err != nil {
			return providers.Result{}, fmt.Errorf("telegram: reply-to id %q is not numeric", msg.ReplyToID)
		}
		params.ReplyParameters = &models.ReplyParameters{MessageID: id, AllowSendingWithoutReply: true}
	}
	m, err := p.api.SendMessage(ctx, params)
	if err != nil {
		return providers.Result{}, p.classify("sendMessage", err)
	}
	return providers.Result{MessageID: strconv.Itoa(m.ID), ChatID: strconv.FormatInt(m.Chat.ID, 10)}, nil
}

// Probe implements providers.Prober with getMe.
func (p *Provider) Probe(ctx context.Context) (providers.ProbeResult, error) {
	u, err := p.api.GetMe(ctx)
	if err != nil {
		return providers.ProbeResult{}, p.classify("getMe", err)
	}
	return providers.ProbeResult{OK: true, BotID: strconv.FormatInt(u.ID, 10), BotName: u.Username}, nil
}

// Edit implements providers.Editor with editMessageText.
func (p *Provider) Edit(ctx context.Context, chatID, messageID, text string) error {
	cid, err := strconv.ParseInt(chatID, 10, 64)
	if err != nil {
		return fmt.Errorf("telegram: chat id %q is not numeric", chatID)
	}
	mid, err := strconv.Atoi(messageID)
	if err != nil {
		return fmt.Errorf("telegram: message id %q is not numeric", messageID)
	}
	if _, err := p.api.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: cid, MessageID: mid, Text: text}); err != nil {
		return p.classify("editMessageText", err)
	}
	return nil
}

// observer is the provider's HTTP transport: it holds the getUpdates
// offset back to the last update the gateway took, reports poll failures
// and recoveries, and caps response bodies.
type observer struct{ p *Provider }

func (o *observer) RoundTrip(req *http.Request) (*http.Response, error) {
	poll := path.Base(req.URL.Path) == "getUpdates"
	if poll {
		r2, err := o.p.holdOffset(req)
		if err != nil {
			return nil, err
		}
		req = r2
	}
	resp, err := o.p.transport.RoundTrip(req)
	if poll {
		o.p.observePoll(req.Context(), resp, err)
	}
	if resp != nil {
		resp.Body = &cappedBody{rc: resp.Body, left: maxResponse}
	}
	return resp, err
}

// holdOffset rewrites the offset of a getUpdates request so it confirms
// only updates the gateway has taken. The SDK fetches ahead of its
// handler; without this, a restart would lose what it fetched but had not
// handed over.
func (p *Provider) holdOffset(req *http.Request) (*http.Request, error) {
	ct, params, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || ct != "multipart/form-data" || req.Body == nil {
		return req, nil
	}
	mr := multipart.NewReader(io.LimitReader(req.Body, 64<<10), params["boundary"])
	fields := map[string]string{}
	var order []string
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("telegram: read getUpdates request: %w", err)
		}
		b, err := io.ReadAll(part)
		if err != nil {
			return nil, fmt.Errorf("telegram: read getUpdates request: %w", err)
		}
		fields[part.FormName()] = string(b)
		order = append(order, part.FormName())
	}
	_ = req.Body.Close()
	if off, err := strconv.ParseInt(fields["offset"], 10, 64); err == nil {
		switch taken := p.lastTaken.Load(); {
		case taken == 0:
			// Nothing taken yet: confirm nothing.
			delete(fields, "offset")
		case off > taken+1:
			fields["offset"] = strconv.FormatInt(taken+1, 10)
		}
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, k := range order {
		v, ok := fields[k]
		if !ok {
			continue
		}
		if err := w.WriteField(k, v); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	r2 := req.Clone(req.Context())
	r2.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
	r2.ContentLength = int64(buf.Len())
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }
	r2.Header.Set("Content-Type", w.FormDataContentType())
	return r2, nil
}

// observePoll reports a failed poll (network error or 5xx) as a
// disconnect and a good one as connected.
func (p *Provider) observePoll(ctx context.Context, resp *http.Response, err error) {
	p.mu.Lock()
	rs := p.run
	p.mu.Unlock()
	if rs == nil || ctx.Err() != nil {
		return
	}
	switch {
	case err != nil || resp.StatusCode >= 500:
		reason := "getUpdates failed"
		if err != nil {
			reason += ": " + p.redact(err.Error())
		} else {
			reason += ": HTTP " + strconv.Itoa(resp.StatusCode)
		}
		rs.sink.SetState(providers.StateReconnecting, errors.New(reason))
		select {
		case rs.failed <- struct{}{}:
		default:
		}
	case resp.StatusCode == http.StatusOK:
		rs.sink.SetState(providers.StateConnected, nil)
	}
}

type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (c *cappedBody) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("telegram: response larger than the cap")
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.rc.Read(b)
	c.left -= int64(n)
	return n, err
}

func (c *cappedBody) Close() error { return c.rc.Close() }

// runWebhook serves the webhook until ctx ends.
func (p *Provider) runWebhook(ctx context.Context, rs *runState) error {
	ln, err := net.Listen("tcp", p.cfg.Webhook.Listen)
	if err != nil {
		return fmt.Errorf("telegram: webhook listen: %w", err)
	}
	p.mu.Lock()
	p.addr = ln.Addr().String()
	p.mu.Unlock()
	mux := http.NewServeMux()
	mux.Handle(p.cfg.Webhook.Path, p.webhookHandler(ctx, rs))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
	}
	if p.cfg.Webhook.PublicURL != "" {
		_, err := p.api.SetWebhook(ctx, &bot.SetWebhookParams{URL: p.cfg.Webhook.PublicURL,
			SecretToken: p.cfg.Webhook.Secret, MaxConnections: 1,
			AllowedUpdates: []string{models.AllowedUpdateMessage, models.AllowedUpdateEditedMessage, models.AllowedUpdateMessageReaction}})
		if err != nil {
			stop()
			return p.classify("setWebhook", err)
		}
	}
	rs.sink.SetState(providers.StateConnected, nil)
	select {
	case <-ctx.Done():
		stop()
		return nil
	case err := <-errc:
		return fmt.Errorf("telegram: webhook server: %w", err)
	}
}

// webhookHandler checks the secret header before reading any of the body
// (attack I1), caps the body, refuses deep nesting, and answers 200 only
// once the update is delivered, so Telegram retries what was not.
func (p *Provider) webhookHandler(ctx context.Context, rs *runState) http.Handler {
	want := sha256.Sum256([]byte(p.cfg.Webhook.Secret))
	var serial sync.Mutex // updates are handled one at a time, in order
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		got := sha256.Sum256([]byte(r.Header.Get("X-Telegram-Bot-Api-Secret-Token")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			// Close rather than drain whatever the client still sends.
			w.Header().Set("Connection", "close")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.cfg.Webhook.MaxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if jsonDepth(body) > maxJSONDepth {
			http.Error(w, "body nested too deeply", http.StatusBadRequest)
			return
		}
		var u models.Update
		if err := json.Unmarshal(body, &u); err != nil {
			http.Error(w, "body is not an update", http.StatusBadRequest)
			return
		}
		serial.Lock()
		defer serial.Unlock()
		in, ok := toInbound(&u)
		if ok {
			if err := rs.sink.Deliver(ctx, in); err != nil {
				http.Error(w, "not delivered", http.StatusServiceUnavailable)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	})
}

// jsonDepth returns the deepest nesting of objects and arrays in b,
// ignoring brackets inside strings. It does not validate b.
func jsonDepth(b []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}
