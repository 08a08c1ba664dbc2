package store

// SessionMeta describes one chat session, as stored. Key is the session key
// clients use ("main", or "telegram:default:123456" for a provider chat).
type SessionMeta struct {
	Key         string `json:"key"`
	SessionID   string `json:"sessionId"`
	CreatedAtMs int64  `json:"createdAtMs"`
	UpdatedAtMs int64  `json:"updatedAtMs"`
	// Where a provider conversation lives; empty for WebChat and API
	// sessions.
	Channel   string `json:"channel,omitempty"`
	AccountID string `json:"accountId,omitempty"`
	ChatID    string `json:"chatId,omitempty"`
	ChatType  string `json:"chatType,omitempty"`
	ThreadID  string `json:"threadId,omitempty"`
	// DisplayName is a human label (a chat title or sender name).
	DisplayName string `json:"displayName,omitempty"`
	// MessageCount is how many messages the session holds now.
	MessageCount int `json:"messageCount"`
	// LastPreview is the start of the newest message.
	LastPreview string `json:"lastPreview,omitempty"`
}

// SessionMessage is one message of a session's history.
type SessionMessage struct {
	Role        string `json:"role"` // "user" or "assistant"
	Text        string `json:"text"`
	TimestampMs int64  `json:"timestampMs"`
	RunID       string `json:"runId,omitempty"`
	// StopReason ends an assistant message: "stop", "length", "aborted",
	// "error".
	StopReason string `json:"stopReason,omitempty"`
	// ErrorMessage explains an "error" stop.
	ErrorMessage string `json:"errorMessage,omitempty"`
	// SenderID and SenderName identify who wrote a provider message.
	SenderID   string `json:"senderId,omitempty"`
	SenderName string `json:"senderName,omitempty"`
}

// SessionStore keeps chat histories. Each call is one durable transaction;
// values are copies owned by the caller.
type SessionStore interface {
	// AppendMessage adds msg to the session key, creating the session from
	// init when it does not exist (init.SessionID must then be set; the
	// provider fields of init also refresh an existing session's), and
	// drops the oldest messages beyond keep (keep <= 0 keeps all). It
	// returns the session as it is after the append.
	AppendMessage(key string, init SessionMeta, msg SessionMessage, keep int) (SessionMeta, error)
	// SessionHistory returns the session and its newest messages, at most
	// limit (<= 0: all), oldest first. ErrNotFound when there is no such
	// session.
	SessionHistory(key string, limit int) (SessionMeta, []SessionMessage, error)
	// ListSessions returns every session, most recently updated first.
	ListSessions() ([]SessionMeta, error)
	// PruneSessions deletes sessions not updated since beforeMs and
	// returns how many went.
	PruneSessions(beforeMs int64) (int, error)
}
