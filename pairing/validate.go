package pairing

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds on what a client can make pairing store: a spammer can fill at
// most MaxPending small records.
const (
	maxScopes       = 32
	maxScopeLen     = 128
	maxRequestIDLen = 64
	maxTokenLen     = 256
	maxDisplayLen   = 256
	maxMetaLen      = 128
	maxIPLen        = 64
	tokenBytes      = 32 // 256-bit device tokens
)

// isDeviceID reports whether s is 64 lowercase hex characters.
func isDeviceID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func checkDeviceID(id string) error {
	if !isDeviceID(id) {
		return fmt.Errorf("%w: deviceId must be 64 lowercase hex characters", ErrInvalid)
	}
	return nil
}

func checkRequestID(id string) error {
	if id == "" || len(id) > maxRequestIDLen {
		return fmt.Errorf("%w: requestId", ErrInvalid)
	}
	return nil
}

// checkRole resolves and validates a role.
func checkRole(role string) (string, error) {
	role = resolveRole(role)
	if !validRole(role) {
		return "", fmt.Errorf("%w: role %q", ErrInvalid, truncate(role, 32))
	}
	return role, nil
}

// checkScopes bounds a scope list and returns its normalized form for role.
func checkScopes(role string, scopes []string) ([]string, error) {
	if len(scopes) > maxScopes {
		return nil, fmt.Errorf("%w: more than %d scopes", ErrInvalid, maxScopes)
	}
	for _, s := range scopes {
		if len(s) > maxScopeLen || !printableASCII(s) {
			return nil, fmt.Errorf("%w: scope", ErrInvalid)
		}
	}
	return roleScopes(role, scopes), nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// canonicalPublicKey decodes a raw 32-byte Ed25519 key from base64url or
// standard base64 (padded or not) and returns its canonical form, base64url
// without padding.
func canonicalPublicKey(s string) (string, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			if len(b) != 32 {
				break
			}
			return base64.RawURLEncoding.EncodeToString(b), nil
		}
	}
	return "", fmt.Errorf("%w: publicKey must be a raw 32-byte key in base64url", ErrInvalid)
}

// truncate bounds s to n bytes without splitting a UTF-8 sequence, and
// replaces invalid UTF-8.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// pinNorm is the comparison form of platform and deviceFamily: trimmed, with
// ASCII-only lowercasing (as in the v3 signature payload).
func pinNorm(s string) string {
	b := []byte(strings.TrimSpace(s))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// newToken returns a fresh 256-bit token, base64url without padding (43
// characters).
func newToken() string {
	var b [tokenBytes]byte
	_, _ = rand.Read(b[:]) // never fails (Go ≥ 1.24 aborts instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newRequestID returns a random (version 4) UUID.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out bytes.Buffer
	for i, part := range [][]byte{b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]} {
		if i > 0 {
			out.WriteByte('-')
		}
		out.WriteString(hex.EncodeToString(part))
	}
	return out.String()
}

// connectIn is a ConnectInfo after validation and normalization.
type connectIn struct {
	ConnectInfo
	scopes []string // normalized for Role
}

func normalizeConnect(c ConnectInfo) (connectIn, error) {
	if err := checkDeviceID(c.DeviceID); err != nil {
		return connectIn{}, err
	}
	pk, err := canonicalPublicKey(c.PublicKey)
	if err != nil {
		return connectIn{}, err
	}
	role, err := checkRole(c.Role)
	if err != nil {
		return connectIn{}, err
	}
	scopes, err := checkScopes(role, c.Scopes)
	if err != nil {
		return connectIn{}, err
	}
	in := connectIn{ConnectInfo: ConnectInfo{
		DeviceID:      c.DeviceID,
		PublicKey:     pk,
		Role:          role,
		ClientID:      truncate(c.ClientID, maxMetaLen),
		ClientMode:    truncate(c.ClientMode, maxMetaLen),
		Platform:      truncate(c.Platform, maxMetaLen),
		DeviceFamily:  truncate(c.DeviceFamily, maxMetaLen),
		DisplayName:   truncate(c.DisplayName, maxDisplayLen),
		RemoteIP:      truncate(c.RemoteIP, maxIPLen),
		ClientKey:     truncate(c.ClientKey, maxDisplayLen),
		SilentAllowed: c.SilentAllowed,
		IssueToken:    c.IssueToken,
	}, scopes: scopes}
	if in.ClientKey == "" {
		in.ClientKey = in.RemoteIP
	}
	return in, nil
}
