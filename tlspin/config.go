package tlspin

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"time"
)

// ServerConfig serves p with TLS 1.2 at least (Go prefers 1.3 whenever the
// client offers it) and HTTP/1.1 only, which WebSocket upgrades need.
func ServerConfig(p *Pair) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{p.Certificate},
		NextProtos:   []string{"http/1.1"},
	}
}

// Known-hosts outcomes, matched with errors.Is.
var (
	// ErrCertificateChanged: a pin was given and the server's certificate
	// matches none of the pins (SSH's "REMOTE HOST IDENTIFICATION HAS
	// CHANGED").
	ErrCertificateChanged = errors.New("certificate changed")
	// ErrUnknownCertificate: no pin was given and the certificate is not
	// signed by a trusted authority (SSH's "authenticity of host can't be
	// established").
	ErrUnknownCertificate = errors.New("unknown certificate")
)

// Presented are the fingerprints of the certificate a server presented.
type Presented struct {
	Cert Fingerprint
	SPKI Fingerprint
}

func presentedOf(leaf *x509.Certificate) Presented {
	return Presented{Cert: CertFingerprint(leaf), SPKI: SPKIFingerprint(leaf)}
}

func (p Presented) String() string { return p.Cert.String() + ", " + p.SPKI.String() }

// PinMismatchError is a certificate that matches none of the pins. It is
// ErrCertificateChanged.
type PinMismatchError struct {
	Presented Presented
	Pins      []Fingerprint
}

func (e *PinMismatchError) Error() string {
	pins := make([]string, len(e.Pins))
	for i, p := range e.Pins {
		pins[i] = p.String()
	}
	return "TLS pin mismatch: the gateway's certificate changed: it matches none of the pinned fingerprints (" +
		strings.Join(pins, ", ") + "); it presented " + e.Presented.String() +
		". Someone may be intercepting the connection, or the gateway's certificate was rotated: " +
		"check the new fingerprint on the gateway host before pinning it"
}

// Is makes a *PinMismatchError match ErrCertificateChanged.
func (e *PinMismatchError) Is(target error) bool { return target == ErrCertificateChanged }

// VerifyError is a failed verification of an unpinned certificate, with
// the fingerprints the server presented. It is ErrUnknownCertificate when
// no trusted authority signed it (whatever else is wrong with it); other
// failures of a trusted certificate (expired, wrong host name) unwrap to
// the standard library's error.
type VerifyError struct {
	Presented Presented
	Err       error // the *tls.CertificateVerificationError
	untrusted bool
}

func (e *VerifyError) Error() string {
	if e.untrusted {
		return "unknown certificate: the gateway's certificate is not signed by a trusted authority and no fingerprint is pinned " +
			"(it presented " + e.Presented.String() + "); if this is your gateway, check the fingerprint on its host and pin it"
	}
	return "TLS certificate verification failed: " + e.Err.Error() + " (the gateway presented " + e.Presented.String() + ")"
}

// Is makes a VerifyError for an untrusted authority match
// ErrUnknownCertificate.
func (e *VerifyError) Is(target error) bool { return target == ErrUnknownCertificate && e.untrusted }

func (e *VerifyError) Unwrap() error { return e.Err }

// Explain turns the standard library's certificate verification error in
// err's chain into a *VerifyError carrying the presented fingerprints;
// roots are the authorities the client trusted (nil: the system's). Go
// checks the host name before the chain, so a host name failure is
// re-checked against roots to tell an unknown certificate from a trusted
// one for another name. Any other error is returned unchanged.
func Explain(err error, roots *x509.CertPool) error {
	var cve *tls.CertificateVerificationError
	if err == nil || !errors.As(err, &cve) || len(cve.UnverifiedCertificates) == 0 {
		return err
	}
	var ve *VerifyError
	if errors.As(err, &ve) {
		return err
	}
	leaf := cve.UnverifiedCertificates[0]
	ve = &VerifyError{Presented: presentedOf(leaf), Err: err}
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case errors.As(err, &ua):
		ve.untrusted = true
	case errors.As(err, &he):
		inter := x509.NewCertPool()
		for _, c := range cve.UnverifiedCertificates[1:] {
			inter.AddCert(c)
		}
		_, verr := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: leaf.NotBefore.Add(time.Second)})
		ve.untrusted = errors.As(verr, &ua)
	}
	return ve
}

// ClientOptions configure ClientConfig.
type ClientOptions struct {
	// Pins: the server's leaf must match one of them. With pins, the chain
	// and host name are not verified: the pin is the trust anchor, as
	// OpenClaw does with tlsFingerprint (and as SSH does with known_hosts).
	Pins []Fingerprint
	// ServerName for SNI and, without pins, host name verification. Empty:
	// the dialer fills it in from the URL.
	ServerName string
	// RootCAs are the authorities trusted without pins; nil means the
	// system's.
	RootCAs *x509.CertPool
	// Time is the clock for verification; nil means time.Now.
	Time func() time.Time
}

// ClientConfig returns a TLS 1.2+ client configuration. With pins it checks
// them in VerifyConnection, which runs inside the handshake before it
// completes, so on a mismatch the handshake fails with a
// *PinMismatchError and no application byte is ever written. Without pins
// it verifies the chain and host name as usual; verification is never
// skipped without a pin.
func ClientConfig(o ClientOptions) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: o.ServerName,
		RootCAs:    o.RootCAs,
		Time:       o.Time,
		NextProtos: []string{"http/1.1"},
	}
	if len(o.Pins) > 0 {
		pins := append([]Fingerprint(nil), o.Pins...)
		// Chain verification is replaced by the pin check below, which
		// runs on every handshake, resumed ones included.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return VerifyPins(cs, pins) }
	}
	return cfg
}

// VerifyPins checks the leaf of cs against pins; it is what ClientConfig
// installs as VerifyConnection. No pins never verifies.
func VerifyPins(cs tls.ConnectionState, pins []Fingerprint) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tlspin: the server presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	for _, p := range pins {
		if p.Matches(leaf) {
			return nil
		}
	}
	return &PinMismatchError{Presented: presentedOf(leaf), Pins: pins}
}
