package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/providers"
)

// chanProvider is an in-memory provider: tests push inbound messages and
// see every Send.
type chanProvider struct {
	name    string
	inbound chan providers.Inbound
	sends   atomic.Int32
	gate    chan struct{} // when set, Send waits for it
	fail    error

	mu   sync.Mutex
	sent []providers.Outbound
}

func newChanProvider(name string) *chanProvider {
	return &chanProvider{name: name, inbound: make(chan providers.Inbound, 16)}
}

func (p *chanProvider) Name() string { return p.name }
func (p *chanProvider) Capabilities() providers.Capabilities {
	return providers.Capabilities{Label: strings.ToUpper(p.name[:1]) + p.name[1:], IDs: providers.IDNumeric, MaxTextLen: 4096, Mode: "test"}
}
func (p *chanProvider) Run(ctx context.Context, sink providers.Sink) error {
	sink.SetState(providers.StateConnected, nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-p.inbound:
			_ = sink.Deliver(ctx, m)
		}
	}
}
func (p *chanProvider) Send(ctx context.Context, msg providers.Outbound) (providers.Result, error) {
	n := p.sends.Add(1)
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return providers.Result{}, ctx.Err()
		}
	}
	if p.fail != nil {
		return providers.Result{}, p.fail
	}
	p.mu.Lock()
	p.sent = append(p.sent, msg)
	p.mu.Unlock()
	return providers.Result{MessageID: "m" + string(rune('0'+n)), ChatID: msg.To}, nil
}

func (p *chanProvider) sentMsgs() []providers.Outbound {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]providers.Outbound(nil), p.sent...)
}

func (p *chanProvider) Probe(context.Context) (providers.ProbeResult, error) {
	return providers.ProbeResult{OK: true, BotID: "42", BotName: "testbot"}, nil
}

// startChannels runs a Supervisor over accts and a gateway wired to it.
func startChannels(t *testing.T, accts ...providers.Account) (*testGateway, *providers.Supervisor) {
	t.Helper()
	sup, err := providers.NewSupervisor(providers.Options{MinBackoff: 10 * time.Millisecond}, accts...)
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, func(o *Options) { o.Providers = sup })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for _, st := range sup.Statuses() {
		for !st.Connected() && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
			st = statusOf(sup, st.Channel, st.AccountID)
		}
	}
	return g, sup
}

func statusOf(sup *providers.Supervisor, channel, account string) providers.Status {
	for _, st := range sup.Statuses() {
		if st.Channel == channel && st.AccountID == account {
			return st
		}
	}
	return providers.Status{}
}

// chanEvents collects events seen by a client.
type chanEvents struct {
	mu  sync.Mutex
	evs []client.Event
}

func (l *chanEvents) on(e client.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

func (l *chanEvents) named(name string) []client.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []client.Event
	for _, e := range l.evs {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func (l *chanEvents) wait(t *testing.T, name string, n int) []client.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if evs := l.named(name); len(evs) >= n {
			return evs
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("fewer than %d %s events: %d", n, name, len(l.named(name)))
	return nil
}

func callJSON(t *testing.T, c *client.Client, method string, params any) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := c.Call(ctx, method, params)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s result is not an object: %s", method, raw)
	}
	return m, nil
}

func remoteCode(err error) (string, string) {
	var re *client.RemoteError
	if errors.As(err, &re) {
		return re.Code, re.DetailCode()
	}
	return "", ""
}

