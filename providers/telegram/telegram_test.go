package telegram

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/providertest"
	"github.com/clawgate/clawgate/providers/telegram/fake"
)

const testToken = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-test"

type contractFake struct{ *fake.Server }

func (f contractFake) Sent() []providertest.Sent {
	var out []providertest.Sent
	for _, s := range f.Server.Sent() {
		out = append(out, providertest.Sent{ChatID: s.ChatID, Text: s.Text})
	}
	return out
}

func newPolling(t *testing.T, log *slog.Logger) (*Provider, *fake.Server) {
	t.Helper()
	f := fake.New(testToken)
	p, err := New(Config{Token: testToken, APIURL: f.URL, PollTimeout: 2 * time.Second, Logger: log})
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	return p, f
}

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T, log *slog.Logger) providertest.Subject {
		p, f := newPolling(t, log)
		return providertest.Subject{Provider: p, Fake: contractFake{f}, Secrets: []string{testToken}}
	})
}

// recSink records what a provider delivers, optionally blocking Deliver.
type recSink struct {
	mu     sync.Mutex
	in     []providers.Inbound
	states []providers.State
	gate   chan struct{} // when set, Deliver waits for it
	kick   chan struct{}
}

func newRecSink() *recSink { return &recSink{kick: make(chan struct{}, 1)} }

func (s *recSink) Deliver(ctx context.Context, m providers.Inbound) error {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	s.in = append(s.in, m)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

func (s *recSink) SetState(st providers.State, _ error) {
	s.mu.Lock()
	s.states = append(s.states, st)
	s.mu.Unlock()
}

func (s *recSink) stateList() []providers.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]providers.State(nil), s.states...)
}

func (s *recSink) waitState(t *testing.T, want providers.State) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, st := range s.stateList() {
			if st == want {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("state %s never reported: %v", want, s.stateList())
}

func (s *recSink) texts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.in {
		out = append(out, m.Text)
	}
	return out
}

func (s *recSink) waitN(t *testing.T, n int) []providers.Inbound {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.in)
		s.mu.Unlock()
		if got >= n {
			s.mu.Lock()
			defer s.mu.Unlock()
			return append([]providers.Inbound(nil), s.in...)
		}
		select {
		case <-s.kick:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("got %d inbound, want %d: %q", got, n, s.texts())
		}
	}
}

// runProvider runs p with sink until the test ends.
func runProvider(t *testing.T, p *Provider, sink providers.Sink) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, sink) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
}

// TestAtLeastOnceAcrossDrops is attack I12: the service delivers one
// update three times and drops the connection mid-stream; every message is
// delivered once, in order.
func TestAtLeastOnceAcrossDrops(t *testing.T) {
	p, f := newPolling(t, nil)
	defer f.Close()
	sink := newRecSink()
	runProvider(t, p, sink)
	sink.waitState(t, providers.StateConnected)

	first := f.InjectMessage(fake.SenderID, "private", fake.SenderID, "m0")
	for range 3 {
		f.InjectUpdateWithID(first, map[string]any{"message": fake.Message(1, fake.SenderID, "private", fake.SenderID, "m0")})
	}
	for i := 1; i < 40; i++ {
		f.InjectMessage(fake.SenderID, "private", fake.SenderID, "m"+strconv.Itoa(i))
		if i%10 == 0 {
			f.Drop()
		}
	}
	got := sink.waitN(t, 40)
	time.Sleep(100 * time.Millisecond)
	var want []string
	for i := 0; i < 40; i++ {
		want = append(want, "m"+strconv.Itoa(i))
	}
	// The provider may hand a re-fetched update over again (the
	// Supervisor's dedupe catches that); it must never skip or reorder.
	seen := map[string]bool{}
	var uniq []string
	for _, m := range got {
		if !seen[m.ID] {
			seen[m.ID] = true
			uniq = append(uniq, m.Text)
		}
	}
	if strings.Join(uniq, ",") != strings.Join(want, ",") {
		t.Errorf("delivered %v\nwant      %v", uniq, want)
	}
	if n := len(sink.texts()); n > 40 {
		t.Logf("%d deliveries for 40 messages (re-deliveries are deduped by the Supervisor)", n)
	}
}

