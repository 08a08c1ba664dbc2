package config

// Tailnet configures the gateway's tsnet listener ("clawgate gateway
// --tailnet", or Enabled here). Without either, nothing tailnet-related
// starts.
type Tailnet struct {
	Enabled bool `json:"enabled,omitempty"`
	// Hostname is the node name asked of the control server (default
	// "clawgate"); the MagicDNS name is <hostname>.<tailnet>.ts.net.
	Hostname string `json:"hostname,omitempty"`
	// Port on the tailnet address; default: the gateway port.
	Port int `json:"port,omitempty"`
	// AuthKeyFile holds a Tailscale auth key (0600); else $TS_AUTHKEY;
	// else interactive login (the URL is logged and shown by status).
	AuthKeyFile string `json:"authKeyFile,omitempty"`
	// ControlURL selects a self-hosted coordination server (Headscale).
	ControlURL string `json:"controlURL,omitempty"`
	// Ephemeral registers a node that the tailnet forgets soon after it
	// goes offline.
	Ephemeral bool `json:"ephemeral,omitempty"`
	// AdvertiseTags asks control to tag the gateway's node.
	AdvertiseTags []string `json:"advertiseTags,omitempty"`
	// AllowedLogins: devices of these owners pair without approval
	// (still with a signed challenge). Default: the login that owns the
	// gateway node.
	AllowedLogins []string `json:"allowedLogins,omitempty"`
	// AllowedTags: tagged nodes with one of these tags pair without
	// approval. Default: none.
	AllowedTags []string `json:"allowedTags,omitempty"`
	// UploadLogs lets tsnet upload its logs to Tailscale (off by
	// default).
	UploadLogs bool `json:"uploadLogs,omitempty"`
}
