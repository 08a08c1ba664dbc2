package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/clawgate/clawgate/agent"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/store"
)

// AgentOptions configure agent runs and chat sessions. The zero value has
// no backend: agent and chat.send then answer UNAVAILABLE with a hint, and
// history lives in memory only.
type AgentOptions struct {
	// Backend produces replies; nil means none is configured.
	Backend agent.Backend
	// Sessions persists chat histories; nil keeps them in memory (lost on
	// restart; tests of the bare core).
	Sessions store.SessionStore
	// SystemPrompt, when set, opens every conversation sent to Backend.
	SystemPrompt string
	// RunTimeout bounds one run (default 10 minutes); a request's own
	// timeout may only shorten it.
	RunTimeout time.Duration
	// HistoryKeep is how many messages each session keeps (default 500).
	HistoryKeep int
	// ContextMessages is how many of the newest messages go to Backend
	// with each run (default 40).
	ContextMessages int
	// Retention deletes sessions idle for longer (default 30 days; the
	// sweep runs hourly and at start).
	Retention time.Duration
	// MaxRuns bounds runs running or queued at once (default 64).
	MaxRuns int
	// Providers, when set, routes admitted inbound provider messages to
	// agent runs and sends the replies back (see route.go).
	Providers ProviderLink
	// NotConfiguredHint completes the UNAVAILABLE answer when Backend is
	// nil (for example: which config file to edit).
	NotConfiguredHint string
}