func TestSendThroughProvider(t *testing.T) {
	p := newChanProvider("telegram")
	g, _ := startChannels(t, providers.Account{Provider: p, Policy: providers.Policy{AllowTo: []string{"1111111"}}})
	c := g.dialClient(t, nil)

	res, err := callJSON(t, c, "send", map[string]any{"to": "1111111", "message": "hello", "idempotencyKey": "k1", "threadId": "7"})
	if err != nil {
		t.Fatal(err)
	}
	if res["runId"] != "k1" || res["messageId"] != "m1" || res["channel"] != "telegram" || res["chatId"] != "1111111" || res["accountId"] != "default" {
		t.Errorf("send result = %v", res)
	}
	if sent := p.sentMsgs(); len(sent) != 1 || sent[0].Text != "hello" || sent[0].ThreadID != "7" {
		t.Errorf("provider saw %+v", sent)
	}

	// A retry with the same key returns the cached result and sends nothing.
	again, err := callJSON(t, c, "send", map[string]any{"to": "1111111", "message": "hello", "idempotencyKey": "k1"})
	if err != nil || again["messageId"] != "m1" {
		t.Errorf("retry: %v %v", again, err)
	}
	if n := p.sends.Load(); n != 1 {
		t.Errorf("provider called %d times for one idempotency key", n)
	}
}

// TestSendConcurrentDuplicatesCoalesce: many callers with one key, while
// the first delivery is still in flight, share its single send.
func TestSendConcurrentDuplicatesCoalesce(t *testing.T) {
	p := newChanProvider("telegram")
	p.gate = make(chan struct{})
	g, _ := startChannels(t, providers.Account{Provider: p, Policy: providers.Policy{AllowTo: []string{"*"}}})
	const n = 12
	results := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		c := g.dialClient(t, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			params := map[string]any{"to": "5", "message": "once", "idempotencyKey": "dup"}
			if i%2 == 1 {
				params["message"] = "once (retry)"
			}
			res, err := callJSON(t, c, "send", params)
			if err != nil {
				results <- "err: " + err.Error()
				return
			}
			results <- res["messageId"].(string)
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.sends.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the duplicates arrive and wait
	close(p.gate)
	wg.Wait()
	close(results)
	for r := range results {
		if r != "m1" {
			t.Errorf("a duplicate got %q, want the first send's m1", r)
		}
	}
	if got := p.sends.Load(); got != 1 {
		t.Errorf("provider called %d times for %d concurrent duplicates", got, n)
	}
}

func TestSendRefusals(t *testing.T) {
	p := newChanProvider("telegram")
	p2 := newChanProvider("slack")
	g, _ := startChannels(t,
		providers.Account{Provider: p, Policy: providers.Policy{AllowTo: []string{"1111111"}}},
		providers.Account{Provider: p2})
	c := g.dialClient(t, nil)
	cases := []struct {
		name     string
		params   map[string]any
		code     string
		contains string
	}{
		{"two channels, none chosen", map[string]any{"to": "1", "message": "x", "idempotencyKey": "a"}, "INVALID_REQUEST", "Channel is required"},
		{"unknown channel", map[string]any{"to": "1", "message": "x", "idempotencyKey": "b", "channel": "irc"}, "INVALID_REQUEST", "unknown channel"},
		{"unknown account", map[string]any{"to": "1", "message": "x", "idempotencyKey": "c", "channel": "telegram", "accountId": "work"}, "INVALID_REQUEST", "account"},
		// Attack I11's send case: a destination outside allowTo.
		{"unlisted destination", map[string]any{"to": "2222222", "message": "x", "idempotencyKey": "d", "channel": "telegram"}, "FORBIDDEN", "allowTo"},
		{"suffix lookalike", map[string]any{"to": "+9991111111", "message": "x", "idempotencyKey": "e", "channel": "telegram"}, "INVALID_REQUEST", "not a valid"},
		{"media", map[string]any{"to": "1111111", "mediaUrl": "file:///etc/passwd", "message": "x", "idempotencyKey": "f", "channel": "telegram"}, "INVALID_REQUEST", "media"},
		{"empty text", map[string]any{"to": "1111111", "message": " ", "idempotencyKey": "g", "channel": "telegram"}, "INVALID_REQUEST", "empty"},
		{"too long", map[string]any{"to": "1111111", "message": strings.Repeat("x", 4097), "idempotencyKey": "h", "channel": "telegram"}, "INVALID_REQUEST", "longer"},
		{"no idempotency key", map[string]any{"to": "1111111", "message": "x", "channel": "telegram"}, "INVALID_REQUEST", "idempotencyKey"},
		{"unknown field", map[string]any{"to": "1111111", "message": "x", "idempotencyKey": "i", "channel": "telegram", "approved": true}, "INVALID_REQUEST", "approved"},
	}
	for _, tc := range cases {
		_, err := callJSON(t, c, "send", tc.params)
		code, _ := remoteCode(err)
		if code != tc.code || err == nil || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%s: err = %v, want %s mentioning %q", tc.name, err, tc.code, tc.contains)
		}
	}
	if n := p.sends.Load() + p2.sends.Load(); n != 0 {
		t.Errorf("%d sends reached a provider", n)
	}
	// Mistakes are not cached: the corrected request with the same key
	// goes through.
	if _, err := callJSON(t, c, "send", map[string]any{"to": "1111111", "message": "x", "idempotencyKey": "a", "channel": "telegram"}); err != nil {
		t.Errorf("corrected request with the key of a refused one: %v", err)
	}

	// Read-only operators may not send.
	ro := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeRead} })
	_, err := callJSON(t, ro, "send", map[string]any{"to": "1111111", "message": "x", "idempotencyKey": "z", "channel": "telegram"})
	if _, detail := remoteCode(err); detail != protocol.DetailMissingScope {
		t.Errorf("read-only send: %v", err)
	}
}

