package store

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
)

// TokenDigest is the SHA-256 of a bearer token: the only form in which
// clawgate stores a token. It marshals to lowercase hex for the state file,
// but prints as "[redacted]" under every fmt verb and in log/slog, so a
// record logged by mistake does not leak it.
type TokenDigest [sha256.Size]byte

// DigestToken returns the digest of token.
func DigestToken(token string) TokenDigest { return TokenDigest(sha256.Sum256([]byte(token))) }

// Equal compares d and o in constant time.
func (d TokenDigest) Equal(o TokenDigest) bool { return subtle.ConstantTimeCompare(d[:], o[:]) == 1 }

// IsZero reports whether d is unset.
func (d TokenDigest) IsZero() bool { return d == TokenDigest{} }

// String returns "[redacted]".
func (d TokenDigest) String() string { return "[redacted]" }

// GoString returns "[redacted]".
func (d TokenDigest) GoString() string { return "[redacted]" }

// Format prints "[redacted]" for every verb.
func (d TokenDigest) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[redacted]")) }

// LogValue keeps the digest out of structured logs.
func (d TokenDigest) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// MarshalText encodes d as 64 lowercase hex characters (state file form).
func (d TokenDigest) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(d)))
	hex.Encode(out, d[:])
	return out, nil
}

// UnmarshalText decodes the hex form written by MarshalText.
func (d *TokenDigest) UnmarshalText(b []byte) error {
	if len(b) != hex.EncodedLen(len(d)) {
		return fmt.Errorf("token digest: want %d hex characters, got %d", hex.EncodedLen(len(d)), len(b))
	}
	var tmp TokenDigest
	if _, err := hex.Decode(tmp[:], b); err != nil {
		return fmt.Errorf("token digest: %w", err)
	}
	*d = tmp
	return nil
}