func (o *AgentOptions) setDefaults() {
	if o.RunTimeout <= 0 {
		o.RunTimeout = 10 * time.Minute
	}
	if o.HistoryKeep <= 0 {
		o.HistoryKeep = 500
	}
	if o.ContextMessages <= 0 {
		o.ContextMessages = 40
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.MaxRuns <= 0 {
		o.MaxRuns = 64
	}
}

// Run bookkeeping limits.
const (
	// deltaInterval throttles chat deltas (and assistant agent events).
	deltaInterval = 150 * time.Millisecond
	// finishedRunTTL keeps a finished run for agent.wait and for a retried
	// agent request (the dedupe window).
	finishedRunTTL = protocol.DedupeTTLMs * time.Millisecond
	// maxFinishedRuns bounds the finished runs kept.
	maxFinishedRuns = protocol.DedupeMaxEntries
	// defaultWaitMs is agent.wait's default timeout.
	defaultWaitMs = 30000
	// maxMessageRunes bounds one user message.
	maxMessageRunes = 100000
	// defaultSessionKey is where agent runs without a session key go.
	defaultSessionKey = "main"
)

// Run outcomes.
const (
	runOK      = "ok"
	runError   = "error"
	runAborted = "aborted"
)

// agentRuns owns every run: their goroutines, the per-session queues and
// the recently finished runs.
type agentRuns struct {
	srv  *Server
	opts AgentOptions

	ctx    context.Context // parent of every run; canceled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	byID     map[string]*agentRun
	finished []*agentRun              // finish order, for eviction
	sessions map[string]*sessionQueue // session key → its run queue
	active   int                      // runs running or queued
	changed  chan struct{}            // closed and replaced when a run registers
	mem      *memSessions             // history when opts.Sessions is nil
}

// sessionQueue serializes the runs of one session: a run holds the slot
// while it talks to the backend.
type sessionQueue struct {
	slot chan struct{}
	refs int
}

// runSpec is what starts a run.
type runSpec struct {
	id         string
	sessionKey string
	message    string
	timeout    time.Duration
	meta       store.SessionMeta // provider fields for a new or refreshed session
	senderID   string
	senderName string
	// reply, when set, delivers the final text back to a provider chat.
	reply func(ctx context.Context, text string) error
}

// agentRun is one run.
type agentRun struct {
	id         string
	sessionKey string
	startedAt  int64
	cancel     context.CancelCauseFunc
	done       chan struct{}

	// Set before done is closed; read only after.
	status     string
	text       string
	stopReason string
	errMsg     string
	errKind    string
	endedAt    int64
	usage      *agent.Usage
	timedOut   bool

	// Streaming state.
	mu        sync.Mutex
	buf       strings.Builder
	lastSent  int // bytes of buf in the last delta
	lastEmit  time.Time
	timer     *time.Timer
	finishing bool
	chatSeq   int
	agentSeq  int
}

func (s *Server) initAgents() {
	o := s.opts.Agent
	o.setDefaults()
	if o.Providers == nil && s.opts.Providers != nil {
		o.Providers = s.opts.Providers // the channels' hub routes into agent runs too
	}
	r := &agentRuns{srv: s, opts: o, byID: map[string]*agentRun{}, sessions: map[string]*sessionQueue{},
		changed: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if o.Sessions == nil {
		r.mem = newMemSessions()
	}
	s.agents = r
	s.handle("agent", true, s.methodAgent)
	s.handle("agent.wait", true, s.methodAgentWait)
	s.registerChatMethods()
}

// agentEvents are the events this gateway emits for runs.
func (s *Server) agentEvents() []string {
	return []string{protocol.EventAgent, protocol.EventChat}
}

// startAgents starts the retention sweep and the provider routing; the
// returned func cancels every run, waits for each to record its end, and
// stops them.
func (s *Server) startAgents() (stop func()) {
	r := s.agents
	bg, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.retentionLoop(bg) }()
	stopRoute := s.startRouting(bg, &wg)
	return func() {
		stopRoute()
		cancel()
		wg.Wait()
		r.stop()
	}
}

func (r *agentRuns) store() store.SessionStore {
	if r.opts.Sessions != nil {
		return r.opts.Sessions
	}
	return r.mem
}

func (r *agentRuns) retentionLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		cutoff := r.srv.opts.Now().Add(-r.opts.Retention).UnixMilli()
		if n, err := r.store().PruneSessions(cutoff); err != nil {
			r.srv.log.Warn("session retention sweep failed", "err", err)
		} else if n > 0 {
			r.srv.log.Info("sessions pruned by retention", "count", n, "retention", r.opts.Retention.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stop refuses new runs, aborts the running ones and waits for them.
func (r *agentRuns) stop() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// notConfigured is the answer when no backend is configured.
func (r *agentRuns) notConfigured() *protocol.Error {
	msg := `no agent backend configured: add an "agent" section to the config file, ` +
		`e.g. {"agent":{"backend":"openai","openai":{"baseUrl":"http://127.0.0.1:11434/v1","model":"llama3.2"}}} ` +
		`or {"agent":{"backend":"exec","exec":{"command":["/usr/local/bin/my-agent"]}}}, then restart the gateway`
	if r.opts.NotConfiguredHint != "" {
		msg += " (" + r.opts.NotConfiguredHint + ")"
	}
	return &protocol.Error{Code: protocol.ErrUnavailable, Message: msg}
}

// lookup returns a live or recently finished run.
func (r *agentRuns) lookup(id string) *agentRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

// start records the user's message and queues the run. It returns the
// existing run when one with the same id is known.
func (r *agentRuns) start(spec runSpec) (*agentRun, bool, error) {
	if r.opts.Backend == nil {
		return nil, false, r.notConfigured()
	}
	r.mu.Lock()
	if old := r.byID[spec.id]; old != nil {
		r.mu.Unlock()
		return old, false, nil
	}
	switch {
	case r.closed:
		r.mu.Unlock()
		return nil, false, &protocol.Error{Code: protocol.ErrUnavailable, Message: "gateway stopping", Retryable: true, RetryAfterMs: 1000}
	case r.active >= r.opts.MaxRuns:
		r.mu.Unlock()
		return nil, false, &protocol.Error{Code: protocol.ErrUnavailable, Message: "too many agent runs in progress",
			Retryable: true, RetryAfterMs: 1000}
	}
	now := r.srv.nowMs()
	ctx, cancel := context.WithCancelCause(r.ctx)
	run := &agentRun{id: spec.id, sessionKey: spec.sessionKey, startedAt: now, cancel: cancel, done: make(chan struct{})}
	r.byID[spec.id] = run
	r.active++
	q := r.sessions[spec.sessionKey]
	if q == nil {
		q = &sessionQueue{slot: make(chan struct{}, 1)}
		r.sessions[spec.sessionKey] = q
	}
	q.refs++
	close(r.changed)
	r.changed = make(chan struct{})
	r.wg.Add(1)
	r.mu.Unlock()

	// The user's message is durable before the run is acknowledged.
	init := spec.meta
	init.SessionID = newUUID()
	_, err := r.store().AppendMessage(spec.sessionKey, init, store.SessionMessage{
		Role: agent.RoleUser, Text: spec.message, TimestampMs: now, RunID: spec.id,
		SenderID: spec.senderID, SenderName: spec.senderName,
	}, r.opts.HistoryKeep)
	if err != nil {
		r.srv.log.Error("record user message", "session", spec.sessionKey, "err", err)
		r.forget(run, q)
		cancel(nil)
		r.wg.Done()
		return nil, false, &protocol.Error{Code: protocol.ErrUnavailable, Message: "session history unavailable", Retryable: true, RetryAfterMs: 1000}
	}
	go func() {
		defer r.wg.Done()
		r.execute(ctx, run, q, spec)
	}()
	return run, true, nil
}

// forget drops a run that never started.
func (r *agentRuns) forget(run *agentRun, q *sessionQueue) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byID, run.id)
	r.active--
	r.releaseQueueLocked(run.sessionKey, q)
}

func (r *agentRuns) releaseQueueLocked(key string, q *sessionQueue) {
	q.refs--
	if q.refs == 0 {
		delete(r.sessions, key)
	}
}

// execute waits for the session's slot, runs the backend and records the
// outcome.
func (r *agentRuns) execute(ctx context.Context, run *agentRun, q *sessionQueue, spec runSpec) {
	acquired := false
	select {
	case q.slot <- struct{}{}:
		acquired = true
	case <-ctx.Done():
	}
	var res agent.Result
	var err error
	if acquired {
		r.emitAgent(run, "lifecycle", map[string]any{"phase": "start", "startedAt": run.startedAt, "sessionKey": run.sessionKey})
		timeout := r.opts.RunTimeout
		if spec.timeout > 0 && spec.timeout < timeout {
			timeout = spec.timeout
		}
		rctx, cancel := context.WithTimeoutCause(ctx, timeout, agent.ErrTimeout)
		req := agent.Request{RunID: run.id, SessionKey: run.sessionKey, Messages: r.conversation(run, spec.message)}
		res, err = r.opts.Backend.Stream(rctx, req, run.onText(r))
		if err == nil && rctx.Err() != nil {
			err = context.Cause(rctx)
		}
		cancel()
	} else {
		err = context.Cause(ctx)
	}
	r.finish(run, res, err)
	if acquired {
		<-q.slot
	}
	r.mu.Lock()
	r.releaseQueueLocked(run.sessionKey, q)
	r.mu.Unlock()
	if spec.reply != nil && run.status == runOK && strings.TrimSpace(run.text) != "" {
		r.deliver(run, spec)
	}
}

// deliver sends a provider run's reply back to its chat.
func (r *agentRuns) deliver(run *agentRun, spec runSpec) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := spec.reply(ctx, run.text); err != nil {
		r.srv.log.Warn("agent reply not delivered", "session", run.sessionKey, "run", run.id, "err", err)
	}
}

