package whatsapp

import (
	"fmt"
	"time"

	"github.com/clawgate/clawgate/providers"
)

// Name is the channel id.
const Name = "whatsapp"

// MaxTextLen is the longest outbound text WhatsApp accepts.
const MaxTextLen = 65536

// Capabilities are the WhatsApp provider's, on both sides of the helper.
func Capabilities() providers.Capabilities {
	return providers.Capabilities{Label: "WhatsApp", IDs: providers.IDOpaque,
		ChatTypes:  []providers.ChatType{providers.ChatDirect, providers.ChatGroup},
		MaxTextLen: MaxTextLen, Edits: true, Reactions: true, Mode: "socket"}
}

// NeedsLinkError is the status error of an account with no linked device:
// it is what health and channels.status show until someone scans a QR.
type NeedsLinkError struct {
	Reason string // "not linked yet", "logged out from the phone", ...
}

func (e *NeedsLinkError) Error() string {
	return "whatsapp: needs re-link (" + e.Reason + "): run `clawgate channels login whatsapp` or web.login.start"
}

// BannedError is the status error while WhatsApp bans the account.
type BannedError struct {
	Code   string
	Expire time.Time
}

func (e *BannedError) Error() string {
	return fmt.Sprintf("whatsapp: temporarily banned (%s) until %s", e.Code, e.Expire.UTC().Format(time.RFC3339))
}
