package discord

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
	"go.uber.org/goleak"

	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/discord/fake"
	"github.com/clawgate/clawgate/providers/providertest"
)

const testToken = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhLx1a.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

type contractFake struct{ *fake.Server }

func (f contractFake) Sent() []providertest.Sent {
	var out []providertest.Sent
	for _, s := range f.Server.Sent() {
		out = append(out, providertest.Sent{ChatID: s.ChannelID, Text: s.Content})
	}
	return out
}

func newProvider(t *testing.T, log *slog.Logger) (*Provider, *fake.Server) {
	t.Helper()
	f := fake.New(testToken)
	p, err := New(Config{Token: testToken, APIURL: f.URL, OpenTimeout: 5 * time.Second, Logger: log})
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	return p, f
}

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T, log *slog.Logger) providertest.Subject {
		p, f := newProvider(t, log)
		return providertest.Subject{Provider: p, Fake: contractFake{f}, Secrets: []string{testToken}}
	})
}

type watched struct {
	sup *providers.Supervisor
	mu  sync.Mutex
	in  []providers.Inbound
}

func (w *watched) inbound() []providers.Inbound {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]providers.Inbound(nil), w.in...)
}

func supervise(t *testing.T, p *Provider, pol providers.Policy) *watched {
	t.Helper()
	sup, err := providers.NewSupervisor(providers.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		providers.Account{Provider: p, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	w := &watched{sup: sup}
	stop := sup.Watch(func(ev providers.Event) {
		if ev.Inbound != nil {
			w.mu.Lock()
			w.in = append(w.in, *ev.Inbound)
			w.mu.Unlock()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		cancel()
		<-done
	})
	eventually(t, "connected", func() bool { return sup.Statuses()[0].Connected() })
	return w
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

// TestMemberGateCoversEditsAndReactions is attack I5: a reaction or an
// edit from a member who is not allowlisted is ignored like a message;
// members with an allowed role pass for all three.
func TestMemberGateCoversEditsAndReactions(t *testing.T) {
	p, f := newProvider(t, nil)
	defer f.Close()
	const allowedRole = "41771983423143936"
	const stranger = "80351110224678912"
	w := supervise(t, p, providers.Policy{AllowFrom: []string{fake.SenderID}, AllowRoles: []string{allowedRole}})

	msgID := f.InjectGuild(stranger, "stranger says hi", []string{"1"})
	edited := fake.Message(msgID, fake.GuildChan, fake.GuildID, stranger, "stranger edits", []string{"1"})
	edited["edited_timestamp"] = "2017-07-11T17:28:00.000000+00:00"
	f.Dispatch("MESSAGE_UPDATE", edited)
	f.Dispatch("MESSAGE_REACTION_ADD", map[string]any{"user_id": stranger, "channel_id": fake.GuildChan,
		"message_id": msgID, "guild_id": fake.GuildID, "emoji": map[string]any{"id": nil, "name": "🔥"},
		"member": map[string]any{"roles": []string{"1"}, "user": fake.User(stranger, "Stranger", false)}})
	// A member with the allowed role, and the allowlisted user: admitted.
	f.InjectGuild("80351110224678913", "role member", []string{allowedRole})
	f.Dispatch("MESSAGE_REACTION_ADD", map[string]any{"user_id": "80351110224678913", "channel_id": fake.GuildChan,
		"message_id": msgID, "guild_id": fake.GuildID, "emoji": map[string]any{"id": nil, "name": "👍"},
		"member": map[string]any{"roles": []string{allowedRole}}})
	f.Inject("allowlisted")

	eventually(t, "three admitted", func() bool { return len(w.inbound()) >= 3 })
	time.Sleep(50 * time.Millisecond)
	got := w.inbound()
	var texts []string
	for _, m := range got {
		texts = append(texts, string(m.Kind)+":"+m.Text)
		if m.SenderID == stranger {
			t.Errorf("stranger's %s admitted: %+v", m.Kind, m)
		}
	}
	if strings.Join(texts, ",") != "message:role member,reaction:👍,message:allowlisted" {
		t.Errorf("admitted %v", texts)
	}
	if d := w.sup.Statuses()[0].Dropped; d != 3 {
		t.Errorf("dropped = %d, want 3", d)
	}
}

// TestOpenIsBounded: a gateway that accepts the socket but never says
// HELLO cannot hang Run; nothing is left running.
func TestOpenIsBounded(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	f := fake.New(testToken)
	f.SetSilent(true)
	p, err := New(Config{Token: testToken, APIURL: f.URL, OpenTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.Run(context.Background(), &nopSink{})
	if err == nil || !strings.Contains(err.Error(), "HELLO") {
		t.Errorf("Run against a silent gateway: %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Run took %v with a 300ms open timeout", el)
	}
	// Cancelling during a stuck open returns promptly too.
	p2, _ := New(Config{Token: testToken, APIURL: f.URL, OpenTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p2.Run(ctx, &nopSink{}) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Run ignored cancel during a stuck open")
	}
	f.Close()
	goleak.VerifyNone(t, ignore)
}

type nopSink struct{}

func (nopSink) Deliver(context.Context, providers.Inbound) error { return nil }
func (nopSink) SetState(providers.State, error)                  {}

// TestResumeReplaysMissedEvents (I12): after a drop the Supervisor reopens
// with RESUME and the gateway replays what was dispatched meanwhile.
func TestResumeReplaysMissedEvents(t *testing.T) {
	p, f := newProvider(t, nil)
	defer f.Close()
	w := supervise(t, p, providers.Policy{AllowFrom: []string{fake.SenderID}})
	f.Inject("before")
	eventually(t, "first", func() bool { return len(w.inbound()) == 1 })
	f.Drop()
	f.Inject("while away")
	eventually(t, "resumed", func() bool { return f.Resumes() == 1 })
	f.Inject("after")
	eventually(t, "all three", func() bool { return len(w.inbound()) == 3 })
	got := w.inbound()
	if got[1].Text != "while away" || got[2].Text != "after" {
		t.Errorf("order after resume: %q %q", got[1].Text, got[2].Text)
	}
	if f.Identifies() != 1 {
		t.Errorf("identifies = %d, want 1 (then resume)", f.Identifies())
	}
	if f.Intents()&int(discordgo.IntentMessageContent) == 0 || f.Intents()&int(discordgo.IntentsDirectMessages) == 0 {
		t.Errorf("intents %b lack message content or DMs", f.Intents())
	}
	if f.Heartbeats() == 0 {
		t.Error("no heartbeat sent")
	}
}

func TestOwnAndBotMessagesIgnored(t *testing.T) {
	p, f := newProvider(t, nil)
	defer f.Close()
	w := supervise(t, p, providers.Policy{AllowFrom: []string{"*"}})
	own := fake.Message("1", fake.DMChannel, "", fake.BotUserID, "my own echo", nil)
	f.Dispatch("MESSAGE_CREATE", own)
	other := fake.Message("2", fake.DMChannel, "", "99", "another bot", nil)
	other["author"] = fake.User("99", "OtherBot", true)
	f.Dispatch("MESSAGE_CREATE", other)
	f.Inject("human")
	eventually(t, "human", func() bool { return len(w.inbound()) >= 1 })
	time.Sleep(50 * time.Millisecond)
	if got := w.inbound(); len(got) != 1 || got[0].Text != "human" {
		t.Errorf("delivered %+v", got)
	}
}

func TestSendProbeEdit(t *testing.T) {
	p, f := newProvider(t, nil)
	defer f.Close()
	ctx := context.Background()
	res, err := p.Send(ctx, providers.Outbound{To: fake.GuildChan, Text: "hi <@everyone>", ReplyToID: "334385199974967042"})
	if err != nil || res.ChannelID != fake.GuildChan || res.MessageID == "" {
		t.Fatalf("Send: %+v %v", res, err)
	}
	if s := f.Sent(); len(s) != 1 || s[0].ReplyTo != "334385199974967042" || s[0].Content != "hi <@everyone>" {
		t.Errorf("fake saw %+v", s)
	}
	if err := p.Edit(ctx, fake.GuildChan, res.MessageID, "edited"); err != nil {
		t.Errorf("Edit: %v", err)
	}
	pr, err := p.Probe(ctx)
	if err != nil || !pr.OK || pr.BotID != fake.BotUserID {
		t.Errorf("Probe: %+v %v", pr, err)
	}
}

func TestBadTokenIsPermanentAndRedacted(t *testing.T) {
	f := fake.New(testToken)
	defer f.Close()
	wrong := "OTk5OTk5OTk5OTk5OTk5OTk5OQ.ZZZZZZ.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	p, err := New(Config{Token: wrong, APIURL: f.URL, OpenTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background(), nopSink{})
	var perm *providers.PermanentError
	if !errors.As(err, &perm) || strings.Contains(err.Error(), wrong) {
		t.Errorf("Run with a bad token: %v", err)
	}
	if _, err := p.Send(context.Background(), providers.Outbound{To: fake.GuildChan, Text: "x"}); err == nil || strings.Contains(err.Error(), wrong) {
		t.Errorf("Send with a bad token: %v", err)
	}
	if _, err := New(Config{Token: testToken, APIURL: "http://discord.com"}); err == nil {
		t.Error("plain-http remote apiUrl accepted")
	}
	if _, err := New(Config{Token: "short"}); err == nil {
		t.Error("malformed token accepted")
	}
}

type panicSink struct{ nopSink }

func (panicSink) Deliver(context.Context, providers.Inbound) error { panic("boom in handler") }

// TestHandlerPanicEndsRun: a panic on discordgo's goroutine would kill the
// process; it is recovered and ends the run with an error instead.
func TestHandlerPanicEndsRun(t *testing.T) {
	p, f := newProvider(t, nil)
	defer f.Close()
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), panicSink{}) }()
	eventually(t, "ready", func() bool { return f.Live() == 1 })
	f.Inject("trigger")
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "panicked") {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end after a handler panic")
	}
}