// conversation builds what the backend sees: the system prompt, the newest
// history (without this run's own message), then the new message.
func (r *agentRuns) conversation(run *agentRun, message string) []agent.Message {
	var msgs []agent.Message
	if r.opts.SystemPrompt != "" {
		msgs = append(msgs, agent.Message{Role: agent.RoleSystem, Content: r.opts.SystemPrompt})
	}
	_, hist, err := r.store().SessionHistory(run.sessionKey, r.opts.ContextMessages+1)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		r.srv.log.Warn("read session history", "session", run.sessionKey, "err", err)
	}
	var prior []agent.Message
	for _, m := range hist {
		if m.RunID == run.id && m.Role == agent.RoleUser || strings.TrimSpace(m.Text) == "" {
			continue
		}
		if m.Role != agent.RoleUser && m.Role != agent.RoleAssistant {
			continue
		}
		prior = append(prior, agent.Message{Role: m.Role, Content: m.Text})
	}
	if len(prior) > r.opts.ContextMessages-1 {
		prior = prior[len(prior)-(r.opts.ContextMessages-1):]
	}
	msgs = append(msgs, prior...)
	return append(msgs, agent.Message{Role: agent.RoleUser, Content: message})
}

// onText returns the backend's emit callback: text accumulates, and a
// delta goes out at most every deltaInterval (a trailing one after a
// pause).
func (run *agentRun) onText(r *agentRuns) func(string) {
	return func(piece string) {
		if piece == "" {
			return
		}
		now := time.Now()
		run.mu.Lock()
		defer run.mu.Unlock()
		run.buf.WriteString(piece)
		if run.finishing {
			return
		}
		if wait := deltaInterval - now.Sub(run.lastEmit); wait <= 0 {
			r.emitDeltaLocked(run, now)
		} else if run.timer == nil {
			run.timer = time.AfterFunc(wait, func() {
				run.mu.Lock()
				defer run.mu.Unlock()
				run.timer = nil
				if !run.finishing && run.buf.Len() > run.lastSent {
					r.emitDeltaLocked(run, time.Now())
				}
			})
		}
	}
}

