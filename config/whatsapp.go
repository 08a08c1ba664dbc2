package config

// WhatsAppAccount is one WhatsApp account, linked as a device ("WhatsApp
// Web") by scanning a QR code: `clawgate channels login whatsapp`, or
// web.login.start from an admin client. It has no secret in the config:
// the session lives in SessionDir (mode 0700, database 0600), which one
// process at a time may open.
type WhatsAppAccount struct {
	ID    string `json:"id,omitempty"` // default "default"
	Label string `json:"label,omitempty"`
	// SessionDir holds the session; default <state dir>/whatsapp/<id>.
	// Absolute.
	SessionDir string `json:"sessionDir,omitempty"`
	// QueueSize bounds the queue of inbound messages waiting for the
	// gateway (default 256); when full, WhatsApp redelivers later.
	QueueSize int `json:"queueSize,omitempty"`
	// AllowFrom, Owners: phone numbers in E.164 form ("+15551234567"), or
	// "<digits>@lid" for a user known only by LID. AllowTo may also name
	// groups ("<id>@g.us").
	AccountPolicy
}
