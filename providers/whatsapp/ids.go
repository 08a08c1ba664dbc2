package whatsapp

import (
	"errors"
	"fmt"
	"strings"
)

// Sender and chat ids as the gateway sees them:
//
//	"+15551234567"             a user by phone number (E.164)
//	"123456789012345@lid"      a user known only by LID (no phone mapping)
//	"120363012345678901@g.us"  a group
//
// Policy matches these strings exactly; a LID never equals a phone number,
// so an unresolved LID matches no phone-number allowlist entry.

// The JID servers of the ids above (whatsmeow's types.DefaultUserServer,
// HiddenUserServer and GroupServer).
const (
	UserServer  = "s.whatsapp.net"
	LIDServer   = "lid"
	GroupServer = "g.us"
)

const lidSuffix = "@" + LIDServer

// ErrBadID is returned for a destination that is not a WhatsApp id.
var ErrBadID = errors.New("whatsapp: not a WhatsApp id (want +<phone>, <lid>@lid or <group>@g.us)")

// ValidAllowEntry reports whether s can name a WhatsApp sender in an
// allowlist: "+<7-15 digits>" or "<digits>@lid". Config loading uses it to
// refuse entries that could never match (a number without "+", a name).
func ValidAllowEntry(s string) error {
	switch {
	case strings.HasPrefix(s, "+"):
		if !digits(s[1:], 7, 15) {
			return fmt.Errorf("%q: a phone number is + and 7 to 15 digits (E.164, no spaces)", s)
		}
		return nil
	case strings.HasSuffix(s, lidSuffix):
		if !digits(strings.TrimSuffix(s, lidSuffix), 1, 20) {
			return fmt.Errorf("%q: a LID is digits followed by @lid", s)
		}
		return nil
	case digits(s, 7, 15):
		return fmt.Errorf("%q: write phone numbers in E.164 form with a leading + (+%s)", s, s)
	}
	return fmt.Errorf("%q is not a WhatsApp sender id (want +<phone> or <digits>@lid)", s)
}

// ValidDestination reports whether s can be a Send destination; allowTo
// entries are checked with it.
func ValidDestination(s string) error {
	if _, _, err := ParseDestination(s); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	return nil
}

func digits(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseDestination splits a gateway id into the user and server of the
// JID to send to. Device suffixes, other servers (newsletters, broadcast
// lists, bots) and anything unparsable are refused with ErrBadID.
func ParseDestination(s string) (user, server string, err error) {
	if strings.HasPrefix(s, "+") {
		if !digits(s[1:], 7, 15) {
			return "", "", ErrBadID
		}
		return s[1:], UserServer, nil
	}
	user, server, ok := strings.Cut(s, "@")
	if !ok || strings.ContainsAny(user, ":.") {
		return "", "", ErrBadID
	}
	switch server {
	case UserServer:
		if !digits(user, 7, 15) {
			return "", "", ErrBadID
		}
	case LIDServer:
		if !digits(user, 1, 20) {
			return "", "", ErrBadID
		}
	case GroupServer:
		// Group ids are digits, older ones "<creator>-<timestamp>".
		if user == "" || len(user) > 64 || strings.Trim(user, "0123456789-") != "" {
			return "", "", ErrBadID
		}
	default:
		return "", "", ErrBadID
	}
	return user, server, nil
}