// emitDeltaLocked broadcasts the cumulative text; run.mu is held, which
// keeps deltas and the final event in order.
func (r *agentRuns) emitDeltaLocked(run *agentRun, now time.Time) {
	text := run.buf.String()
	delta := text[run.lastSent:]
	run.lastSent, run.lastEmit = len(text), now
	run.chatSeq++
	r.srv.bus.broadcast(protocol.EventChat, chatEvent{
		RunID: run.id, SessionKey: run.sessionKey, Seq: run.chatSeq, State: "delta",
		Message: assistantMessage(text, r.srv.nowMs()), DeltaText: &delta,
	}, nil, nil)
	r.emitAgentLocked(run, "assistant", map[string]any{"text": text, "delta": delta, "sessionKey": run.sessionKey})
}

func (r *agentRuns) emitAgent(run *agentRun, stream string, data map[string]any) {
	run.mu.Lock()
	defer run.mu.Unlock()
	r.emitAgentLocked(run, stream, data)
}

func (r *agentRuns) emitAgentLocked(run *agentRun, stream string, data map[string]any) {
	run.agentSeq++
	r.srv.bus.broadcast(protocol.EventAgent, agentEvent{RunID: run.id, Seq: run.agentSeq, Stream: stream,
		Ts: r.srv.nowMs(), Data: data}, nil, nil)
}