// TestSendFailureIsCachedNotRetried: a delivery that failed is reported as
// UNAVAILABLE, and a retry with the same key gets that answer again
// without a second attempt at the service.
func TestSendFailureIsCachedNotRetried(t *testing.T) {
	p := newChanProvider("telegram")
	p.fail = errors.New("telegram sendMessage: Bad Request: chat not found")
	g, _ := startChannels(t, providers.Account{Provider: p, Policy: providers.Policy{AllowTo: []string{"*"}}})
	c := g.dialClient(t, nil)
	for range 2 {
		_, err := callJSON(t, c, "send", map[string]any{"to": "5", "message": "x", "idempotencyKey": "fail-1"})
		if code, _ := remoteCode(err); code != protocol.ErrUnavailable || !strings.Contains(err.Error(), "chat not found") {
			t.Errorf("failed send: %v", err)
		}
	}
	if n := p.sends.Load(); n != 1 {
		t.Errorf("provider called %d times", n)
	}
}

func TestSendWithoutChannels(t *testing.T) {
	g := startGateway(t, nil)
	c := g.dialClient(t, nil)
	_, err := callJSON(t, c, "send", map[string]any{"to": "probe-target", "message": "hi", "idempotencyKey": "cli-idem-1"})
	if code, _ := remoteCode(err); code != "INVALID_REQUEST" || !strings.Contains(err.Error(), "Channel is required (no configured channels detected)") {
		t.Errorf("send without channels: %v", err)
	}
	res, err := callJSON(t, c, "channels.status", map[string]any{})
	if err != nil || len(res["channelOrder"].([]any)) != 0 {
		t.Errorf("channels.status without channels: %v %v", res, err)
	}
}