// TestOffsetNeverPassesDelivery: the SDK fetches ahead, but the offset
// that confirms updates to Telegram never passes what the gateway took, so
// a restart loses nothing.
func TestOffsetNeverPassesDelivery(t *testing.T) {
	p, f := newPolling(t, nil)
	defer f.Close()
	sink := newRecSink()
	sink.gate = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, sink) }()

	a := f.InjectMessage(fake.SenderID, "private", fake.SenderID, "a")
	// Wait until the SDK has fetched a and polled again for more.
	deadline := time.Now().Add(10 * time.Second)
	for f.Calls("getUpdates") < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	f.InjectMessage(fake.SenderID, "private", fake.SenderID, "b")
	time.Sleep(200 * time.Millisecond)
	for _, off := range f.Offsets() {
		if off > a {
			t.Fatalf("offset %d confirmed update %d before it was delivered (offsets %v)", off, a, f.Offsets())
		}
	}
	// Restart while "a" is still undelivered: nothing is lost.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	sink.gate = nil
	sink.mu.Unlock()
	runProvider(t, p, sink)
	got := sink.waitN(t, 2)
	if got[0].Text != "a" || got[1].Text != "b" {
		t.Errorf("after restart delivered %q", sink.texts())
	}
}

func TestInboundShapes(t *testing.T) {
	p, f := newPolling(t, nil)
	defer f.Close()
	sink := newRecSink()
	runProvider(t, p, sink)

	f.InjectMessage(-1001234567890, "supergroup", 2222222, "group hello")
	// A bot's own message and a sticker-only message are not delivered.
	f.InjectUpdate(map[string]any{"message": map[string]any{"message_id": 7, "date": 1,
		"from": map[string]any{"id": 999, "is_bot": true, "first_name": "Bot"},
		"chat": map[string]any{"id": 999, "type": "private"}, "text": "from a bot"}})
	f.InjectUpdate(map[string]any{"message": map[string]any{"message_id": 8, "date": 1,
		"from": map[string]any{"id": 3333333, "is_bot": false, "first_name": "S"},
		"chat": map[string]any{"id": 3333333, "type": "private"}, "sticker": map[string]any{"file_id": "x"}}})
	edited := fake.Message(1365, fake.SenderID, "private", fake.SenderID, "edited text")
	edited["edit_date"] = 1441645600
	f.InjectUpdate(map[string]any{"edited_message": edited})
	f.InjectUpdate(map[string]any{"message_reaction": map[string]any{
		"chat": map[string]any{"id": fake.SenderID, "type": "private"}, "message_id": 1365,
		"user": map[string]any{"id": fake.SenderID, "is_bot": false, "first_name": "Test"},
		"date": 1441645601, "old_reaction": []any{},
		"new_reaction": []any{map[string]any{"type": "emoji", "emoji": "👍"}}}})
	got := sink.waitN(t, 3)
	time.Sleep(100 * time.Millisecond)
	if len(sink.texts()) != 3 {
		t.Fatalf("delivered %q", sink.texts())
	}
	g := got[0]
	if g.ChatID != "-1001234567890" || g.ChatType != providers.ChatGroup || g.SenderID != "2222222" || g.SenderName != "Test Lastname" {
		t.Errorf("group message: %+v", g)
	}
	e := got[1]
	if e.Kind != providers.KindEdit || e.MessageID != "1365" || e.Text != "edited text" || e.ID == "" {
		t.Errorf("edit: %+v", e)
	}
	r := got[2]
	if r.Kind != providers.KindReaction || r.Text != "👍" || r.SenderID != strconv.Itoa(fake.SenderID) {
		t.Errorf("reaction: %+v", r)
	}
}

func TestSendProbeEdit(t *testing.T) {
	p, f := newPolling(t, nil)
	defer f.Close()
	ctx := context.Background()
	res, err := p.Send(ctx, providers.Outbound{To: "-1001234567890", Text: "hi", ThreadID: "42", ReplyToID: "1365"})
	if err != nil || res.ChatID != "-1001234567890" || res.MessageID == "" {
		t.Fatalf("Send: %+v %v", res, err)
	}
	sent := f.Sent()
	if len(sent) != 1 || sent[0].ThreadID != "42" || sent[0].ReplyTo != "1365" || sent[0].Text != "hi" {
		t.Errorf("fake saw %+v", sent)
	}
	if err := p.Edit(ctx, "-1001234567890", res.MessageID, "hi!"); err != nil {
		t.Errorf("Edit: %v", err)
	}
	pr, err := p.Probe(ctx)
	if err != nil || !pr.OK || pr.BotName != fake.BotUsername {
		t.Errorf("Probe: %+v %v", pr, err)
	}
	if _, err := p.Send(ctx, providers.Outbound{To: "1", Text: " "}); err == nil || strings.Contains(err.Error(), testToken) {
		t.Errorf("rejected send: %v", err)
	}
}