// finish records the outcome, stores the assistant's message, sends the
// final chat and agent events and wakes every waiter.
func (r *agentRuns) finish(run *agentRun, res agent.Result, err error) {
	run.mu.Lock()
	run.finishing = true
	if run.timer != nil {
		run.timer.Stop()
		run.timer = nil
	}
	run.text = run.buf.String()
	run.endedAt = r.srv.nowMs()
	run.usage = res.Usage
	switch {
	case err == nil:
		run.status, run.stopReason = runOK, res.StopReason
	case errors.Is(err, agent.ErrAborted) || errors.Is(err, context.Canceled):
		run.status, run.stopReason = runAborted, "aborted"
	default:
		run.status, run.stopReason = runError, "error"
		run.errMsg, run.errKind = err.Error(), agent.Kind(err)
		run.timedOut = errors.Is(err, agent.ErrTimeout)
		attrs := []any{"run", run.id, "session", run.sessionKey, "err", err}
		var ee *agent.ExitError
		if errors.As(err, &ee) {
			attrs = append(attrs, "stderrTail", ee.Stderr)
		}
		r.srv.log.Warn("agent run failed", attrs...)
	}
	run.mu.Unlock()

	// Every run ends with an assistant message, even an empty aborted
	// one, so the history shows what became of each user message.
	_, serr := r.store().AppendMessage(run.sessionKey, store.SessionMeta{SessionID: newUUID()}, store.SessionMessage{
		Role: agent.RoleAssistant, Text: run.text, TimestampMs: run.endedAt, RunID: run.id,
		StopReason: run.stopReason, ErrorMessage: run.errMsg,
	}, r.opts.HistoryKeep)
	if serr != nil {
		r.srv.log.Error("record assistant message", "session", run.sessionKey, "err", serr)
	}

	run.mu.Lock()
	// The agent stream first: the rest of the text, then how it ended.
	if run.lastSent < len(run.text) {
		delta := run.text[run.lastSent:]
		run.lastSent = len(run.text)
		r.emitAgentLocked(run, "assistant", map[string]any{"text": run.text, "delta": delta, "sessionKey": run.sessionKey})
	}
	life := map[string]any{"phase": "end", "startedAt": run.startedAt, "endedAt": run.endedAt, "sessionKey": run.sessionKey}
	run.chatSeq++
	ev := chatEvent{RunID: run.id, SessionKey: run.sessionKey, Seq: run.chatSeq, State: "final"}
	if run.text != "" || run.status == runOK {
		ev.Message = assistantMessage(run.text, run.endedAt)
	}
	switch run.status {
	case runOK:
		ev.StopReason = run.stopReason
		if u := run.usage; u != nil {
			ev.Usage = u
		}
		life["stopReason"] = run.stopReason
	case runAborted:
		ev.State, ev.StopReason = "aborted", "aborted"
		life["aborted"] = true
	case runError:
		ev.State, ev.ErrorMessage, ev.ErrorKind = "error", run.errMsg, run.errKind
		r.emitAgentLocked(run, "error", map[string]any{"message": run.errMsg, "kind": run.errKind, "sessionKey": run.sessionKey})
		life["phase"], life["error"] = "error", run.errMsg
	}
	r.emitAgentLocked(run, "lifecycle", life)
	r.srv.bus.broadcast(protocol.EventChat, ev, nil, nil)
	run.mu.Unlock()

	r.mu.Lock()
	r.active--
	r.finished = append(r.finished, run)
	r.evictLocked()
	r.mu.Unlock()
	close(run.done)
}

// evictLocked drops finished runs past their TTL or beyond the bound.
func (r *agentRuns) evictLocked() {
	cutoff := r.srv.nowMs() - finishedRunTTL.Milliseconds()
	n := 0
	for n < len(r.finished) && (len(r.finished)-n > maxFinishedRuns || r.finished[n].endedAt < cutoff) {
		delete(r.byID, r.finished[n].id)
		n++
	}
	if n > 0 {
		r.finished = append(r.finished[:0:0], r.finished[n:]...)
	}
}

// abort cancels the session's runs (or only runID when set) and returns
// the ids it aborted.
func (r *agentRuns) abort(sessionKey, runID string) []string {
	r.mu.Lock()
	var hit []*agentRun
	for _, run := range r.byID {
		if run.sessionKey != sessionKey || runID != "" && run.id != runID {
			continue
		}
		select {
		case <-run.done:
			continue
		default:
		}
		hit = append(hit, run)
	}
	r.mu.Unlock()
	ids := make([]string, 0, len(hit))
	for _, run := range hit {
		run.cancel(agent.ErrAborted)
		ids = append(ids, run.id)
	}
	return ids
}

