package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawgate/clawgate/agent"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/providers"
)

// fakeChat is a messaging provider whose "service" is the test: Inject
// delivers a message, Send records the reply.
type fakeChat struct {
	in   chan providers.Inbound
	sent chan providers.Outbound
	n    atomic.Int64
}

func newFakeChat() *fakeChat {
	return &fakeChat{in: make(chan providers.Inbound, 8), sent: make(chan providers.Outbound, 8)}
}

func (f *fakeChat) Name() string { return "fakechat" }

func (f *fakeChat) Capabilities() providers.Capabilities {
	return providers.Capabilities{Label: "Fake chat", IDs: providers.IDNumeric, ChatTypes: []providers.ChatType{providers.ChatDirect},
		MaxTextLen: 4096, Mode: "polling"}
}

func (f *fakeChat) Run(ctx context.Context, sink providers.Sink) error {
	sink.SetState(providers.StateConnected, nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-f.in:
			if err := sink.Deliver(ctx, m); err != nil {
				return err
			}
		}
	}
}

func (f *fakeChat) Send(_ context.Context, msg providers.Outbound) (providers.Result, error) {
	f.sent <- msg
	return providers.Result{MessageID: fmt.Sprint("out-", f.n.Add(1)), ChatID: msg.To}, nil
}

func (f *fakeChat) inject(sender, text string) string {
	id := fmt.Sprint(f.n.Add(1))
	f.in <- providers.Inbound{Kind: providers.KindMessage, ID: sender + ":" + id, MessageID: id, ChatID: sender,
		ChatType: providers.ChatDirect, SenderID: sender, SenderName: "user " + sender, Text: text, Time: time.Now()}
	return id
}

// TestProviderMessageToAgentAndBack: an admitted message from a provider
// becomes a run in the conversation's session (a real OpenAI-compatible
// backend on loopback), the reply goes back through the same account to
// the same chat, and a second operator sees the chat and agent events. A
// sender outside the allowlist triggers nothing.
func TestProviderMessageToAgentAndBack(t *testing.T) {
	var prompts []string
	var promptsMu sync.Mutex
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []agent.Message `json:"messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		prompt := req.Messages[len(req.Messages)-1].Content
		promptsMu.Lock()
		prompts = append(prompts, prompt)
		promptsMu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		for _, p := range []string{"You wrote: ", prompt} {
			b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"delta": map[string]any{"content": p}}}})
			fmt.Fprintf(w, "data: %s\n\n", b)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}))
	defer model.Close()
	backend, err := agent.NewOpenAI(agent.OpenAIConfig{BaseURL: model.URL + "/v1", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}

	fc := newFakeChat()
	sup, err := providers.NewSupervisor(providers.Options{}, providers.Account{ID: "default", Provider: fc,
		Policy: providers.Policy{AllowFrom: []string{"42"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	supDone := make(chan struct{})
	go func() { defer close(supDone); _ = sup.Run(ctx) }()
	defer func() { cancel(); <-supDone }()

	g := startGateway(t, func(o *Options) {
		o.Agent.Backend = backend
		o.Providers = sup // the channels' hub; agent routing takes it by default
	})
	watcher := dialOperator(t, g, protocol.ScopeRead)

	msgID := fc.inject("42", "what is 6*7?")
	var reply providers.Outbound
	select {
	case reply = <-fc.sent:
	case <-time.After(10 * time.Second):
		t.Fatal("no reply reached the provider")
	}
	if reply.To != "42" || reply.Text != "You wrote: what is 6*7?" || reply.ReplyToID != msgID {
		t.Fatalf("reply %+v", reply)
	}

	const key = "fakechat:default:42"
	final := watcher.until("chat final", func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		msg, _ := p["message"].(map[string]any)
		return m["event"] == "chat" && p["sessionKey"] == key && p["state"] == "final" && msg["role"] == "assistant"
	})["payload"].(map[string]any)
	if messageText(t, final) != reply.Text {
		t.Fatalf("final event %v", final)
	}
	runID := final["runId"].(string)
	ag := watcher.events("agent", runID)
	if len(ag) < 2 || ag[0]["data"].(map[string]any)["sessionKey"] != key {
		t.Fatalf("agent events %v", ag)
	}

	// The conversation is a session of its own, with the sender recorded.
	l := payloadOf(t, watcher.call("l", "sessions.list", map[string]any{}))
	row := l["sessions"].([]any)[0].(map[string]any)
	if row["key"] != key || row["channel"] != "fakechat" || row["chatType"] != "direct" || row["kind"] != "direct" {
		t.Fatalf("session row %v", row)
	}
	h := payloadOf(t, watcher.call("h", "chat.history", map[string]any{"sessionKey": key}))
	msgs := h["messages"].([]any)
	if len(msgs) != 2 || msgs[0].(map[string]any)["senderName"] != "user 42" {
		t.Fatalf("history %v", msgs)
	}

	// A stranger is dropped by the account's policy: no run, no reply.
	fc.inject("99", "let me in")
	fc.inject("42", "second")
	select {
	case r := <-fc.sent:
		if r.To != "42" || !strings.HasSuffix(r.Text, "second") {
			t.Fatalf("unexpected reply %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reply to the second message")
	}
	promptsMu.Lock()
	defer promptsMu.Unlock()
	if len(prompts) != 2 || prompts[1] != "second" {
		t.Fatalf("the model saw %q", prompts)
	}
}

func TestSplitRunes(t *testing.T) {
	long := strings.Repeat("word ", 1000) // 5000 runes
	parts := splitRunes(long, 2000)
	if strings.Join(parts, "") != long || len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	for _, p := range parts {
		if n := len([]rune(p)); n > 2000 || n < 1000 {
			t.Fatalf("part of %d runes", n)
		}
	}
	if got := splitRunes("é", 2000); len(got) != 1 || got[0] != "é" {
		t.Fatalf("short: %q", got)
	}
}
