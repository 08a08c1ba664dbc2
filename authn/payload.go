package authn

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// PayloadVersion says which signature payload a device signed.
type PayloadVersion int

// The payload versions VerifyDevice accepts. v1 (no nonce) is never accepted.
const (
	PayloadV2 PayloadVersion = 2
	PayloadV3 PayloadVersion = 3
)

// String returns "v2" or "v3".
func (v PayloadVersion) String() string { return "v" + strconv.Itoa(int(v)) }

// Limits on signed fields (attack A10). Real clients send UUIDs, short enum
// values and 43-character tokens, so these leave ample room.
const (
	MaxPayloadFieldLen = 256  // bytes, every field except the token
	MaxTokenLen        = 1024 // bytes, the token field
	MaxScopes          = 64   // entries in the scopes array
)

// PayloadFields are the values joined into a device-signature payload.
// Role is the resolved role (see ResolveRole); Token is PickToken's choice;
// Scopes are exactly as sent (not sorted or deduplicated).
type PayloadFields struct {
	DeviceID     string
	ClientID     string
	ClientMode   string
	Role         string
	Scopes       []string
	SignedAtMs   int64
	Token        string
	Nonce        string
	Platform     string
	DeviceFamily string
}

// BuildPayloadV3 returns
// v3|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce|platform|deviceFamily.
// It does not validate; call p.Validate (or ValidateClaims) first when the
// fields come from the network.
func BuildPayloadV3(p PayloadFields) string {
	return string(appendPayloadV3(make([]byte, 0, payloadLen(p)), p))
}

// BuildPayloadV2 returns v2|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce.
func BuildPayloadV2(p PayloadFields) string {
	return string(appendPayloadV2(make([]byte, 0, payloadLen(p)), p))
}

// appendPayloadV3 appends BuildPayloadV3(p) to b.
func appendPayloadV3(b []byte, p PayloadFields) []byte {
	b = appendPayload(b, "v3", p)
	b = append(b, '|')
	b = appendNormalized(b, p.Platform)
	b = append(b, '|')
	return appendNormalized(b, p.DeviceFamily)
}

// appendPayloadV2 appends BuildPayloadV2(p) to b.
func appendPayloadV2(b []byte, p PayloadFields) []byte { return appendPayload(b, "v2", p) }

// payloadLen is about the length of p's payload (exact without scopes'
// separators and metadata changes), for sizing a buffer.
func payloadLen(p PayloadFields) int {
	n := 64 + len(p.DeviceID) + len(p.ClientID) + len(p.ClientMode) + len(p.Role) + len(p.Token) +
		len(p.Nonce) + len(p.Platform) + len(p.DeviceFamily)
	for _, s := range p.Scopes {
		n += len(s) + 1
	}
	return n
}

// appendPayload appends the version and the common fields, joined with '|'.
func appendPayload(b []byte, version string, p PayloadFields) []byte {
	b = append(b, version...)
	for _, f := range [...]string{p.DeviceID, p.ClientID, p.ClientMode, p.Role} {
		b = append(b, '|')
		b = append(b, f...)
	}
	b = append(b, '|')
	for i, s := range p.Scopes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, s...)
	}
	b = append(b, '|')
	b = strconv.AppendInt(b, p.SignedAtMs, 10)
	b = append(b, '|')
	b = append(b, p.Token...)
	b = append(b, '|')
	return append(b, p.Nonce...)
}

// appendNormalized appends NormalizeMetadata(s) to b.
func appendNormalized(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		return append(b, NormalizeMetadata(s)...) // strings.Map's U+FFFD for invalid bytes
	}
	for _, c := range []byte(strings.TrimSpace(s)) {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// NormalizeMetadata trims s and lowercases ASCII letters only (A-Z → a-z),
// as the v3 payload does for platform and deviceFamily. Other characters,
// including non-ASCII letters, are left unchanged.
func NormalizeMetadata(s string) string {
	s = strings.TrimSpace(s)
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// PickToken returns the token a device signs: the first non-empty of
// auth.token, auth.deviceToken and auth.bootstrapToken, else "".
func PickToken(token, deviceToken, bootstrapToken string) string {
	for _, t := range []string{token, deviceToken, bootstrapToken} {
		if t != "" {
			return t
		}
	}
	return ""
}

// ValidatePayloadField checks one signed string field against the rules that
// keep the '|'-joined payload unambiguous (attack A10): valid UTF-8, no '|',
// no control characters (C0 including NUL and newline, DEL, C1, U+2028,
// U+2029) and at most MaxPayloadFieldLen bytes. Empty is allowed. field names
// the field in the error (a JSON pointer such as "/client/id"); the value
// never appears in the error.
func ValidatePayloadField(field, value string) error {
	return validateField(field, value, MaxPayloadFieldLen)
}

// validateField is ValidatePayloadField with a caller-chosen length limit.
// ASCII bytes take a fast path; other runes are decoded one by one.
func validateField(field, value string, maxLen int) error {
	if len(value) > maxLen {
		return &PayloadFieldError{Field: field, Problem: "longer than " + strconv.Itoa(maxLen) + " bytes"}
	}
	for i := 0; i < len(value); {
		r, size := rune(value[i]), 1
		if r >= utf8.RuneSelf {
			if r, size = utf8.DecodeRuneInString(value[i:]); r == utf8.RuneError && size == 1 {
				return &PayloadFieldError{Field: field, Problem: "not valid UTF-8"}
			}
		}
		if problem := forbiddenRune(r); problem != "" {
			return &PayloadFieldError{Field: field, Problem: problem}
		}
		i += size
	}
	return nil
}

// forbiddenRune names why r may not appear in a signed field, or returns "".
func forbiddenRune(r rune) string {
	switch {
	case r == '|':
		return "contains the payload delimiter '|'"
	case unicode.IsControl(r), r == '\u2028', r == '\u2029':
		return "contains a control character"
	}
	return ""
}

// validateScopes checks the scopes array: at most MaxScopes entries, each a
// non-empty valid field without ','. An empty or comma-bearing entry would
// make two different arrays join to the same payload text.
func validateScopes(scopes []string) error {
	if len(scopes) > MaxScopes {
		return &PayloadFieldError{Field: "/scopes", Problem: "more than " + strconv.Itoa(MaxScopes) + " entries"}
	}
	for i, s := range scopes {
		problem := ""
		switch {
		case s == "":
			problem = "empty"
		case strings.Contains(s, ","):
			problem = "contains the scope separator ','"
		default:
			// The field's name is built only for an error.
			if err := validateField("", s, MaxPayloadFieldLen); err != nil {
				problem = err.(*PayloadFieldError).Problem
			}
		}
		if problem != "" {
			return &PayloadFieldError{Field: "/scopes/" + strconv.Itoa(i), Problem: problem}
		}
	}
	return nil
}

// Validate checks every field of p (see ValidatePayloadField; the token may
// be up to MaxTokenLen bytes; scopes follow the rules of ValidateClaims).
// It returns the first *PayloadFieldError found.
func (p PayloadFields) Validate() error {
	fields := []struct{ name, value string }{
		{"/device/id", p.DeviceID},
		{"/client/id", p.ClientID},
		{"/client/mode", p.ClientMode},
		{"/role", p.Role},
		{"/device/nonce", p.Nonce},
		{"/client/platform", p.Platform},
		{"/client/deviceFamily", p.DeviceFamily},
	}
	for _, f := range fields {
		if err := ValidatePayloadField(f.name, f.value); err != nil {
			return err
		}
	}
	if err := validateField("/auth/token", p.Token, MaxTokenLen); err != nil {
		return err
	}
	return validateScopes(p.Scopes)
}
