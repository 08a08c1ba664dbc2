package tlspin

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Kind says what a Fingerprint is the digest of.
type Kind uint8

// Fingerprint kinds. The zero Kind is invalid.
const (
	// KindCert is SHA-256 of the leaf certificate's DER bytes: what
	// OpenClaw pins as tlsFingerprint (Node's fingerprint256). It changes
	// whenever the certificate is re-issued.
	KindCert Kind = iota + 1
	// KindSPKI is SHA-256 of the leaf's SubjectPublicKeyInfo. It survives
	// re-issuing the certificate with the same key.
	KindSPKI
)

// Text prefixes of the two kinds.
const (
	certPrefix = "sha256:"
	spkiPrefix = "spki-sha256:"
)

// Fingerprint is a SHA-256 digest of a certificate or of its public key.
// Its canonical text form is "sha256:<64 lowercase hex>" (KindCert) or
// "spki-sha256:<64 lowercase hex>" (KindSPKI).
type Fingerprint struct {
	Kind Kind
	Sum  [sha256.Size]byte
}

// CertFingerprint is the KindCert fingerprint of cert.
func CertFingerprint(cert *x509.Certificate) Fingerprint {
	return Fingerprint{Kind: KindCert, Sum: sha256.Sum256(cert.Raw)}
}

// SPKIFingerprint is the KindSPKI fingerprint of cert.
func SPKIFingerprint(cert *x509.Certificate) Fingerprint {
	return Fingerprint{Kind: KindSPKI, Sum: sha256.Sum256(cert.RawSubjectPublicKeyInfo)}
}

// IsZero reports whether f is the zero Fingerprint.
func (f Fingerprint) IsZero() bool { return f.Kind == 0 }

// Hex is the digest alone in lowercase hex, the form OpenClaw stores.
func (f Fingerprint) Hex() string { return hex.EncodeToString(f.Sum[:]) }

// String returns the canonical text form.
func (f Fingerprint) String() string {
	switch f.Kind {
	case KindCert:
		return certPrefix + f.Hex()
	case KindSPKI:
		return spkiPrefix + f.Hex()
	}
	return "invalid-fingerprint"
}

// MarshalText implements encoding.TextMarshaler.
func (f Fingerprint) MarshalText() ([]byte, error) {
	if f.IsZero() {
		return nil, errors.New("tlspin: zero fingerprint")
	}
	return []byte(f.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParsePin.
func (f *Fingerprint) UnmarshalText(b []byte) error {
	p, err := ParsePin(string(b))
	if err != nil {
		return err
	}
	*f = p
	return nil
}

// Matches reports whether f pins leaf: its certificate (KindCert) or its
// public key (KindSPKI). The comparison is constant-time.
func (f Fingerprint) Matches(leaf *x509.Certificate) bool {
	var got Fingerprint
	switch f.Kind {
	case KindCert:
		got = CertFingerprint(leaf)
	case KindSPKI:
		got = SPKIFingerprint(leaf)
	default:
		return false
	}
	return subtle.ConstantTimeCompare(got.Sum[:], f.Sum[:]) == 1
}

// ErrBadPin is wrapped by ParsePin's errors.
var ErrBadPin = errors.New("not a SHA-256 fingerprint")

// ParsePin parses one pin. It accepts what OpenClaw accepts for
// tlsFingerprint (an optional "sha256:" prefix, 64 hex digits in any case,
// or 32 colon-separated pairs as Node and openssl print them) and, more
// leniently, "sha-256:" and any ':', ' ', '-' or '_' separators. A
// "spki-sha256:" (or "spki:") prefix makes it a KindSPKI pin; without one it
// is a KindCert pin.
func ParsePin(s string) (Fingerprint, error) {
	v := strings.TrimSpace(s)
	kind := KindCert
	lower := strings.ToLower(v)
	for _, p := range []struct {
		prefix string
		kind   Kind
	}{
		{spkiPrefix, KindSPKI}, {"spki-sha-256:", KindSPKI}, {"spki:", KindSPKI},
		{certPrefix, KindCert}, {"sha-256:", KindCert},
	} {
		if strings.HasPrefix(lower, p.prefix) {
			v, kind = v[len(p.prefix):], p.kind
			break
		}
	}
	digits := make([]byte, 0, 2*sha256.Size)
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			digits = append(digits, c)
		case c >= 'A' && c <= 'F':
			digits = append(digits, c+('a'-'A'))
		case c == ':' || c == ' ' || c == '-' || c == '_' || c == '\t':
		default:
			return Fingerprint{}, fmt.Errorf("tlspin: pin %q: %w (unexpected %q)", s, ErrBadPin, c)
		}
	}
	if len(digits) != 2*sha256.Size {
		return Fingerprint{}, fmt.Errorf("tlspin: pin %q: %w (want 64 hex digits, got %d)", s, ErrBadPin, len(digits))
	}
	f := Fingerprint{Kind: kind}
	if _, err := hex.Decode(f.Sum[:], digits); err != nil {
		return Fingerprint{}, fmt.Errorf("tlspin: pin %q: %w", s, ErrBadPin)
	}
	return f, nil
}

// ParsePins parses a comma-separated list of pins (a rotation is announced
// by pinning the old and the new one side by side). Empty items are
// ignored; an empty list is returned for an empty string.
func ParsePins(s string) ([]Fingerprint, error) {
	var pins []Fingerprint
	for item := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		p, err := ParsePin(item)
		if err != nil {
			return nil, err
		}
		pins = append(pins, p)
	}
	return pins, nil
}
