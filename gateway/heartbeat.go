package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/clawgate/clawgate/agent"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/store"
)

// Heartbeats (protocol §4.1 System/Automation): every HeartbeatEvery the
// agent gets a heartbeat turn in the main session, carrying the system
// events queued since the last one (by wake and by systemEvent cron jobs);
// wake "now" runs one at once. Each heartbeat ends in a heartbeat event:
// ok-token (the agent answered HEARTBEAT_OK), ok-empty, skipped (with a
// reason: disabled, no-agent, or target-none when the agent had something
// to say but clawgate has nowhere to announce it: the reply stays in the
// session's history) or failed. The event is open to every connection, so
// it never carries the reply; last-heartbeat (operator.read) returns the
// latest with a preview. set-heartbeats turns processing off and on.

const (
	defaultHeartbeatPrompt = "Heartbeat: check whether anything needs your attention, including the system events below. " +
		"If nothing does, reply HEARTBEAT_OK."
	heartbeatToken       = "HEARTBEAT_OK"
	heartbeatTimeout     = 5 * time.Minute
	maxPendingSessions   = 64
	maxPendingPerSession = 50
	maxWakeText          = 20000
)

// heartbeatEvent is the payload of the heartbeat event and last-heartbeat.
type heartbeatEvent struct {
	Ts         int64  `json:"ts"`
	Status     string `json:"status"` // ok-token, ok-empty, skipped, failed
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message,omitempty"`
	Preview    string `json:"preview,omitempty"`
	DurationMs *int64 `json:"durationMs,omitempty"`
	SessionKey string `json:"sessionKey,omitempty"`
	Events     int    `json:"events,omitempty"` // system events it carried
}

type heartbeats struct {
	a *automation

	mu      sync.Mutex
	enabled bool
	last    *heartbeatEvent
	pending map[string][]string // session key → queued system event texts
	wake    chan struct{}       // cap 1: coalesces wakes
}

func newHeartbeats(a *automation) *heartbeats {
	return &heartbeats{a: a, enabled: true, pending: map[string][]string{}, wake: make(chan struct{}, 1)}
}

func (hb *heartbeats) register() {
	s := hb.a.srv
	s.handle("set-heartbeats", false, hb.methodSet)
	s.handle("wake", false, hb.methodWake)
}

func (hb *heartbeats) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		hb.loop(ctx)
	}()
}

func (hb *heartbeats) loop(ctx context.Context) {
	var tick <-chan time.Time
	if every := hb.a.opts.HeartbeatEvery; every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			hb.beat(ctx, false)
		case <-hb.wake:
			hb.beat(ctx, true)
		}
	}
}

// enqueue queues a system event for session's next heartbeat (dropping the
// oldest beyond the bounds) and, when now, wakes the heartbeat at once. It
// reports whether it woke it.
func (hb *heartbeats) enqueue(session, text string, now bool) bool {
	hb.mu.Lock()
	l, ok := hb.pending[session]
	if !ok && len(hb.pending) >= maxPendingSessions {
		// Make room: drop another session's backlog (never main's).
		for k := range hb.pending {
			if k != mainSessionKey {
				delete(hb.pending, k)
				break
			}
		}
	}
	l = append(l, text)
	if len(l) > maxPendingPerSession {
		l = l[len(l)-maxPendingPerSession:]
	}
	hb.pending[session] = l
	hb.mu.Unlock()
	if now {
		hb.kick()
	}
	return now
}

func (hb *heartbeats) kick() {
	select {
	case hb.wake <- struct{}{}:
	default:
	}
}

// beat runs one heartbeat: the main session on a periodic tick, plus every
// session with queued events.
func (hb *heartbeats) beat(ctx context.Context, woken bool) {
	hb.mu.Lock()
	enabled := hb.enabled
	sessions := make([]string, 0, len(hb.pending)+1)
	for k := range hb.pending {
		sessions = append(sessions, k)
	}
	hb.mu.Unlock()
	if !enabled {
		if woken {
			hb.emit(heartbeatEvent{Status: "skipped", Reason: "disabled", Message: "heartbeats are turned off (set-heartbeats)"})
		}
		return
	}
	if !woken && !contains(sessions, mainSessionKey) {
		sessions = append(sessions, mainSessionKey)
	}
	sort.Strings(sessions)
	turn, _ := hb.a.hooks()
	for _, key := range sessions {
		if ctx.Err() != nil {
			return
		}
		if turn == nil {
			hb.emit(heartbeatEvent{Status: "skipped", Reason: "no-agent", SessionKey: key,
				Message: "no agent backend is configured; queued events wait"})
			continue
		}
		hb.mu.Lock()
		texts := hb.pending[key]
		delete(hb.pending, key)
		hb.mu.Unlock()
		msg := hb.a.opts.HeartbeatPrompt
		if len(texts) > 0 {
			msg += "\n\nSystem events since the last heartbeat:\n- " + strings.Join(texts, "\n- ")
		}
		start := hb.a.srv.opts.Now()
		rctx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
		reply, err := turn(rctx, key, msg, heartbeatTimeout)
		cancel()
		dur := max(0, hb.a.srv.opts.Now().Sub(start).Milliseconds())
		ev := heartbeatEvent{SessionKey: key, DurationMs: &dur, Events: len(texts)}
		trimmed := strings.TrimSpace(reply)
		switch {
		case err != nil:
			ev.Status, ev.Reason = "failed", previewText(err.Error(), cronPreviewRunes)
		case trimmed == "":
			ev.Status = "ok-empty"
		case strings.HasPrefix(strings.TrimLeft(trimmed, "*_` "), heartbeatToken):
			ev.Status = "ok-token"
		default:
			ev.Status, ev.Reason = "skipped", "target-none"
			ev.Message = "the reply stays in the session: no heartbeat delivery target is configured"
			ev.Preview = previewText(trimmed, cronPreviewRunes)
		}
		hb.emit(ev)
	}
}