func TestBadTokenIsPermanentAndRedacted(t *testing.T) {
	f := fake.New(testToken)
	defer f.Close()
	wrong := "987654321:ZZZdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-nope"
	p, err := New(Config{Token: wrong, APIURL: f.URL, PollTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background(), newRecSink())
	var perm *providers.PermanentError
	if !errors.As(err, &perm) {
		t.Fatalf("Run with a revoked token: %v, want a permanent error", err)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), "ZZZdq") {
		t.Errorf("error leaks the token: %v", err)
	}
	if _, err := p.Send(context.Background(), providers.Outbound{To: "1", Text: "x"}); err == nil || strings.Contains(err.Error(), wrong) {
		t.Errorf("Send error: %v", err)
	}
}

func TestConfigChecks(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no token", Config{}, "token"},
		{"malformed token", Config{Token: "abc"}, "token"},
		{"plain http to a remote host", Config{Token: testToken, APIURL: "http://api.telegram.org"}, "https"},
		// Attack I8: webhook mode without its secret is refused.
		{"webhook without secret", Config{Token: testToken, Mode: ModeWebhook, Webhook: WebhookConfig{Listen: "127.0.0.1:0"}}, "secret"},
		{"webhook short secret", Config{Token: testToken, Mode: ModeWebhook, Webhook: WebhookConfig{Listen: "127.0.0.1:0", Secret: "short"}}, "shorter"},
		{"webhook bad secret chars", Config{Token: testToken, Mode: ModeWebhook, Webhook: WebhookConfig{Listen: "127.0.0.1:0", Secret: "has spaces in it, 1234567890"}}, "only"},
		{"webhook http public url", Config{Token: testToken, Mode: ModeWebhook, Webhook: WebhookConfig{Listen: "127.0.0.1:0", Secret: "0123456789abcdef0123", PublicURL: "http://x.example/hook"}}, "https"},
		{"unknown mode", Config{Token: testToken, Mode: "push"}, "mode"},
	}
	for _, c := range cases {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), testToken) {
			t.Errorf("%s: error leaks the token", c.name)
		}
	}
}

const webhookSecret = "s3cr3t-webhook-token_0123456789"

