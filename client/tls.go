package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/tlspin"
)

// ErrPlaintextRemote is returned, before any connection is made, for a
// ws:// URL whose host is not a loopback IP literal, unless
// Options.AllowInsecurePlaintext is set.
var ErrPlaintextRemote = errors.New("refusing plaintext ws:// to a host that is not a loopback IP address")

// IsLoopbackHost reports whether host (a URL host name, brackets allowed)
// is an IP literal in a loopback range: 127.0.0.0/8, ::1, or an
// IPv4-mapped ::ffff:127.x. The decision is made by netip alone, never by
// name resolution or string prefix, so "localhost", "localhost.evil.com",
// "127.evil.com", "127.0.0.1.nip.io" and "0.0.0.0" are not loopback.
func IsLoopbackHost(host string) bool {
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return err == nil && a.Unmap().IsLoopback()
}

// TrustedTransport reports whether credentials may travel to rawURL
// without extra consent: a loopback IP literal, or wss:// (pinned or
// verified). Callers use it to decide whether to send a stored device
// token.
func TrustedTransport(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	return u.Scheme == "wss" || u.Scheme == "ws" && IsLoopbackHost(u.Hostname())
}

// transport checks o.URL against the transport policy and returns the
// dialer to use. It runs before anything touches the network.
func (o *Options) transport() (*websocket.Dialer, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("client: bad gateway URL: %w", err)
	}
	pins, err := tlspin.ParsePins(o.TLSFingerprint)
	if err != nil {
		return nil, fmt.Errorf("client: TLSFingerprint: %w", err)
	}
	d := o.Dialer
	if d == nil {
		d = &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	}
	switch u.Scheme {
	case "ws":
		if len(pins) > 0 {
			return nil, fmt.Errorf("client: a TLS fingerprint needs a wss:// URL, not %s", redactURL(u))
		}
		if !IsLoopbackHost(u.Hostname()) && !o.AllowInsecurePlaintext {
			return nil, fmt.Errorf("client: %w: %q. The token and every message would cross the network in the clear. "+
				"Use wss:// with the gateway's certificate fingerprint, an SSH tunnel (ssh -N -L 18789:127.0.0.1:18789 user@host, "+
				"then ws://127.0.0.1:18789), or the tailnet; for this machine use 127.0.0.1 or [::1], not a name",
				ErrPlaintextRemote, u.Hostname())
		}
		return d, nil
	case "wss":
	default:
		return nil, fmt.Errorf("client: gateway URL %s: scheme must be ws:// or wss://", redactURL(u))
	}
	dd := *d
	if len(pins) > 0 {
		cfg := tlspin.ClientConfig(tlspin.ClientOptions{Pins: pins})
		if d.TLSClientConfig != nil {
			cfg.RootCAs = d.TLSClientConfig.RootCAs
			cfg.ServerName = d.TLSClientConfig.ServerName
		}
		dd.TLSClientConfig = cfg
		return &dd, nil
	}
	if d.TLSClientConfig == nil {
		dd.TLSClientConfig = tlspin.ClientConfig(tlspin.ClientOptions{})
		return &dd, nil
	}
	cfg := d.TLSClientConfig.Clone()
	if cfg.InsecureSkipVerify && cfg.VerifyConnection == nil && cfg.VerifyPeerCertificate == nil {
		return nil, errors.New("client: refusing a TLS configuration that skips certificate verification without a pin; set TLSFingerprint")
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	dd.TLSClientConfig = cfg
	return &dd, nil
}

// redactURL drops user info and query (where tokens hide) from u.
func redactURL(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.Fragment = nil, "", ""
	return c.String()
}

// explainDialError makes TLS verification failures say what SSH would:
// "certificate changed" or "unknown certificate", with the fingerprints.
func explainDialError(err error, d *websocket.Dialer) error {
	var roots *x509.CertPool
	if d.TLSClientConfig != nil {
		roots = d.TLSClientConfig.RootCAs
	}
	return tlspin.Explain(err, roots)
}
