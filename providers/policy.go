package providers

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Wildcard in AllowFrom admits any sender that has an id; in AllowTo it
// admits any destination. It never grants owner rights.
const Wildcard = "*"

// DefaultMaxTextBytes caps inbound text when Policy.MaxTextBytes is 0.
const DefaultMaxTextBytes = 64 << 10

// maxIDLen bounds every id a provider hands in.
const maxIDLen = 128

// Policy is an account's access rules. All IDs are matched by exact
// equality after validation against the provider's IDSyntax; usernames and
// display names are never matched.
type Policy struct {
	// AllowFrom lists the sender ids whose messages reach the gateway.
	// Empty denies everyone; "*" admits any identified sender.
	AllowFrom []string
	// AllowRoles admits members holding one of these role ids (Discord
	// guilds). The same gate applies to messages, edits and reactions.
	AllowRoles []string
	// Owners are sender ids with owner rights (Inbound.FromOwner). A
	// wildcard AllowFrom never makes anyone an owner.
	Owners []string
	// AllowTo lists the destinations Send may reach; "*" allows any.
	// Conversations that delivered an admitted message are always valid
	// reply targets. Empty allows only those.
	AllowTo []string
	// DMPairing offers a pairing code to unknown senders in direct chats
	// instead of ignoring them silently.
	DMPairing bool
	// MaxTextBytes drops inbound text longer than this; 0 means
	// DefaultMaxTextBytes.
	MaxTextBytes int
}

// ValidID reports whether id is a well-formed id under syntax.
func ValidID(syntax IDSyntax, id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	switch syntax {
	case IDNumeric:
		if _, err := strconv.ParseInt(id, 10, 64); err != nil {
			return false
		}
		digits := strings.TrimPrefix(id, "-")
		return digits != "" && digits[0] != '0' && digits[0] != '+' && digits[0] != '-'
	case IDSnowflake:
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			return false
		}
		return id[0] != '0' && id[0] != '+'
	case IDSlack:
		if id[0] < 'A' || id[0] > 'Z' || len(id) < 2 {
			return false
		}
		for i := 1; i < len(id); i++ {
			c := id[i]
			if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
				return false
			}
		}
		return true
	case IDOpaque:
		if !utf8.ValidString(id) {
			return false
		}
		for _, r := range id {
			if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				return false
			}
		}
		return true
	}
	return false
}

// CheckPolicy validates p for a provider whose ids follow syntax; the
// error names the offending entry and says why.
func CheckPolicy(p Policy, syntax IDSyntax) error {
	_, err := compilePolicy(p, syntax)
	return err
}

type policy struct {
	allowAny   bool
	allowFrom  map[string]bool
	allowRoles map[string]bool
	owners     map[string]bool
	toAny      bool
	allowTo    map[string]bool
	pairing    bool
	maxText    int
	syntax     IDSyntax
}

func compilePolicy(p Policy, syntax IDSyntax) (*policy, error) {
	c := &policy{
		allowFrom: map[string]bool{}, allowRoles: map[string]bool{}, owners: map[string]bool{},
		allowTo: map[string]bool{}, pairing: p.DMPairing, maxText: p.MaxTextBytes, syntax: syntax,
	}
	if c.maxText <= 0 {
		c.maxText = DefaultMaxTextBytes
	}
	for _, id := range p.AllowFrom {
		if id == Wildcard {
			c.allowAny = true
			continue
		}
		if err := checkEntry("allowFrom", syntax, id); err != nil {
			return nil, err
		}
		c.allowFrom[id] = true
	}
	for _, id := range p.AllowRoles {
		if err := checkEntry("allowRoles", syntax, id); err != nil {
			return nil, err
		}
		c.allowRoles[id] = true
	}
	for _, id := range p.Owners {
		if id == Wildcard {
			return nil, fmt.Errorf("owners: %q is not allowed; list owner ids explicitly", Wildcard)
		}
		if err := checkEntry("owners", syntax, id); err != nil {
			return nil, err
		}
		c.owners[id] = true
	}
	for _, id := range p.AllowTo {
		if id == Wildcard {
			c.toAny = true
			continue
		}
		if err := checkEntry("allowTo", syntax, id); err != nil {
			return nil, err
		}
		c.allowTo[id] = true
	}
	return c, nil
}

func checkEntry(field string, syntax IDSyntax, id string) error {
	if ValidID(syntax, id) {
		return nil
	}
	switch {
	case strings.HasPrefix(id, "@"):
		return fmt.Errorf("%s entry %q: list the immutable numeric id, not a username (usernames can be given up and taken over)", field, id)
	case strings.TrimSpace(id) != id:
		return fmt.Errorf("%s entry %q: surrounding whitespace", field, id)
	}
	return fmt.Errorf("%s entry %q is not a valid %s id", field, id, syntaxName(syntax))
}

func syntaxName(s IDSyntax) string {
	switch s {
	case IDNumeric:
		return "numeric"
	case IDSnowflake:
		return "snowflake (numeric)"
	case IDSlack:
		return "Slack (e.g. U0123ABCD)"
	}
	return "opaque"
}

// verdict is what the policy decides about one inbound message.
type verdict int

const (
	admit verdict = iota
	drop
	offerPairing
)

// checkShape applies the checks that do not depend on who sent the message:
// ids present and well formed, text valid UTF-8 and within the cap.
func (p *policy) checkShape(m *Inbound) string {
	switch {
	case m.SenderID == "" || !ValidID(p.syntax, m.SenderID):
		return "missing or malformed sender id"
	case m.ChatID == "" || !ValidID(p.syntax, m.ChatID):
		return "missing or malformed chat id"
	case m.ID == "" || len(m.ID) > 2*maxIDLen || !utf8.ValidString(m.ID):
		return "missing or malformed message id"
	case len(m.Text) > p.maxText:
		return "text too large"
	case !utf8.ValidString(m.Text):
		return "text is not valid UTF-8"
	case len(m.SenderName) > 256 || !utf8.ValidString(m.SenderName):
		return "malformed sender name"
	case len(m.ThreadID) > maxIDLen || len(m.MessageID) > 2*maxIDLen:
		return "malformed thread or message id"
	}
	return ""
}

// decide applies the sender gate. approved reports senders admitted by an
// approved pairing request.
func (p *policy) decide(m *Inbound, approved func(string) bool) verdict {
	if p.allowAny || p.allowFrom[m.SenderID] || approved(m.SenderID) {
		return admit
	}
	for _, r := range m.SenderRoles {
		if p.allowRoles[r] {
			return admit
		}
	}
	if p.pairing && m.ChatType == ChatDirect && m.Kind == KindMessage {
		return offerPairing
	}
	return drop
}

func (p *policy) isOwner(id string) bool { return id != "" && p.owners[id] }

// ParseCommand returns the slash command at the start of text ("/help",
// "/start@mybot" → "help", "start"), or "" when text is not a command.
// Only ASCII letters, digits and '_' make a command name: text such as
// "/con\u200bfig" (a zero-width space inside) or one with bidi controls is
// plain text, never a lookalike of "/config".
func ParseCommand(text string) string {
	rest, ok := strings.CutPrefix(text, "/")
	if !ok {
		return ""
	}
	end := strings.IndexFunc(rest, unicode.IsSpace)
	word := rest
	if end >= 0 {
		word = rest[:end]
	}
	name, bot, hasBot := strings.Cut(word, "@")
	if !isCommandWord(name, 32) || (hasBot && !isCommandWord(bot, 64)) {
		return ""
	}
	return strings.ToLower(name)
}

func isCommandWord(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
