package protocol

// HealthSummary is the result of the health method and the payload of the
// health event.
type HealthSummary struct {
	OK               bool                     `json:"ok"`
	Ts               int64                    `json:"ts"`
	DurationMs       int64                    `json:"durationMs"`
	Channels         map[string]ChannelHealth `json:"channels"`
	ChannelOrder     []string                 `json:"channelOrder"`
	ChannelLabels    map[string]string        `json:"channelLabels"`
	HeartbeatSeconds int64                    `json:"heartbeatSeconds"`
	DefaultAgentID   string                   `json:"defaultAgentId"`
	Agents           []AgentHealth            `json:"agents"`
	Sessions         SessionsHealth           `json:"sessions"`
}

// ChannelHealth is one messaging provider's state.
type ChannelHealth struct {
	Configured bool   `json:"configured"`
	Running    bool   `json:"running"`
	Connected  bool   `json:"connected"`
	Status     string `json:"status,omitempty"`
	LastError  string `json:"lastError,omitempty"`
}

// AgentHealth summarises one agent.
type AgentHealth struct {
	AgentID   string          `json:"agentId"`
	IsDefault bool            `json:"isDefault"`
	Heartbeat HeartbeatConfig `json:"heartbeat"`
	Sessions  SessionsHealth  `json:"sessions"`
}

// HeartbeatConfig is an agent's heartbeat schedule. EveryMs is null when
// heartbeats are off.
type HeartbeatConfig struct {
	Enabled     bool   `json:"enabled"`
	Every       string `json:"every"`
	EveryMs     *int64 `json:"everyMs"`
	Prompt      string `json:"prompt"`
	Target      string `json:"target"`
	AckMaxChars int    `json:"ackMaxChars"`
}

// SessionsHealth counts stored chat sessions.
type SessionsHealth struct {
	Path   string `json:"path"`
	Count  int    `json:"count"`
	Recent []any  `json:"recent"`
}

// StatusResult is the result of the status method. Fields marked sensitive
// are filled only for operator.admin callers.
type StatusResult struct {
	RuntimeVersion string          `json:"runtimeVersion"`
	UptimeMs       int64           `json:"uptimeMs"`
	Connections    StatusConns     `json:"connections"`
	ChannelSummary []any           `json:"channelSummary"`
	Heartbeat      StatusHeartbeat `json:"heartbeat"`
	Sessions       StatusSessions  `json:"sessions"`
	ProcessMemory  *ProcessMemory  `json:"processMemory,omitempty"`
	PID            int             `json:"pid,omitempty"`
	StateDir       string          `json:"stateDir,omitempty"`
	Listeners      []string        `json:"listeners,omitempty"`
}

// StatusConns counts live connections by role.
type StatusConns struct {
	Total     int `json:"total"`
	Operators int `json:"operators"`
	Nodes     int `json:"nodes"`
}

// StatusHeartbeat describes the heartbeat schedule.
type StatusHeartbeat struct {
	DefaultAgentID string `json:"defaultAgentId"`
	Agents         []any  `json:"agents"`
}

// StatusSessions counts stored sessions.
type StatusSessions struct {
	Count  int   `json:"count"`
	Recent []any `json:"recent"`
}

// ProcessMemory is the gateway process's memory use.
type ProcessMemory struct {
	RSSBytes       uint64 `json:"rssBytes"`
	HeapUsedBytes  uint64 `json:"heapUsedBytes"`
	HeapTotalBytes uint64 `json:"heapTotalBytes"`
}