// emit records the event for last-heartbeat and broadcasts it without the
// preview (the event is open to every role).
func (hb *heartbeats) emit(ev heartbeatEvent) {
	ev.Ts = hb.a.srv.nowMs()
	hb.mu.Lock()
	last := ev
	hb.last = &last
	hb.mu.Unlock()
	ev.Preview = ""
	hb.a.srv.bus.broadcast(protocol.EventHeartbeat, ev, nil, nil)
}

// heartbeatSeconds is the heartbeat period for the health summary (0: off).
func (s *Server) heartbeatSeconds() int64 {
	if s.auto == nil {
		return 0
	}
	return int64(s.auto.opts.HeartbeatEvery / time.Second)
}

// heartbeatConfig is the main agent's heartbeat schedule for the health
// summary: enabled reflects set-heartbeats, target is always none.
func (s *Server) heartbeatConfig() protocol.HeartbeatConfig {
	hc := protocol.HeartbeatConfig{Every: "off", Target: "none"}
	if s.auto == nil || s.auto.opts.HeartbeatEvery <= 0 {
		return hc
	}
	every := s.auto.opts.HeartbeatEvery
	ms := every.Milliseconds()
	hb := s.auto.beats
	hb.mu.Lock()
	hc.Enabled = hb.enabled
	hb.mu.Unlock()
	hc.Every, hc.EveryMs, hc.Prompt = shortDuration(every), &ms, s.auto.opts.HeartbeatPrompt
	return hc
}

// shortDuration writes 30m and 1h rather than 30m0s and 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// methodLastHeartbeat returns the latest heartbeat event, or null.
func (s *Server) methodLastHeartbeat(_ context.Context, _ *Conn, _ json.RawMessage) (any, error) {
	if s.auto == nil {
		return nil, nil
	}
	hb := s.auto.beats
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if hb.last == nil {
		return nil, nil
	}
	return *hb.last, nil
}

func (hb *heartbeats) methodSet(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		Enabled *bool `json:"enabled"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || p.Enabled == nil {
		return nil, protocol.InvalidRequest("invalid set-heartbeats params: enabled (boolean) required")
	}
	hb.mu.Lock()
	hb.enabled = *p.Enabled
	hb.mu.Unlock()
	hb.a.srv.log.Info("heartbeats toggled", "enabled", *p.Enabled)
	return map[string]any{"ok": true, "enabled": *p.Enabled}, nil
}

func (hb *heartbeats) methodWake(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		Mode       string `json:"mode"`
		Text       string `json:"text"`
		SessionKey string `json:"sessionKey"`
		AgentID    string `json:"agentId"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid wake params: " + err.Error())
	}
	text := strings.TrimSpace(p.Text)
	if text == "" {
		return nil, protocol.InvalidRequest("invalid wake params: text must not be blank")
	}
	if len([]rune(text)) > maxWakeText {
		return nil, protocol.InvalidRequest("invalid wake params: text is longer than 20000 characters")
	}
	if a := strings.TrimSpace(p.AgentID); a != "" && a != mainAgentID {
		return nil, protocol.InvalidRequest("invalid wake params: unknown agentId " + a)
	}
	session := mainSessionKey
	if k := strings.TrimSpace(p.SessionKey); k != "" {
		if err := checkCronSessionKey(k); err != nil {
			return nil, protocol.InvalidRequest("invalid wake params: " + err.Error())
		}
		session = k
	}
	// As in OpenClaw, a wake aimed at a session runs at once.
	hb.enqueue(session, text, p.Mode == "now" || p.SessionKey != "")
	return map[string]any{"ok": true}, nil
}

// wireAutomation connects cron and heartbeats to the agent runs (when a
// backend is configured) and to the messaging providers (when linked).
// Without them, jobs and heartbeats that need them say so.
func (s *Server) wireAutomation() {
	var turn turnFunc
	if s.opts.Agent.Backend != nil {
		turn = s.agentTurn
	}
	var send sendFunc
	if link := s.opts.Agent.Providers; link != nil {
		send = func(ctx context.Context, d store.CronDelivery, text string) error {
			account := d.AccountID
			if account == "" {
				account = "default"
			}
			route := providers.Route{Channel: d.Channel, AccountID: account}
			for _, part := range splitRunes(text, replyChunkRunes) {
				if _, err := link.Send(ctx, route, providers.Outbound{To: d.To, Text: part, ThreadID: d.ThreadID}); err != nil {
					return err
				}
			}
			return nil
		}
	}
	s.auto.setHooks(turn, send)
}

// agentTurn runs one agent turn (an agent run like any other: recorded in
// the session, streamed as agent and chat events) and waits for its end.
func (s *Server) agentTurn(ctx context.Context, sessionKey, message string, timeout time.Duration) (string, error) {
	run, _, err := s.agents.start(runSpec{id: newUUID(), sessionKey: sessionKey, message: message, timeout: timeout})
	if err != nil {
		return "", err
	}
	select {
	case <-run.done:
	case <-ctx.Done():
		run.cancel(agent.ErrAborted)
		<-run.done
	}
	switch run.status {
	case runOK:
		return run.text, nil
	case runAborted:
		return run.text, errors.New("agent run aborted")
	}
	return run.text, errors.New(run.errMsg)
}
