package slack

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/providertest"
	"github.com/clawgate/clawgate/providers/slack/fake"
)

const (
	botToken = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
	appToken = "xapp-1-A01K58AR4RF-2234567890123-0123456789abcdef0123456789abcdef"
)

type contractFake struct{ *fake.Server }

func (f contractFake) Sent() []providertest.Sent {
	var out []providertest.Sent
	for _, s := range f.Server.Sent() {
		out = append(out, providertest.Sent{ChatID: s.Channel, Text: s.Text})
	}
	return out
}

func newProvider(t *testing.T, log *slog.Logger) (*Provider, *fake.Server) {
	t.Helper()
	f := fake.New(botToken, appToken)
	p, err := New(Config{BotToken: botToken, AppToken: appToken, APIURL: f.APIURL, Logger: log, PingTimeout: 5 * time.Second})
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	return p, f
}

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T, log *slog.Logger) providertest.Subject {
		p, f := newProvider(t, log)
		return providertest.Subject{Provider: p, Fake: contractFake{f}, Secrets: []string{botToken, appToken}}
	})
}

type recSink struct {
	mu     sync.Mutex
	in     []providers.Inbound
	states []providers.State
	gate   chan struct{}
}

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
	return nil
}

func (s *recSink) SetState(st providers.State, _ error) {
	s.mu.Lock()
	s.states = append(s.states, st)
	s.mu.Unlock()
}

func (s *recSink) inbound() []providers.Inbound {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]providers.Inbound(nil), s.in...)
}

func (s *recSink) connects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.states {
		if st == providers.StateConnected {
			n++
		}
	}
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

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

// TestReplayIsDedupedByEventID is attack I3's replay case (and I12): Slack
// retries an event in a new envelope with the same event_id; both
// envelopes are acknowledged and the gateway sees the message once.
func TestReplayIsDedupedByEventID(t *testing.T) {
	p, f := newProvider(t, nil)
	defer f.Close()
	sup, err := providers.NewSupervisor(providers.Options{MinBackoff: 10 * time.Millisecond},
		providers.Account{Provider: p, Policy: providers.Policy{AllowFrom: []string{fake.SenderID}}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []providers.Inbound
	defer sup.Watch(func(ev providers.Event) {
		if ev.Inbound != nil {
			mu.Lock()
			got = append(got, *ev.Inbound)
			mu.Unlock()
		}
	})()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "connected", func() bool { return sup.Statuses()[0].Connected() })

	inner := map[string]any{"type": "message", "channel": fake.DMChat, "user": fake.SenderID,
		"text": "only once", "ts": "1355517523.000005", "channel_type": "im"}
	id := f.InjectEvent(inner, "")
	for range 3 {
		f.InjectEvent(inner, id)
	}
	eventually(t, "four acks", func() bool { return len(f.Acks()) == 4 })
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].ID != id || got[0].Text != "only once" {
		t.Errorf("delivered %+v, want one message with id %s", got, id)
	}
	if d := sup.Statuses()[0].Duplicates; d != 3 {
		t.Errorf("duplicates = %d, want 3", d)
	}
}

// TestUnackedEnvelopeRedeliveredAfterDrop is attack I12: an envelope not
// yet acknowledged when the socket drops comes again on the next socket;
// nothing is lost and it is acknowledged in the end.
func TestUnackedEnvelopeRedeliveredAfterDrop(t *testing.T) {
	p, f := newProvider(t, nil)
	defer f.Close()
	sink := &recSink{gate: make(chan struct{})}
	runProvider(t, p, sink)
	eventually(t, "connected", func() bool { return sink.connects() == 1 })
	id := f.InjectMessage(fake.DMChat, "im", fake.SenderID, "held")
	time.Sleep(50 * time.Millisecond) // the provider is now blocked in Deliver
	if f.Unacked() != 1 {
		t.Fatalf("unacked = %d before delivery", f.Unacked())
	}
	f.Drop()
	// The SDK reconnects on its own while the handler is still busy.
	eventually(t, "reconnected", func() bool { return f.Connections() == 2 && f.Live() == 1 })
	sink.mu.Lock()
	close(sink.gate)
	sink.gate = nil
	sink.mu.Unlock()
	eventually(t, "redelivery", func() bool { return len(sink.inbound()) >= 2 })
	eventually(t, "acked", func() bool { return f.Unacked() == 0 })
	if sink.connects() < 2 {
		t.Errorf("reconnect not reported: %d connects", sink.connects())
	}
	for _, m := range sink.inbound() {
		if m.ID != id || m.Text != "held" {
			t.Errorf("delivered %+v", m)
		}
	}
}