// chatEvent is the chat event payload (ChatEvent in the official schema).
type chatEvent struct {
	RunID        string       `json:"runId"`
	SessionKey   string       `json:"sessionKey"`
	Seq          int          `json:"seq"`
	State        string       `json:"state"`
	Message      *chatMessage `json:"message,omitempty"`
	DeltaText    *string      `json:"deltaText,omitempty"`
	ErrorMessage string       `json:"errorMessage,omitempty"`
	ErrorKind    string       `json:"errorKind,omitempty"`
	StopReason   string       `json:"stopReason,omitempty"`
	Usage        *agent.Usage `json:"usage,omitempty"`
}

// chatMessage is a transcript message: {role, content:[{type:"text",text}],
// timestamp}.
type chatMessage struct {
	Role         string        `json:"role"`
	Content      []textContent `json:"content"`
	Timestamp    int64         `json:"timestamp"`
	RunID        string        `json:"runId,omitempty"`
	StopReason   string        `json:"stopReason,omitempty"`
	ErrorMessage string        `json:"errorMessage,omitempty"`
	SenderName   string        `json:"senderName,omitempty"`
}

type textContent struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func assistantMessage(text string, ts int64) *chatMessage {
	return &chatMessage{Role: agent.RoleAssistant, Content: []textContent{{Type: "text", Text: text}}, Timestamp: ts}
}

// agentEvent is the agent event payload (AgentEvent in the official schema).
type agentEvent struct {
	RunID  string         `json:"runId"`
	Seq    int            `json:"seq"`
	Stream string         `json:"stream"`
	Ts     int64          `json:"ts"`
	Data   map[string]any `json:"data"`
}

// agentParams is the part of AgentParams this gateway acts on; the schema
// has already checked the rest.
type agentParams struct {
	Message        string `json:"message"`
	IdempotencyKey string `json:"idempotencyKey"`
	SessionKey     string `json:"sessionKey"`
	Timeout        *int64 `json:"timeout"`
	Attachments    []any  `json:"attachments"`
}

// agentAck is the first response of agent.
type agentAck struct {
	RunID      string `json:"runId"`
	Status     string `json:"status"`
	AcceptedAt int64  `json:"acceptedAt"`
}

// agentReply answers an agent request twice: the ack at once, then the
// final outcome when the run ends (unless the connection closed first).
type agentReply struct {
	ack agentAck
	run *agentRun
}

// multiReply is a handler result that writes its own responses under the
// request id (run in dispatch.go hands it over).
type multiReply interface {
	reply(c *Conn, id string)
}

func (a agentReply) reply(c *Conn, id string) {
	c.send(protocol.OKResponse(id, a.ack))
	if a.run == nil {
		return
	}
	select {
	case <-a.run.done:
	case <-c.ctx.Done():
		return
	}
	c.send(a.run.finalResponse(id))
}

// finalResponse is agent's second response.
func (run *agentRun) finalResponse(id string) *protocol.Response {
	durationMs := run.endedAt - run.startedAt
	if run.status == runError {
		code := protocol.ErrUnavailable
		if run.timedOut {
			code = protocol.ErrAgentTimeout
		}
		perr := &protocol.Error{Code: code, Message: run.errMsg}
		if run.errKind != "" {
			perr.Details = map[string]any{"errorKind": run.errKind}
		}
		return &protocol.Response{Type: protocol.TypeRes, ID: id, OK: false,
			Payload: map[string]any{"runId": run.id, "status": "error", "summary": run.errMsg},
			Error:   perr.Shape()}
	}
	meta := map[string]any{"durationMs": durationMs, "aborted": run.status == runAborted, "stopReason": run.stopReason,
		"sessionKey": run.sessionKey}
	if run.usage != nil {
		meta["usage"] = run.usage
	}
	summary := "completed"
	if run.status == runAborted {
		summary = "aborted"
	}
	payloads := []any{}
	if run.text != "" {
		payloads = append(payloads, map[string]any{"text": run.text})
	}
	return protocol.OKResponse(id, map[string]any{"runId": run.id, "status": "ok", "summary": summary,
		"result": map[string]any{"payloads": payloads, "meta": meta}})
}

