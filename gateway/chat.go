package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/store"
)

// History limits.
const (
	defaultHistoryLimit = 200
	maxHistoryBytes     = 6 << 20 // chat.history answers stay under 6 MiB
)

func (s *Server) registerChatMethods() {
	s.handle("chat.send", true, s.methodChatSend)
	s.handle("chat.history", true, s.methodChatHistory)
	s.handle("chat.abort", false, s.methodChatAbort)
	s.handle("sessions.list", true, s.methodSessionsList)
}

type chatSendParams struct {
	SessionKey     string `json:"sessionKey"`
	Message        string `json:"message"`
	IdempotencyKey string `json:"idempotencyKey"`
	TimeoutMs      *int64 `json:"timeoutMs"`
	Attachments    []any  `json:"attachments"`
}

// methodChatSend starts a run in a session: {runId, status:"started"}, or
// "in_flight" when the same idempotency key is already running. "/stop"
// aborts the session's runs instead.
func (s *Server) methodChatSend(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p chatSendParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid chat.send params: " + err.Error())
	}
	if perr := checkSessionKey(p.SessionKey); perr != nil {
		return nil, perr
	}
	if len(p.Attachments) > 0 {
		return nil, protocol.InvalidRequest("invalid chat.send params: attachments are not supported by this gateway")
	}
	if strings.TrimSpace(p.Message) == "/stop" {
		ids := s.agents.abort(p.SessionKey, "")
		return map[string]any{"ok": true, "aborted": len(ids) > 0, "runIds": ids}, nil
	}
	if perr := checkMessage(p.Message); perr != nil {
		return nil, perr
	}
	spec := runSpec{id: p.IdempotencyKey, sessionKey: p.SessionKey, message: p.Message}
	if p.TimeoutMs != nil && *p.TimeoutMs > 0 {
		spec.timeout = msDuration(*p.TimeoutMs)
	}
	run, created, err := s.agents.start(spec)
	if err != nil {
		return nil, err
	}
	status := "started"
	if !created {
		run.mu.Lock()
		finishing := run.finishing
		run.mu.Unlock()
		if finishing {
			// The run has ended (its final event may already be out);
			// only its bookkeeping is left: answer with the outcome.
			<-run.done
		}
		select {
		case <-run.done:
			status = run.status
		default:
			status = "in_flight"
		}
	}
	return map[string]any{"runId": run.id, "status": status}, nil
}

// methodChatAbort aborts the session's runs (or one of them):
// {ok:true, aborted, runIds}.
func (s *Server) methodChatAbort(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		SessionKey string `json:"sessionKey"`
		RunID      string `json:"runId"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid chat.abort params: " + err.Error())
	}
	ids := s.agents.abort(p.SessionKey, p.RunID)
	return map[string]any{"ok": true, "aborted": len(ids) > 0, "runIds": ids}, nil
}

// methodChatHistory returns a session's newest messages, oldest first:
// {sessionKey, sessionId, messages}.
func (s *Server) methodChatHistory(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		SessionKey string `json:"sessionKey"`
		Limit      int    `json:"limit"`
		MaxChars   int    `json:"maxChars"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid chat.history params: " + err.Error())
	}
	limit := p.Limit
	if limit <= 0 {
		limit = defaultHistoryLimit
	}
	meta, hist, err := s.agents.store().SessionHistory(p.SessionKey, limit)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return map[string]any{"sessionKey": p.SessionKey, "messages": []any{}}, nil
	case err != nil:
		s.log.Error("read session history", "session", p.SessionKey, "err", err)
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "session history unavailable", Retryable: true, RetryAfterMs: 1000}
	}
	msgs := make([]*chatMessage, 0, len(hist))
	size := 0
	for i := len(hist) - 1; i >= 0; i-- { // newest first, so the cap drops the oldest
		m := historyMessage(hist[i], p.MaxChars)
		size += len(m.Content[0].Text) + 200
		if size > maxHistoryBytes {
			break
		}
		msgs = append(msgs, m)
	}
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	return map[string]any{"sessionKey": p.SessionKey, "sessionId": meta.SessionID, "messages": msgs}, nil
}

func historyMessage(m store.SessionMessage, maxChars int) *chatMessage {
	text := m.Text
	if maxChars > 0 {
		if r := []rune(text); len(r) > maxChars {
			text = string(r[:maxChars])
		}
	}
	return &chatMessage{Role: m.Role, Content: []textContent{{Type: "text", Text: text}}, Timestamp: m.TimestampMs,
		RunID: m.RunID, StopReason: m.StopReason, ErrorMessage: m.ErrorMessage, SenderName: m.SenderName}
}

