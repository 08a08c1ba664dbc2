package authn

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
)

// spkiPrefix is the DER header of an Ed25519 SubjectPublicKeyInfo; the raw
// 32-byte key follows it.
var spkiPrefix = []byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}

// Strict decoders, tried in order. Strict rejects non-zero padding bits, so
// each key and signature has exactly one text form per alphabet.
var (
	decRawURL = base64.RawURLEncoding.Strict()
	decURL    = base64.URLEncoding.Strict()
	decRawStd = base64.RawStdEncoding.Strict()
	decStd    = base64.StdEncoding.Strict()
)

// DecodePublicKey parses a device public key as OpenClaw sends it: the raw
// 32-byte Ed25519 key in base64url without padding. It also accepts padded
// base64url, standard base64 (with or without padding) and, when s contains
// "BEGIN", a PEM "PUBLIC KEY" block holding an Ed25519 SPKI. Anything that
// is not exactly 32 key bytes is an error, never a panic.
func DecodePublicKey(s string) (ed25519.PublicKey, error) {
	var raw []byte
	var err error
	if strings.Contains(s, "BEGIN") {
		raw, err = decodePEMKey(s)
	} else {
		var ok bool
		if raw, ok = decodeBase64(s); !ok {
			err = ErrPublicKeyEncoding
		}
	}
	if err != nil {
		return nil, fmt.Errorf("authn.DecodePublicKey: %w", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("authn.DecodePublicKey: %w (got %d)", ErrPublicKeySize, len(raw))
	}
	return ed25519.PublicKey(raw), nil
}

// decodePEMKey extracts the raw key from a single PEM SPKI block.
func decodePEMKey(s string) ([]byte, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(s)))
	if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, ErrPublicKeyEncoding
	}
	if !bytes.HasPrefix(block.Bytes, spkiPrefix) {
		return nil, ErrPublicKeyEncoding
	}
	return block.Bytes[len(spkiPrefix):], nil
}

// decodeBase64 decodes base64url then standard base64, each unpadded then
// padded, and reports whether one of them took s. Characters outside both
// alphabets (including the CR and LF the stdlib decoder would skip) are
// refused up front.
func decodeBase64(s string) ([]byte, bool) {
	if s == "" || !isBase64Text(s) {
		return nil, false
	}
	for _, enc := range []*base64.Encoding{decRawURL, decURL, decRawStd, decStd} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

// isBase64Text reports whether s uses only base64 / base64url characters.
func isBase64Text(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '+' || c == '/' || c == '='
		if !ok {
			return false
		}
	}
	return true
}

// EncodePublicKey returns the wire form of pub: base64url without padding.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.RawURLEncoding.EncodeToString(pub)
}

// DeviceID returns the OpenClaw device id of pub: the lowercase hex SHA-256
// of the raw key bytes (64 characters).
func DeviceID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// hasDeviceID reports whether id is DeviceID(pub), without allocating.
func hasDeviceID(pub ed25519.PublicKey, id string) bool {
	sum := sha256.Sum256(pub)
	var buf [2 * sha256.Size]byte
	hex.Encode(buf[:], sum[:])
	return string(buf[:]) == id
}

// IsDeviceID reports whether s has the form of a device id: exactly 64
// lowercase hex characters. Upper-case hex is not a device id.
func IsDeviceID(s string) bool {
	if len(s) != 2*sha256.Size {
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

// DecodeSignature parses a device signature: base64url first, then standard
// base64 (each with or without padding). It must be exactly 64 bytes.
func DecodeSignature(s string) ([]byte, error) {
	sig, ok := decodeBase64(s)
	if !ok {
		return nil, fmt.Errorf("authn.DecodeSignature: %w", ErrSignatureEncoding)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("authn.DecodeSignature: %w (got %d)", ErrSignatureSize, len(sig))
	}
	return sig, nil
}

// EncodeSignature returns the wire form of sig: base64url without padding.
func EncodeSignature(sig []byte) string {
	return base64.RawURLEncoding.EncodeToString(sig)
}

// SignPayload signs payload with priv and returns the wire signature. It is
// the client half of VerifyDevice.
func SignPayload(priv ed25519.PrivateKey, payload string) string {
	return EncodeSignature(ed25519.Sign(priv, []byte(payload)))
}
