package authn

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// NewChallengeNonce returns a fresh random UUID v4 (122 random bits from
// crypto/rand) for a connection's connect.challenge, the same shape as the
// OpenClaw gateway's randomUUID(). Every connection gets its own; the
// device proof must echo it (VerifyDevice step 3).
func NewChallengeNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("authn.NewChallengeNonce: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	hex.Encode(s[9:13], b[4:6])
	hex.Encode(s[14:18], b[6:8])
	hex.Encode(s[19:23], b[8:10])
	hex.Encode(s[24:], b[10:])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return string(s[:]), nil
}
