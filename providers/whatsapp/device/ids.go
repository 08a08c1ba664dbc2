package device

import "go.mau.fi/whatsmeow/types"

// phoneID is the gateway id of a phone-number user JID.
func phoneID(jid types.JID) string { return "+" + jid.User }

// lidID is the gateway id of a LID user JID.
func lidID(jid types.JID) string { return jid.User + "@" + types.HiddenUserServer }
