package providertest

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clawgate/clawgate/providers"
)

// Fake is a local service the provider under test is pointed at.
type Fake interface {
	// SenderID is the id of the user whose messages Inject delivers.
	SenderID() string
	// Inject makes the service deliver one text message from SenderID in
	// a direct chat, and returns that chat's id.
	Inject(text string) (chatID string)
	// Sent returns the outbound messages the service accepted, in order.
	Sent() []Sent
	// Drop closes every live connection from the service side.
	Drop()
	// Close stops the fake and waits for its goroutines.
	Close()
}

// Sent is one outbound message as the service saw it.
type Sent struct {
	ChatID string
	Text   string
}

// Subject is a provider wired to a fresh fake.
type Subject struct {
	Provider providers.Provider
	Fake     Fake
	// Secrets must never appear in logs or status errors.
	Secrets []string
	// StopBound is how long Run may take to return after cancel (5 s).
	StopBound time.Duration
}

// Timeout bounds each step of the contract.
const Timeout = 10 * time.Second

// Run checks the contract. newSubject builds a fresh fake and a provider
// pointed at it, logging to log.
func Run(t *testing.T, newSubject func(t *testing.T, log *slog.Logger) Subject) {
	ignore := goleak.IgnoreCurrent()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sub := newSubject(t, log)
	if sub.StopBound == 0 {
		sub.StopBound = 5 * time.Second
	}
	fakeClosed := false
	closeFake := func() {
		if !fakeClosed {
			fakeClosed = true
			sub.Fake.Close()
		}
	}
	defer closeFake()

	sup, err := providers.NewSupervisor(providers.Options{
		Logger: log, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		StopTimeout: 4 * Timeout,
	}, providers.Account{ID: "contract", Provider: sub.Provider,
		Policy: providers.Policy{AllowFrom: []string{sub.Fake.SenderID()}}})
	if err != nil {
		t.Fatalf("NewSupervisor: %v", err)
	}
	w := newWatcher()
	defer sup.Watch(w.on)()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	route := providers.Route{Channel: sub.Provider.Name(), AccountID: "contract"}

	// Connect.
	w.waitState(t, "first connect", 0, providers.StateConnected)

	// Receive one message.
	chat := sub.Fake.Inject("hello contract")
	in := w.waitInbound(t, "hello contract")
	if in.ChatID != chat || in.SenderID != sub.Fake.SenderID() || in.Kind != providers.KindMessage ||
		in.ChatType != providers.ChatDirect || in.ID == "" || in.Channel != route.Channel || in.AccountID != "contract" {
		t.Errorf("inbound message = %+v; want chat %s from %s", in, chat, sub.Fake.SenderID())
	}

	// Reply.
	sctx, scancel := context.WithTimeout(ctx, Timeout)
	res, err := sup.Send(sctx, route, providers.Outbound{To: chat, Text: "echo: hello contract"})
	scancel()
	if err != nil {
		t.Fatalf("Send reply: %v", err)
	}
	if res.MessageID == "" {
		t.Errorf("Send result has no message id: %+v", res)
	}
	if got := sub.Fake.Sent(); !slices.Contains(got, Sent{ChatID: chat, Text: "echo: hello contract"}) {
		t.Errorf("service saw %+v; want the reply to %s", got, chat)
	}

	// Survive a server-side disconnect.
	mark := w.mark()
	sub.Fake.Drop()
	w.waitState(t, "disconnect noticed", mark, providers.StateReconnecting)
	w.waitState(t, "reconnect", mark, providers.StateConnected)
	sub.Fake.Inject("after reconnect")
	w.waitInbound(t, "after reconnect")

	// Shut down within the bound.
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(sub.StopBound):
		t.Fatalf("provider did not stop within %v of cancel", sub.StopBound)
	}
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	if st := sup.Statuses()[0]; st.State != providers.StateStopped {
		t.Errorf("state after shutdown = %s", st.State)
	}

	// Nothing left behind; no secret leaked.
	closeFake()
	goleak.VerifyNone(t, ignore)
	all := logs.String()
	for _, st := range w.allStatuses() {
		all += "\n" + st.LastError
	}
	for _, s := range sub.Secrets {
		if s != "" && strings.Contains(all, s) {
			t.Errorf("a secret appears in the logs or a status error")
		}
	}
}

// watcher records what the Supervisor publishes.
type watcher struct {
	mu       sync.Mutex
	inbound  []providers.Inbound
	statuses []providers.Status
	kick     chan struct{}
}

func newWatcher() *watcher { return &watcher{kick: make(chan struct{}, 1)} }

func (w *watcher) on(ev providers.Event) {
	w.mu.Lock()
	if ev.Inbound != nil {
		w.inbound = append(w.inbound, *ev.Inbound)
	}
	if ev.Status != nil {
		w.statuses = append(w.statuses, *ev.Status)
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *watcher) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.statuses)
}

func (w *watcher) allStatuses() []providers.Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.statuses)
}

func (w *watcher) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(Timeout)
	for {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-w.kick:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			var states []string
			for _, s := range w.statuses {
				states = append(states, string(s.State)+" "+s.LastError)
			}
			t.Fatalf("timed out waiting for %s; statuses so far: %q", what, states)
		}
	}
}

// waitState waits for a status with state published after index from.
func (w *watcher) waitState(t *testing.T, what string, from int, state providers.State) {
	t.Helper()
	w.wait(t, what, func() bool {
		for _, s := range w.statuses[min(from, len(w.statuses)):] {
			if s.State == state {
				return true
			}
		}
		return false
	})
}

func (w *watcher) waitInbound(t *testing.T, text string) providers.Inbound {
	t.Helper()
	var got providers.Inbound
	w.wait(t, "inbound "+text, func() bool {
		for _, m := range w.inbound {
			if m.Text == text {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