// TestInboundBecomesEvents: an admitted message reaches operators with
// read scope as session.message and chat; other operators see nothing.
func TestInboundBecomesEvents(t *testing.T) {
	p := newChanProvider("telegram")
	g, _ := startChannels(t, providers.Account{Provider: p, Policy: providers.Policy{AllowFrom: []string{"1111111"}}})
	var reader, pairer chanEvents
	rc := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeRead}; o.OnEvent = reader.on })
	if ev := rc.Hello().Features.Events; !containsStr(ev, EventSessionMessage) || containsStr(ev, EventWebLogin) {
		t.Errorf("hello-ok events %v: want session.message and no web.login (this channel has no QR login)", ev)
	}
	g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopePairing}; o.OnEvent = pairer.on })

	p.inbound <- providers.Inbound{Kind: providers.KindMessage, ID: "1111111:1365", MessageID: "1365", ChatID: "1111111",
		ChatType: providers.ChatDirect, SenderID: "1111111", SenderName: "Test", Text: "hello gateway", Time: time.Unix(1441645532, 0)}
	p.inbound <- providers.Inbound{Kind: providers.KindMessage, ID: "2:1", ChatID: "2", ChatType: providers.ChatDirect, SenderID: "2", Text: "stranger"}

	sm := reader.wait(t, EventSessionMessage, 1)[0]
	var ev sessionMessageEvent
	if err := json.Unmarshal(sm.Payload, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.SessionKey != "telegram:default:1111111" || ev.Message.Role != "user" || ev.Message.Content[0].Text != "hello gateway" ||
		ev.SenderID != "1111111" || ev.ChatType != "direct" || ev.Message.Timestamp != 1441645532000 || sm.Seq == nil {
		t.Errorf("session.message = %s", sm.Payload)
	}
	chat := reader.wait(t, protocol.EventChat, 1)[0]
	var ce map[string]any
	_ = json.Unmarshal(chat.Payload, &ce)
	if ce["state"] != "final" || ce["sessionKey"] != "telegram:default:1111111" || ce["runId"] == "" {
		t.Errorf("chat = %s", chat.Payload)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(reader.named(EventSessionMessage)); n != 1 {
		t.Errorf("%d session.message events; the stranger's message must not be one", n)
	}
	if n := len(pairer.named(EventSessionMessage)) + len(pairer.named(protocol.EventChat)); n != 0 {
		t.Errorf("an operator without read scope got %d message events", n)
	}
}

func TestChannelsStatusHealthAndLogout(t *testing.T) {
	p := newChanProvider("telegram")
	g, sup := startChannels(t, providers.Account{Provider: p, Label: "Home bot", TokenSource: "file",
		Policy: providers.Policy{AllowFrom: []string{"1111111"}, AllowTo: []string{"*"}, DMPairing: true}})
	var admin chanEvents
	c := g.dialClient(t, func(o *client.Options) { o.OnEvent = admin.on })

	h, err := callJSON(t, c, "health", nil)
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := h["channels"].(map[string]any)["telegram"].(map[string]any)
	if tg["configured"] != true || tg["connected"] != true || h["channelLabels"].(map[string]any)["telegram"] != "Telegram" {
		t.Errorf("health channels = %v", h["channels"])
	}

	st, err := callJSON(t, c, "channels.status", map[string]any{"probe": true, "timeoutMs": 2000})
	if err != nil {
		t.Fatal(err)
	}
	acct := st["channelAccounts"].(map[string]any)["telegram"].([]any)[0].(map[string]any)
	if acct["accountId"] != "default" || acct["connected"] != true || acct["dmPolicy"] != "pairing" ||
		acct["tokenSource"] != "file" || acct["name"] != "Home bot" || acct["probe"].(map[string]any)["botName"] != "testbot" {
		t.Errorf("channel account = %v", acct)
	}
	if st["channelDefaultAccountId"].(map[string]any)["telegram"] != "default" {
		t.Errorf("default account = %v", st["channelDefaultAccountId"])
	}
	if _, err := callJSON(t, c, "channels.status", map[string]any{"channel": "irc"}); err == nil {
		t.Error("channels.status for an unknown channel succeeded")
	}
	summary, _ := callJSON(t, c, "status", nil)
	if lines := summary["channelSummary"].([]any); len(lines) != 1 || !strings.Contains(lines[0].(string), "connected") {
		t.Errorf("status channelSummary = %v", summary["channelSummary"])
	}

	// channels.logout is admin-only.
	w := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeWrite} })
	if _, err := callJSON(t, w, "channels.logout", map[string]any{"channel": "telegram"}); err == nil {
		t.Error("channels.logout with write scope succeeded")
	}
	before := len(admin.named(protocol.EventHealth))
	res, err := callJSON(t, c, "channels.logout", map[string]any{"channel": "telegram"})
	if err != nil || res["loggedOut"] != true || res["cleared"] != false {
		t.Fatalf("logout: %v %v (a bot token stays in its file: nothing cleared)", res, err)
	}
	admin.wait(t, protocol.EventHealth, before+1) // the status change is published
	if s := statusOf(sup, "telegram", "default"); s.State != providers.StateLoggedOut {
		t.Errorf("state after logout = %s", s.State)
	}
	_, err = callJSON(t, c, "send", map[string]any{"to": "5", "message": "x", "idempotencyKey": "after-logout"})
	if code, detail := remoteCode(err); code != protocol.ErrUnavailable || detail != "CHANNEL_LOGGED_OUT" {
		t.Errorf("send after logout: %v", err)
	}
}