func TestInboundShapes(t *testing.T) {
	p, f := newProvider(t, nil)
	defer f.Close()
	sink := &recSink{}
	runProvider(t, p, sink)
	eventually(t, "connected", func() bool { return sink.connects() == 1 })

	f.InjectMessage("C024BE91L", "channel", "U2147483697", "in a channel")
	f.InjectEvent(map[string]any{"type": "message", "subtype": "bot_message", "bot_id": "B123", "text": "bot",
		"channel": "C024BE91L", "ts": "1.1", "channel_type": "channel"}, "")
	f.InjectEvent(map[string]any{"type": "message", "subtype": "channel_join", "user": "U2147483697", "text": "joined",
		"channel": "C024BE91L", "ts": "1.2", "channel_type": "channel"}, "")
	f.InjectEvent(map[string]any{"type": "message", "subtype": "message_changed", "channel": "C024BE91L",
		"channel_type": "channel", "ts": "1.3", "hidden": true,
		"message": map[string]any{"type": "message", "user": "U2147483697", "text": "edited", "ts": "1355517523.000005",
			"edited": map[string]any{"user": "U2147483697", "ts": "1.3"}},
		"previous_message": map[string]any{"type": "message", "user": "U2147483697", "text": "in a channel", "ts": "1355517523.000005"}}, "")
	f.InjectEvent(map[string]any{"type": "reaction_added", "user": "U2147483697", "reaction": "thumbsup",
		"item_user": fake.BotUser, "item": map[string]any{"type": "message", "channel": "C024BE91L", "ts": "1355517523.000005"},
		"event_ts": "1360782804.083113"}, "")
	f.InjectMessage(fake.DMChat, "im", fake.SenderID, "in a thread") // plain
	// An event type the SDK cannot parse and a slash command: acknowledged,
	// not delivered.
	f.InjectEvent(map[string]any{"type": "no_such_event_type"}, "")
	f.InjectRaw([]byte(`{"envelope_id":"slash-1","type":"slash_commands","accepts_response_payload":true,"payload":{"command":"/config","text":"x","user_id":"U2147483697","channel_id":"C024BE91L"}}`))

	eventually(t, "four deliveries", func() bool { return len(sink.inbound()) >= 4 })
	eventually(t, "every envelope acked", func() bool { return len(f.Acks()) == 8 })
	got := sink.inbound()
	if len(got) != 4 {
		t.Fatalf("delivered %+v", got)
	}
	if g := got[0]; g.ChatType != providers.ChatChannel || g.SenderID != "U2147483697" || g.ID == "" || g.MessageID == "" {
		t.Errorf("channel message: %+v", g)
	}
	if e := got[1]; e.Kind != providers.KindEdit || e.Text != "edited" || e.MessageID != "1355517523.000005" {
		t.Errorf("edit: %+v", e)
	}
	if r := got[2]; r.Kind != providers.KindReaction || r.Text != ":thumbsup:" || r.ChatID != "C024BE91L" {
		t.Errorf("reaction: %+v", r)
	}
	if d := got[3]; d.ChatType != providers.ChatDirect || d.ChatID != fake.DMChat {
		t.Errorf("direct message: %+v", d)
	}
}

func TestDisconnectFrameReconnects(t *testing.T) {
	p, f := newProvider(t, nil)
	defer f.Close()
	sink := &recSink{}
	runProvider(t, p, sink)
	eventually(t, "connected", func() bool { return sink.connects() == 1 })
	f.Disconnect()
	eventually(t, "second socket", func() bool { return f.Connections() == 2 && sink.connects() >= 2 })
	f.Inject("after refresh")
	eventually(t, "delivered", func() bool { return len(sink.inbound()) == 1 })
}

func TestSendProbeEdit(t *testing.T) {
	p, f := newProvider(t, nil)
	defer f.Close()
	ctx := context.Background()
	res, err := p.Send(ctx, providers.Outbound{To: "C024BE91L", Text: "hello", ThreadID: "1355517523.000005"})
	if err != nil || res.ChannelID != "C024BE91L" || res.MessageID == "" {
		t.Fatalf("Send: %+v %v", res, err)
	}
	if s := f.Sent(); len(s) != 1 || s[0].ThreadTS != "1355517523.000005" || s[0].Text != "hello" {
		t.Errorf("fake saw %+v", s)
	}
	if err := p.Edit(ctx, "C024BE91L", res.MessageID, "hello!"); err != nil {
		t.Errorf("Edit: %v", err)
	}
	pr, err := p.Probe(ctx)
	if err != nil || !pr.OK || pr.BotID != fake.BotUser {
		t.Errorf("Probe: %+v %v", pr, err)
	}
}

func TestBadTokensArePermanentAndRedacted(t *testing.T) {
	f := fake.New(botToken, appToken)
	defer f.Close()
	wrongApp := "xapp-1-A01K58AR4RF-9999999999999-ffffffffffffffffffffffffffffffff"
	wrongBot := "xoxb-99999999999-99999999999-ffffffffffffffffffffffff"
	p, err := New(Config{BotToken: wrongBot, AppToken: wrongApp, APIURL: f.APIURL})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background(), &recSink{})
	var perm *providers.PermanentError
	if !errors.As(err, &perm) || strings.Contains(err.Error(), wrongApp) {
		t.Errorf("Run with a revoked app token: %v", err)
	}
	_, err = p.Send(context.Background(), providers.Outbound{To: "C024BE91L", Text: "x"})
	if err == nil || strings.Contains(err.Error(), wrongBot) {
		t.Errorf("Send with a revoked bot token: %v", err)
	}
	for _, c := range []Config{{AppToken: appToken}, {BotToken: botToken}, {BotToken: botToken, AppToken: appToken, APIURL: "http://slack.com/api/"}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
