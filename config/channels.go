package config

// Channels configures the messaging accounts, one list per service. Each
// account's secrets come from a file (mode 0600) or an environment
// variable; the config file never holds them.
type Channels struct {
	Telegram []TelegramAccount `json:"telegram,omitempty"`
	Slack    []SlackAccount    `json:"slack,omitempty"`
	Discord  []DiscordAccount  `json:"discord,omitempty"`
	WhatsApp []WhatsAppAccount `json:"whatsapp,omitempty"` // whatsapp.go
}

// Empty reports whether no account is configured.
func (c Channels) Empty() bool {
	return len(c.Telegram)+len(c.Slack)+len(c.Discord)+len(c.WhatsApp) == 0
}

// Secret names where one secret comes from: File (preferred; refused when
// group or others can read it) or Env, the name of an environment
// variable.
type Secret struct {
	File string `json:"file,omitempty"`
	Env  string `json:"env,omitempty"`
}

// Set reports whether a source is named.
func (s Secret) Set() bool { return s.File != "" || s.Env != "" }

// AccountPolicy is the access policy every account has. IDs are the
// service's immutable numeric or opaque ids, never usernames.
type AccountPolicy struct {
	// AllowFrom: sender ids whose messages reach the gateway; empty
	// denies everyone; "*" admits any sender.
	AllowFrom []string `json:"allowFrom,omitempty"`
	// Owners: sender ids with owner rights ("*" is refused).
	Owners []string `json:"owners,omitempty"`
	// AllowTo: destinations send may reach, beyond conversations that
	// delivered an admitted message; "*" allows any.
	AllowTo []string `json:"allowTo,omitempty"`
	// DMPairing: unknown senders in direct chats get a pairing code
	// (approve with channels.pairing.approve) instead of silence.
	DMPairing bool `json:"dmPairing,omitempty"`
	// MaxTextBytes drops longer inbound text (default 64 KiB).
	MaxTextBytes int `json:"maxTextBytes,omitempty"`
}

// TelegramAccount is one Telegram bot.
type TelegramAccount struct {
	ID    string `json:"id,omitempty"` // default "default"
	Label string `json:"label,omitempty"`
	Token Secret `json:"token"`
	// APIURL: default https://api.telegram.org (e.g. a local Bot API
	// server); http only to loopback.
	APIURL string `json:"apiUrl,omitempty"`
	// Mode: "polling" (default) or "webhook".
	Mode               string          `json:"mode,omitempty"`
	PollTimeoutSeconds int             `json:"pollTimeoutSeconds,omitempty"`
	Webhook            TelegramWebhook `json:"webhook,omitempty"`
	AccountPolicy
}

// TelegramWebhook is the webhook listener. Secret is required in webhook
// mode; the gateway refuses to start without it.
type TelegramWebhook struct {
	Listen    string `json:"listen,omitempty"`
	Path      string `json:"path,omitempty"`
	PublicURL string `json:"publicUrl,omitempty"`
	Secret    Secret `json:"secret,omitempty"`
}

// SlackAccount is one Slack app installation over Socket Mode.
type SlackAccount struct {
	ID       string `json:"id,omitempty"`
	Label    string `json:"label,omitempty"`
	BotToken Secret `json:"botToken"` // xoxb-
	AppToken Secret `json:"appToken"` // xapp-, with connections:write
	// APIURL: default https://slack.com/api/; http only to loopback.
	APIURL string `json:"apiUrl,omitempty"`
	AccountPolicy
}

// DiscordAccount is one Discord bot on the gateway.
type DiscordAccount struct {
	ID    string `json:"id,omitempty"`
	Label string `json:"label,omitempty"`
	Token Secret `json:"token"`
	// APIURL replaces https://discord.com for REST; http only to loopback.
	APIURL             string `json:"apiUrl,omitempty"`
	OpenTimeoutSeconds int    `json:"openTimeoutSeconds,omitempty"`
	// AllowRoles admits guild members holding one of these role ids.
	AllowRoles []string `json:"allowRoles,omitempty"`
	AccountPolicy
}