// methodAgent starts a run (once per idempotency key) and answers twice.
func (s *Server) methodAgent(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p agentParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid agent params: " + err.Error())
	}
	if len(p.Attachments) > 0 {
		return nil, protocol.InvalidRequest("invalid agent params: attachments are not supported by this gateway")
	}
	key := p.SessionKey
	if key == "" {
		key = defaultSessionKey
	}
	if perr := checkSessionKey(key); perr != nil {
		return nil, perr
	}
	if perr := checkMessage(p.Message); perr != nil {
		return nil, perr
	}
	var timeout time.Duration
	if p.Timeout != nil && *p.Timeout > 0 {
		timeout = time.Duration(*p.Timeout) * time.Second
	}
	// Idempotency: the run table holds live runs and finished ones for the
	// dedupe window, so a retry with the same key gets the same run (its
	// ack again, then its final) and never starts a second one. Transient
	// refusals (capacity, stopping) are not remembered.
	run, _, err := s.agents.start(runSpec{id: p.IdempotencyKey, sessionKey: key, message: p.Message, timeout: timeout})
	if err != nil {
		return nil, err
	}
	return agentReply{ack: agentAck{RunID: run.id, Status: "accepted", AcceptedAt: run.startedAt}, run: run}, nil
}

// methodAgentWait waits for a run to end: {runId, status, startedAt,
// endedAt, error?}; status "timeout" when the wait ran out first.
func (s *Server) methodAgentWait(ctx context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		RunID     string `json:"runId"`
		TimeoutMs *int64 `json:"timeoutMs"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid agent.wait params: " + err.Error())
	}
	wait := int64(defaultWaitMs)
	if p.TimeoutMs != nil {
		wait = *p.TimeoutMs
	}
	timer := time.NewTimer(time.Duration(wait) * time.Millisecond)
	defer timer.Stop()
	r := s.agents
	for {
		r.mu.Lock()
		run, changed := r.byID[p.RunID], r.changed
		r.mu.Unlock()
		if run != nil {
			select {
			case <-run.done:
				out := map[string]any{"runId": run.id, "status": "ok", "startedAt": run.startedAt, "endedAt": run.endedAt}
				switch run.status {
				case runError:
					out["status"], out["error"] = "error", run.errMsg
				case runAborted:
					out["aborted"] = true
				}
				return out, nil
			case <-timer.C:
				return map[string]any{"runId": p.RunID, "status": "timeout"}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		// Not started yet (or unknown): wait for a run to register.
		select {
		case <-changed:
		case <-timer.C:
			return map[string]any{"runId": p.RunID, "status": "timeout"}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// checkSessionKey refuses keys the protocol allows but that cannot be
// shown or stored safely.
func checkSessionKey(key string) *protocol.Error {
	if strings.TrimSpace(key) == "" {
		return protocol.InvalidRequest("invalid sessionKey: must not be blank")
	}
	for _, c := range key {
		if c < 0x20 || c == 0x7f {
			return protocol.InvalidRequest("invalid sessionKey: control characters are not allowed")
		}
	}
	return nil
}

func checkMessage(msg string) *protocol.Error {
	if strings.TrimSpace(msg) == "" {
		return protocol.InvalidRequest("message or attachment required")
	}
	if n := len([]rune(msg)); n > maxMessageRunes {
		return protocol.InvalidRequest(fmt.Sprintf("message too long: %d characters (at most %d)", n, maxMessageRunes))
	}
	return nil
}
