package protocol

// Roles a connection can take.
const (
	RoleOperator = "operator"
	RoleNode     = "node"
)

// Client modes that change how the handshake treats a connection.
const (
	ModeNode    = "node"
	ModeProbe   = "probe"
	ModeCLI     = "cli"
	ModeWebchat = "webchat"
	ModeBackend = "backend"
)

// ConnectParams are the params of the first request, method "connect".
type ConnectParams struct {
	MinProtocol int             `json:"minProtocol"`
	MaxProtocol int             `json:"maxProtocol"`
	Client      ClientInfo      `json:"client"`
	Caps        []string        `json:"caps,omitempty"`
	Commands    []string        `json:"commands,omitempty"`
	Permissions map[string]bool `json:"permissions,omitempty"`
	PathEnv     string          `json:"pathEnv,omitempty"`
	Role        string          `json:"role,omitempty"`
	Scopes      []string        `json:"scopes"`
	Device      *DeviceProof    `json:"device,omitempty"`
	Auth        *ConnectAuth    `json:"auth,omitempty"`
	Locale      string          `json:"locale,omitempty"`
	UserAgent   string          `json:"userAgent,omitempty"`
}

// ClientInfo describes the connecting program.
type ClientInfo struct {
	ID              string `json:"id"`
	DisplayName     string `json:"displayName,omitempty"`
	Version         string `json:"version"`
	BuildID         string `json:"buildId,omitempty"`
	Platform        string `json:"platform"`
	DeviceFamily    string `json:"deviceFamily,omitempty"`
	ModelIdentifier string `json:"modelIdentifier,omitempty"`
	TimeZone        string `json:"timeZone,omitempty"`
	Mode            string `json:"mode"`
	InstanceID      string `json:"instanceId,omitempty"`
}

// DeviceProof is the signed device block of ConnectParams.
type DeviceProof struct {
	ID        string `json:"id"`
	PublicKey string `json:"publicKey"`
	Signature string `json:"signature"`
	SignedAt  int64  `json:"signedAt"`
	Nonce     string `json:"nonce"`
}

// ConnectAuth carries the credentials of ConnectParams.
type ConnectAuth struct {
	Token          string `json:"token,omitempty"`
	BootstrapToken string `json:"bootstrapToken,omitempty"`
	DeviceToken    string `json:"deviceToken,omitempty"`
	Password       string `json:"password,omitempty"`
}

// ResolvedRole returns the requested role, defaulting to operator.
func (p *ConnectParams) ResolvedRole() string {
	if p.Role == "" {
		return RoleOperator
	}
	return p.Role
}

// Challenge is the payload of the connect.challenge event.
type Challenge struct {
	Nonce string `json:"nonce"`
	Ts    int64  `json:"ts"`
}

// HelloOK is the payload of a successful connect response.
type HelloOK struct {
	Type     string     `json:"type"` // "hello-ok"
	Protocol int        `json:"protocol"`
	Server   ServerInfo `json:"server"`
	Features Features   `json:"features"`
	Snapshot Snapshot   `json:"snapshot"`
	// CanvasHostURL (v3) and PluginSurfaceURLs (v4, "canvas") give a node
	// its capability URL on the canvas host.
	CanvasHostURL     string            `json:"canvasHostUrl,omitempty"`
	PluginSurfaceURLs map[string]string `json:"pluginSurfaceUrls,omitempty"`
	Auth              HelloAuth         `json:"auth"`
	Policy            Policy            `json:"policy"`
}

// ServerInfo identifies the gateway and this connection.
type ServerInfo struct {
	Version string `json:"version"`
	BootID  string `json:"bootId,omitempty"`
	ConnID  string `json:"connId"`
}

// Features lists what the gateway really implements.
type Features struct {
	Methods []string `json:"methods"`
	Events  []string `json:"events"`
}

// Snapshot is the state a client starts from.
type Snapshot struct {
	Presence     []PresenceEntry `json:"presence"`
	Health       any             `json:"health"`
	StateVersion StateVersion    `json:"stateVersion"`
	UptimeMs     int64           `json:"uptimeMs"`
	StateDir     string          `json:"stateDir,omitempty"`
	ConfigPath   string          `json:"configPath,omitempty"`
	AuthMode     string          `json:"authMode,omitempty"`
}

// HelloAuth reports the live role and scopes of the connection.
type HelloAuth struct {
	DeviceToken string   `json:"deviceToken,omitempty"`
	Role        string   `json:"role"`
	Scopes      []string `json:"scopes"`
	IssuedAtMs  int64    `json:"issuedAtMs,omitempty"`
}

// Policy tells the client the gateway's limits.
type Policy struct {
	MaxPayload       int `json:"maxPayload"`
	MaxBufferedBytes int `json:"maxBufferedBytes"`
	TickIntervalMs   int `json:"tickIntervalMs"`
}

// PresenceEntry is one connected client (or the gateway itself).
type PresenceEntry struct {
	Host            string   `json:"host,omitempty"`
	IP              string   `json:"ip,omitempty"`
	Version         string   `json:"version,omitempty"`
	Platform        string   `json:"platform,omitempty"`
	DeviceFamily    string   `json:"deviceFamily,omitempty"`
	ModelIdentifier string   `json:"modelIdentifier,omitempty"`
	Mode            string   `json:"mode,omitempty"`
	Reason          string   `json:"reason,omitempty"`
	Text            string   `json:"text,omitempty"`
	Ts              int64    `json:"ts"`
	OnlineSince     int64    `json:"onlineSince,omitempty"`
	DeviceID        string   `json:"deviceId,omitempty"`
	Roles           []string `json:"roles,omitempty"`
	Scopes          []string `json:"scopes,omitempty"`
	InstanceID      string   `json:"instanceId,omitempty"`
}

// PresencePayload is the payload of the presence event.
type PresencePayload struct {
	Presence []PresenceEntry `json:"presence"`
}

// TickPayload is the payload of the tick event.
type TickPayload struct {
	Ts int64 `json:"ts"`
}

// ShutdownPayload is the payload of the shutdown event.
type ShutdownPayload struct {
	Reason            string `json:"reason"`
	RestartExpectedMs int64  `json:"restartExpectedMs,omitempty"`
}

// HealthParams are the params of the health method.
type HealthParams struct {
	Probe bool `json:"probe,omitempty"`
}
