package authn

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
)

// redacted is what every printable form of a secret shows.
const redacted = "[redacted]"

// MinTokenLen is the shortest shared token clawgate accepts without a
// warning (attack C7). GenerateToken returns 43 characters.
const MinTokenLen = 24

// TokenHash is the SHA-256 digest of a bearer token: what is kept in memory
// and at rest instead of the token itself.
type TokenHash [sha256.Size]byte

// HashToken returns the SHA-256 digest of token.
func HashToken(token string) TokenHash { return sha256.Sum256([]byte(token)) }

// Matches reports whether candidate hashes to h. It compares the two
// fixed-size digests with crypto/subtle, so neither the candidate's length
// nor a shared prefix changes the time taken (attack A19).
func (h TokenHash) Matches(candidate string) bool {
	c := HashToken(candidate)
	return subtle.ConstantTimeCompare(h[:], c[:]) == 1
}

// Format prints "[redacted]" for every verb: a digest still allows offline
// guessing of a weak token, so it is kept out of logs too.
func (h TokenHash) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue implements slog.LogValuer.
func (TokenHash) LogValue() slog.Value { return slog.StringValue(redacted) }

// SharedSecret is the configured gateway token, held only as its digest. The
// zero value is "no secret configured" and matches nothing.
type SharedSecret struct {
	hash TokenHash
	set  bool
}

// NewSharedSecret digests token. An empty token is ErrEmptyToken; whether a
// short one is acceptable is the caller's call (see CheckTokenStrength).
func NewSharedSecret(token string) (SharedSecret, error) {
	if token == "" {
		return SharedSecret{}, fmt.Errorf("authn.NewSharedSecret: %w", ErrEmptyToken)
	}
	return SharedSecret{hash: HashToken(token), set: true}, nil
}

// IsSet reports whether a secret is configured.
func (s SharedSecret) IsSet() bool { return s.set }

// Equal reports whether candidate is the configured token, comparing SHA-256
// digests in constant time. It is false when no secret is configured and for
// an empty candidate (a missing credential, which the caller must not count
// as a failure).
func (s SharedSecret) Equal(candidate string) bool {
	if !s.set || candidate == "" {
		return false
	}
	return s.hash.Matches(candidate)
}

// String returns "[redacted]".
func (SharedSecret) String() string { return redacted }

// GoString returns "[redacted]", for %#v.
func (SharedSecret) GoString() string { return redacted }

// Format prints "[redacted]" for every fmt verb, including %d and %x, which
// would otherwise print the digest's bytes.
func (SharedSecret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue implements slog.LogValuer.
func (SharedSecret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "[redacted]", so encoding/json and friends cannot
// serialize the digest either.
func (SharedSecret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// GenerateToken returns a fresh 256-bit token from crypto/rand, encoded as
// base64url without padding (43 characters).
func GenerateToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("authn.GenerateToken: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// CheckTokenStrength vets a configured shared token: ErrEmptyToken if empty,
// a *PayloadFieldError if it could not be signed into a device payload
// ('|', control characters, over MaxTokenLen bytes), ErrWeakToken if shorter
// than MinTokenLen. The config loader decides whether ErrWeakToken is fatal.
func CheckTokenStrength(token string) error {
	if token == "" {
		return fmt.Errorf("authn.CheckTokenStrength: %w", ErrEmptyToken)
	}
	if err := validateField("/auth/token", token, MaxTokenLen); err != nil {
		return fmt.Errorf("authn.CheckTokenStrength: %w", err)
	}
	if len(token) < MinTokenLen {
		return fmt.Errorf("authn.CheckTokenStrength: %w", ErrWeakToken)
	}
	return nil
}
