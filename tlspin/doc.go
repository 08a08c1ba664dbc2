// Package tlspin manages the gateway's TLS identity and checks it on the
// client side the way SSH checks host keys.
//
// The gateway side creates a self-signed certificate and private key on
// first use (ECDSA P-256 by default, key file 0600, refused when group- or
// world-readable), or loads a user-provided pair, and re-issues the
// certificate with the same or a new key (Rotate). ServerConfig serves it
// with TLS 1.2 at least (1.3 preferred).
//
// A certificate has two fingerprints, both SHA-256: of the leaf
// certificate's DER bytes (KindCert, written "sha256:<hex>", what OpenClaw
// clients pin as tlsFingerprint) and of its SubjectPublicKeyInfo (KindSPKI,
// written "spki-sha256:<hex>"), which survives re-issuing the certificate
// with the same key. ParsePin accepts both in the forms OpenClaw accepts:
// an optional "sha256:" prefix, hex in any case, separators ignored.
//
// ClientConfig checks pins inside the TLS handshake (VerifyConnection), so
// on a mismatch the handshake fails and not one byte of application data is
// sent. Errors follow SSH known_hosts semantics: a pin that does not match
// is ErrCertificateChanged; an untrusted certificate with no pin is
// ErrUnknownCertificate (Explain turns the standard verification error into
// one), and both carry the presented fingerprints. Without a pin the chain
// and host name are verified as usual; verification is never skipped
// without a pin.
//
// tlspin is a leaf: it imports only the standard library.
package tlspin