// methodSessionsList lists sessions, most recent first:
// {ts, path, count, defaults, sessions:[SessionRow]}.
func (s *Server) methodSessionsList(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		Limit              int    `json:"limit"`
		Offset             int    `json:"offset"`
		ActiveMinutes      int    `json:"activeMinutes"`
		IncludeLastMessage bool   `json:"includeLastMessage"`
		Search             string `json:"search"`
		Label              string `json:"label"`
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, protocol.InvalidRequest("invalid sessions.list params: " + err.Error())
		}
	}
	all, err := s.agents.store().ListSessions()
	if err != nil {
		s.log.Error("list sessions", "err", err)
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "sessions unavailable", Retryable: true, RetryAfterMs: 1000}
	}
	now := s.nowMs()
	search := strings.ToLower(p.Search)
	rows := []map[string]any{}
	for _, m := range all {
		if p.ActiveMinutes > 0 && now-m.UpdatedAtMs > int64(p.ActiveMinutes)*60000 {
			continue
		}
		if search != "" && !strings.Contains(strings.ToLower(m.Key+" "+m.DisplayName), search) {
			continue
		}
		if p.Label != "" { // sessions carry no labels here
			continue
		}
		rows = append(rows, sessionRow(m, p.IncludeLastMessage))
	}
	count := len(rows)
	if p.Offset > 0 {
		rows = rows[min(p.Offset, len(rows)):]
	}
	if p.Limit > 0 && len(rows) > p.Limit {
		rows = rows[:p.Limit]
	}
	return map[string]any{"ts": now, "path": s.opts.StateDir, "count": count, "defaults": map[string]any{},
		"sessions": rows}, nil
}

func sessionRow(m store.SessionMeta, withLast bool) map[string]any {
	kind := "direct"
	if m.ChatType == "group" || m.ChatType == "channel" {
		kind = "group"
	}
	row := map[string]any{"key": m.Key, "kind": kind, "sessionId": m.SessionID, "updatedAt": m.UpdatedAtMs,
		"isMain": m.Key == defaultSessionKey}
	set := func(k, v string) {
		if v != "" {
			row[k] = v
		}
	}
	set("displayName", m.DisplayName)
	set("channel", m.Channel)
	set("accountId", m.AccountID)
	set("chatType", m.ChatType)
	if withLast {
		set("lastMessagePreview", m.LastPreview)
	}
	return row
}

// memSessions keeps histories in memory when no store is configured.
type memSessions struct {
	mu   sync.Mutex
	meta map[string]store.SessionMeta
	msgs map[string][]store.SessionMessage
}

var _ store.SessionStore = (*memSessions)(nil)

func newMemSessions() *memSessions {
	return &memSessions{meta: map[string]store.SessionMeta{}, msgs: map[string][]store.SessionMessage{}}
}

func (m *memSessions) AppendMessage(key string, init store.SessionMeta, msg store.SessionMessage, keep int) (store.SessionMeta, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	meta, ok := m.meta[key]
	if !ok {
		meta = store.SessionMeta{Key: key, SessionID: init.SessionID, CreatedAtMs: msg.TimestampMs}
	}
	refresh := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	refresh(&meta.Channel, init.Channel)
	refresh(&meta.AccountID, init.AccountID)
	refresh(&meta.ChatID, init.ChatID)
	refresh(&meta.ChatType, init.ChatType)
	refresh(&meta.ThreadID, init.ThreadID)
	refresh(&meta.DisplayName, init.DisplayName)
	list := append(m.msgs[key], msg)
	if keep > 0 && len(list) > keep {
		list = append([]store.SessionMessage(nil), list[len(list)-keep:]...)
	}
	m.msgs[key] = list
	meta.MessageCount, meta.UpdatedAtMs = len(list), max(meta.UpdatedAtMs, msg.TimestampMs)
	meta.LastPreview = msg.Text
	if r := []rune(meta.LastPreview); len(r) > 120 {
		meta.LastPreview = string(r[:120]) + "…"
	}
	m.meta[key] = meta
	return meta, nil
}

func (m *memSessions) SessionHistory(key string, limit int) (store.SessionMeta, []store.SessionMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	meta, ok := m.meta[key]
	if !ok {
		return store.SessionMeta{}, nil, store.ErrNotFound
	}
	list := m.msgs[key]
	if limit > 0 && len(list) > limit {
		list = list[len(list)-limit:]
	}
	return meta, append([]store.SessionMessage(nil), list...), nil
}

func (m *memSessions) ListSessions() ([]store.SessionMeta, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]store.SessionMeta, 0, len(m.meta))
	for _, v := range m.meta {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].UpdatedAtMs != out[j].UpdatedAtMs {
			return out[i].UpdatedAtMs > out[j].UpdatedAtMs
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}

func (m *memSessions) PruneSessions(beforeMs int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, v := range m.meta {
		if v.UpdatedAtMs < beforeMs {
			delete(m.meta, k)
			delete(m.msgs, k)
			n++
		}
	}
	return n, nil
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
