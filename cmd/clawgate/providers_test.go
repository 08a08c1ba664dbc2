package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
	discordfake "github.com/clawgate/clawgate/providers/discord/fake"
	slackfake "github.com/clawgate/clawgate/providers/slack/fake"
	telegramfake "github.com/clawgate/clawgate/providers/telegram/fake"
)

const (
	e2eTelegramToken = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-e2e1"
	e2eSlackBot      = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
	e2eSlackApp      = "xapp-1-A01K58AR4RF-2234567890123-0123456789abcdef0123456789abcdef"
	e2eDiscordToken  = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhLx1a.e2eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
)

// channelFakes are the three services on loopback.
type channelFakes struct {
	tg *telegramfake.Server
	sl *slackfake.Server
	dc *discordfake.Server
}

func startFakes(t *testing.T) *channelFakes {
	f := &channelFakes{tg: telegramfake.New(e2eTelegramToken), sl: slackfake.New(e2eSlackBot, e2eSlackApp), dc: discordfake.New(e2eDiscordToken)}
	t.Cleanup(func() { f.tg.Close(); f.sl.Close(); f.dc.Close() })
	return f
}

func writeSecret(t *testing.T, dir, name, value string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(value+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// privateDir returns a fresh 0700 state directory.
func privateDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// channelsConfig writes a config with all three channels pointed at the
// fakes; the Slack app token comes from the environment, the rest from
// 0600 files.
func channelsConfig(t *testing.T, f *channelFakes, state string) {
	t.Helper()
	secrets := t.TempDir()
	t.Setenv("CLAWGATE_TEST_SLACK_APP_TOKEN", e2eSlackApp)
	cfg := map[string]any{
		"version": 1,
		"channels": map[string]any{
			"telegram": []any{map[string]any{
				"token":  map[string]any{"file": writeSecret(t, secrets, "telegram.token", e2eTelegramToken, 0o600)},
				"apiUrl": f.tg.URL, "pollTimeoutSeconds": 2,
				"allowFrom": []string{f.tg.SenderID()},
			}},
			"slack": []any{map[string]any{
				"botToken": map[string]any{"file": writeSecret(t, secrets, "slack.bot", e2eSlackBot, 0o600)},
				"appToken": map[string]any{"env": "CLAWGATE_TEST_SLACK_APP_TOKEN"},
				"apiUrl":   f.sl.APIURL, "allowFrom": []string{f.sl.SenderID()}, "allowTo": []string{"C024BE91L"},
			}},
			"discord": []any{map[string]any{
				"token":  map[string]any{"file": writeSecret(t, secrets, "discord.token", e2eDiscordToken, 0o600)},
				"apiUrl": f.dc.URL, "openTimeoutSeconds": 5, "allowFrom": []string{f.dc.SenderID()},
			}},
		},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(state, "clawgate.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// operator is a signed local operator recording every event.
type operator struct {
	c  *client.Client
	mu sync.Mutex
	ev []client.Event
}

func dialOperator(t testing.TB, port int, state string) *operator {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(state, "gateway.token"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := client.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	op := &operator{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	op.c, err = client.Dial(ctx, client.Options{URL: fmt.Sprintf("ws://127.0.0.1:%d", port), Token: strings.TrimSpace(string(tok)),
		Identity: id, Scopes: []string{protocol.ScopeAdmin, protocol.ScopeRead, protocol.ScopeWrite},
		OnEvent: func(e client.Event) { op.mu.Lock(); op.ev = append(op.ev, e); op.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { op.c.Close() })
	return op
}

func (o *operator) call(t testing.TB, method string, params any) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := o.c.Call(ctx, method, params)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m, nil
}

// waitMessage waits for a session.message from channel with text.
func (o *operator) waitMessage(t testing.TB, channel, text string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		for _, e := range o.ev {
			if e.Name != "session.message" {
				continue
			}
			var p map[string]any
			_ = json.Unmarshal(e.Payload, &p)
			msg, _ := p["message"].(map[string]any)
			parts, _ := msg["content"].([]any)
			if p["channel"] == channel && len(parts) == 1 && parts[0].(map[string]any)["text"] == text {
				o.mu.Unlock()
				return p
			}
		}
		o.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no session.message %q from %s", text, channel)
	return nil
}

func waitAllConnected(t testing.TB, op *operator) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last map[string]any
	for time.Now().Before(deadline) {
		st, err := op.call(t, "channels.status", map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		last = st
		chans, _ := st["channels"].(map[string]any)
		ok := len(chans) == 3
		for _, c := range chans {
			if c.(map[string]any)["connected"] != true {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("channels not all connected: %v", last)
}

// TestChannelsEndToEnd runs the real binary against the three fakes: a
// message typed on each service reaches a WebSocket operator as an event;
// an operator's send reaches the service once per idempotency key, however
// often and however concurrently it is retried; no token is ever logged.
func TestChannelsEndToEnd(t *testing.T) {
	f := startFakes(t)
	state := privateDir(t)
	channelsConfig(t, f, state)
	gw := startGateway(t, state)
	op := dialOperator(t, gw.port, state)
	waitAllConnected(t, op)

	// Fake service → provider → gateway → operator event.
	f.tg.Inject("hello from telegram")
	f.sl.Inject("hello from slack")
	f.dc.Inject("hello from discord")
	p := op.waitMessage(t, "telegram", "hello from telegram")
	if p["sessionKey"] != "telegram:default:1111111" || p["senderId"] != "1111111" || p["chatType"] != "direct" {
		t.Errorf("telegram event: %v", p)
	}
	op.waitMessage(t, "slack", "hello from slack")
	op.waitMessage(t, "discord", "hello from discord")

	// Operator send → provider → request observed by the fake. The
	// Telegram chat delivered an admitted message, so it is a valid reply
	// target without allowTo.
	res, err := op.call(t, "send", map[string]any{"channel": "telegram", "to": "1111111", "message": "reply via gateway", "idempotencyKey": "e2e-1"})
	if err != nil || res["runId"] != "e2e-1" || res["messageId"] == "" {
		t.Fatalf("send: %v %v", res, err)
	}
	if s := f.tg.Sent(); len(s) != 1 || s[0].ChatID != "1111111" || s[0].Text != "reply via gateway" {
		t.Errorf("telegram fake saw %+v", s)
	}
	// A retry (even after reconnecting) returns the cached result and
	// never sends twice.
	op2 := dialOperator(t, gw.port, state)
	again, err := op2.call(t, "send", map[string]any{"channel": "telegram", "to": "1111111", "message": "reply via gateway", "idempotencyKey": "e2e-1"})
	if err != nil || again["messageId"] != res["messageId"] {
		t.Errorf("retry: %v %v", again, err)
	}
	if n := len(f.tg.Sent()); n != 1 {
		t.Errorf("telegram fake saw %d sends for one key", n)
	}

	// Concurrent duplicates coalesce into one chat.postMessage.
	var wg sync.WaitGroup
	ids := make(chan any, 8)
	for range 8 {
		wg.Go(func() {
			r, err := op.call(t, "send", map[string]any{"channel": "slack", "to": "C024BE91L", "message": "once", "idempotencyKey": "e2e-dup"})
			if err != nil {
				t.Errorf("concurrent send: %v", err)
				return
			}
			ids <- r["messageId"]
		})
	}
	wg.Wait()
	close(ids)
	first := <-ids
	for id := range ids {
		if id != first {
			t.Errorf("duplicates got different results: %v vs %v", id, first)
		}
	}
	if n := f.sl.Calls("chat.postMessage"); n != 1 {
		t.Errorf("slack fake saw %d chat.postMessage for 8 concurrent duplicates", n)
	}
	// Outbound allowTo: a Slack channel that is neither listed nor a
	// conversation that wrote to us is refused before the service sees it.
	if _, err := op.call(t, "send", map[string]any{"channel": "slack", "to": "C0OTHER01", "message": "x", "idempotencyKey": "e2e-deny"}); err == nil {
		t.Error("send outside allowTo succeeded")
	}
	if _, err := op.call(t, "send", map[string]any{"channel": "discord", "to": discordfake.DMChannel, "message": "pong", "idempotencyKey": "e2e-dc"}); err != nil {
		t.Errorf("discord send: %v", err)
	}
	if s := f.dc.Sent(); len(s) != 1 || s[0].Content != "pong" {
		t.Errorf("discord fake saw %+v", s)
	}

	// Health shows the three channels.
	h, _ := op.call(t, "health", nil)
	if order, _ := h["channelOrder"].([]any); len(order) != 3 {
		t.Errorf("health channelOrder = %v", h["channelOrder"])
	}

	// Stop the gateway; its log holds no token.
	_ = gw.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-gw.done:
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not stop within 15s of SIGTERM")
	}
	out := gw.out.String()
	for _, secret := range []string{e2eTelegramToken, e2eSlackBot, e2eSlackApp, e2eDiscordToken, "pdFZKVeTuE8sk7oOcBrzbqgy", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"} {
		if strings.Contains(out, secret) {
			t.Errorf("the gateway log contains a channel secret")
		}
	}
	if !strings.Contains(out, "starting channels") {
		t.Errorf("no channel start in the log:\n%s", out)
	}
}

// TestChannelsConfigRefusals: the gateway refuses to start on a channel
// mistake instead of running half-configured (attacks I2, I8, I14).
func TestChannelsConfigRefusals(t *testing.T) {
	secrets := t.TempDir()
	good := writeSecret(t, secrets, "tg.token", e2eTelegramToken, 0o600)
	loose := writeSecret(t, secrets, "loose.token", e2eTelegramToken, 0o644)
	cases := []struct {
		name string
		tg   map[string]any
		want string
	}{
		{"webhook without secret", map[string]any{"token": map[string]any{"file": good}, "mode": "webhook",
			"webhook": map[string]any{"listen": "127.0.0.1:0"}}, "secret"},
		{"username in allowFrom", map[string]any{"token": map[string]any{"file": good}, "allowFrom": []string{"@alice"}}, "username"},
		{"world-readable token file", map[string]any{"token": map[string]any{"file": loose}}, "readable"},
		{"no token source", map[string]any{"allowFrom": []string{"1"}}, "token"},
		{"token inline", map[string]any{"token": map[string]any{"value": e2eTelegramToken}}, "unknown field"},
		{"empty env", map[string]any{"token": map[string]any{"env": "CLAWGATE_TEST_NOT_SET"}}, "CLAWGATE_TEST_NOT_SET"},
	}
	for _, tc := range cases {
		state := privateDir(t)
		b, _ := json.Marshal(map[string]any{"version": 1, "channels": map[string]any{"telegram": []any{tc.tg}}})
		if err := os.WriteFile(filepath.Join(state, "clawgate.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(binary, "gateway", "--port", fmt.Sprint(freePort(t)))
		cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+state, "CLAWGATE_TEST_NOT_SET=")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: exit %v, output %q; want a refusal mentioning %q", tc.name, err, out, tc.want)
		}
		if strings.Contains(string(out), "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw") {
			t.Errorf("%s: the refusal prints the token", tc.name)
		}
	}
}