func newWebhook(t *testing.T) (*Provider, *fake.Server, *recSink, string) {
	t.Helper()
	f := fake.New(testToken)
	t.Cleanup(f.Close)
	p, err := New(Config{Token: testToken, APIURL: f.URL, Mode: ModeWebhook, Webhook: WebhookConfig{
		Listen: "127.0.0.1:0", Path: "/tg", Secret: webhookSecret, PublicURL: "https://gateway.example.invalid/tg"}})
	if err != nil {
		t.Fatal(err)
	}
	sink := newRecSink()
	runProvider(t, p, sink)
	deadline := time.Now().Add(5 * time.Second)
	for p.Addr() == "" || len(sink.stateList()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("webhook listener not up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p, f, sink, "http://" + p.Addr() + "/tg"
}

func TestWebhookDelivers(t *testing.T) {
	_, f, sink, url := newWebhook(t)
	if u, sec := f.Webhook(); u != "https://gateway.example.invalid/tg" || sec != webhookSecret {
		t.Errorf("setWebhook registered %q with secret %q", u, sec)
	}
	body := `{"update_id":10000,"message":` + mustJSON(fake.Message(1365, fake.SenderID, "private", fake.SenderID, "via webhook")) + `}`
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("X-Telegram-Bot-Api-Secret-Token", webhookSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := sink.waitN(t, 1); got[0].Text != "via webhook" {
		t.Errorf("delivered %+v", got[0])
	}
	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d", resp.StatusCode)
	}
}

// TestWebhookRejectsBeforeReading is attack I1: without the right secret
// header, a request announcing a 100 MB body is answered 401 after only
// its first 4 KiB were sent.
func TestWebhookRejectsBeforeReading(t *testing.T) {
	_, _, sink, url := newWebhook(t)
	addr := strings.TrimPrefix(strings.TrimSuffix(url, "/tg"), "http://")
	for name, header := range map[string]string{
		"missing": "",
		"wrong":   "X-Telegram-Bot-Api-Secret-Token: " + webhookSecret[:len(webhookSecret)-1] + "X\r\n",
		"prefix":  "X-Telegram-Bot-Api-Secret-Token: " + webhookSecret[:10] + "\r\n",
	} {
		status := rawPost(t, addr, header, 100<<20, 4096)
		if status != http.StatusUnauthorized {
			t.Errorf("%s secret: status %d, want 401", name, status)
		}
	}
	// With the right secret, the body is capped.
	if status := rawPost(t, addr, "X-Telegram-Bot-Api-Secret-Token: "+webhookSecret+"\r\n", 100<<20, 2<<20); status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: status %d, want 413", status)
	}
	if n := len(sink.texts()); n != 0 {
		t.Errorf("%d messages delivered from rejected requests", n)
	}
}

// rawPost sends a POST that announces length bytes but writes only send of
// them, then reads the status line.
func rawPost(t *testing.T, addr, header string, length, send int) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "POST /tg HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n", addr, header, length)
	chunk := []byte(strings.Repeat("[", 1024))
	for sent := 0; sent < send; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			break // the server may close once it has answered
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	return resp.StatusCode
}

// TestWebhookHostileBodies is attack I13 over the webhook: deep nesting,
// invalid UTF-8 and malformed JSON get a 4xx and no panic.
func TestWebhookHostileBodies(t *testing.T) {
	_, _, sink, url := newWebhook(t)
	post := func(body string) int {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", webhookSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deep := `{"update_id":1,"message":` + strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000) + "}"
	if s := post(deep); s != http.StatusBadRequest {
		t.Errorf("10k-deep JSON: %d", s)
	}
	if s := post(`{"update_id":`); s != http.StatusBadRequest {
		t.Errorf("truncated JSON: %d", s)
	}
	bad := `{"update_id":2,"message":{"message_id":1,"date":1,"from":{"id":1111111,"is_bot":false,"first_name":"x"},"chat":{"id":1111111,"type":"private"},"text":"a` + "\xff\xfe" + `b"}}`
	if s := post(bad); s != http.StatusOK {
		t.Errorf("invalid UTF-8 text: %d", s)
	}
	// The SDK's JSON decoder turns invalid bytes into U+FFFD; whatever
	// reaches the sink is valid UTF-8 (the Supervisor checks it again).
	for _, m := range sink.waitN(t, 1) {
		if !utf8.ValidString(m.Text) || strings.Contains(m.Text, "\xff") {
			t.Errorf("invalid UTF-8 passed through: %q", m.Text)
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestHugeMessageDropped is attack I13 over long polling: a 10 MB text
// arrives through getUpdates, is dropped by the policy without a panic,
// and the next message still gets through.
func TestHugeMessageDropped(t *testing.T) {
	p, f := newPolling(t, nil)
	defer f.Close()
	sup, err := providers.NewSupervisor(providers.Options{}, providers.Account{Provider: p,
		Policy: providers.Policy{AllowFrom: []string{strconv.Itoa(fake.SenderID)}}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	defer sup.Watch(func(ev providers.Event) {
		if ev.Inbound != nil {
			mu.Lock()
			got = append(got, ev.Inbound.Text)
			mu.Unlock()
		}
	})()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() { cancel(); <-done }()

	f.InjectMessage(fake.SenderID, "private", fake.SenderID, strings.Repeat("A", 10<<20))
	f.InjectMessage(fake.SenderID, "private", fake.SenderID, "small")
	// Decoding 10 MB of JSON is slow under the race detector.
	deadline := time.Now().Add(90 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "small" {
		t.Errorf("delivered %d messages (first %d bytes)", len(got), len(strings.Join(got, "")))
	}
	if st := sup.Statuses()[0]; st.Dropped != 1 {
		t.Errorf("dropped = %d, want 1", st.Dropped)
	}
}