// linkedProvider is a channel linked as a device: logging out forgets
// its session.
type linkedProvider struct {
	*chanProvider
	forgot atomic.Bool
}

func (p *linkedProvider) Logout(context.Context) error { p.forgot.Store(true); return nil }

func TestChannelsLogoutClearsLinkedSession(t *testing.T) {
	p := &linkedProvider{chanProvider: newChanProvider("whatsapp")}
	g, _ := startChannels(t, providers.Account{Provider: p})
	c := g.dialClient(t, nil)
	res, err := callJSON(t, c, "channels.logout", map[string]any{"channel": "whatsapp"})
	if err != nil || res["cleared"] != true || res["loggedOut"] != true || !p.forgot.Load() {
		t.Fatalf("logout: %v %v (session forgotten: %v)", res, err, p.forgot.Load())
	}
}

func TestChannelPairingMethods(t *testing.T) {
	p := newChanProvider("telegram")
	g, _ := startChannels(t, providers.Account{Provider: p, Policy: providers.Policy{DMPairing: true}})
	var reader chanEvents
	c := g.dialClient(t, func(o *client.Options) { o.OnEvent = reader.on })
	p.inbound <- providers.Inbound{Kind: providers.KindMessage, ID: "777:1", ChatID: "777", ChatType: providers.ChatDirect, SenderID: "777", SenderName: "Eve", Text: "let me in"}
	var list map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		list, _ = callJSON(t, c, "channels.pairing.list", map[string]any{})
		if len(list["requests"].([]any)) == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	reqs := list["requests"].([]any)
	if len(reqs) != 1 {
		t.Fatalf("pairing list = %v", list)
	}
	req := reqs[0].(map[string]any)
	code := req["requestId"].(string)
	for len(p.sentMsgs()) == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if sent := p.sentMsgs(); req["senderId"] != "777" || req["senderLabel"] != "Eve" || len(sent) != 1 || !strings.Contains(sent[0].Text, code) {
		t.Errorf("request %v, code sent %+v", req, sent)
	}
	res, err := callJSON(t, c, "channels.pairing.approve", map[string]any{"channel": "telegram", "accountId": "default",
		"requestId": strings.ToLower(code), "notify": true})
	if err != nil || res["senderId"] != "777" || res["notification"] != "sent" {
		t.Fatalf("approve: %v %v", res, err)
	}
	p.inbound <- providers.Inbound{Kind: providers.KindMessage, ID: "777:2", ChatID: "777", ChatType: providers.ChatDirect, SenderID: "777", Text: "thanks"}
	reader.wait(t, EventSessionMessage, 1)
	if _, err := callJSON(t, c, "channels.pairing.approve", map[string]any{"channel": "telegram", "accountId": "default", "requestId": code}); err == nil {
		t.Error("a code was approved twice")
	}
}
