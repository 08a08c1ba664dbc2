package authn

import (
	"net/http"
	"net/netip"
	"strings"
)

// Path is how a socket arrived: which listener accepted it. The listener
// sets it at accept time; nothing later re-derives it from addresses or
// headers. The zero value, PathUnknown, is trusted like a remote peer.
type Path int

// The listeners clawgate runs.
const (
	PathUnknown  Path = iota // not set: fail closed, treated as remote
	PathLoopback             // the loopback listener
	PathTailnet              // the tsnet listener (identity from WhoIs)
	PathTLS                  // the TLS listener for remote peers
)

// String returns a short name for logs.
func (p Path) String() string {
	switch p {
	case PathLoopback:
		return "loopback"
	case PathTailnet:
		return "tailnet"
	case PathTLS:
		return "tls"
	}
	return "unknown"
}

// Locality is the outcome of the "is this really a local process?" decision.
// The zero value is Remote, so a forgotten decision fails closed.
type Locality int

// Localities.
const (
	Remote Locality = iota // anything not proven local
	Local                  // direct, non-browser, non-proxied loopback
)

// String returns "local" or "remote".
func (l Locality) String() string {
	if l == Local {
		return "local"
	}
	return "remote"
}

// Arrival is everything authn needs about how a socket came in.
type Arrival struct {
	Path      Path           // listener that accepted the socket
	Remote    netip.AddrPort // the socket's peer address (never from a header)
	Forwarded bool           // HasForwardHeaders(request headers)
	Origin    string         // the Origin header, "" when absent
}

// Locality decides locality: Local only when the socket arrived on the
// loopback listener, its peer address parses as loopback (127.0.0.0/8, ::1,
// or ::ffff:127.x), no forwarding header was sent and no browser Origin is
// present. Everything else is Remote: same-host proxies, browsers, tailnet
// and TLS peers, and unparsed addresses.
func (a Arrival) Locality() Locality {
	if a.Path == PathLoopback && isLoopback(a.Remote) && !a.Forwarded && !IsBrowser(a.Origin) {
		return Local
	}
	return Remote
}

// LocalityOf is Arrival{path, remote, hasForwardHeaders, origin}.Locality().
func LocalityOf(path Path, remote netip.AddrPort, hasForwardHeaders bool, origin string) Locality {
	return Arrival{Path: path, Remote: remote, Forwarded: hasForwardHeaders, Origin: origin}.Locality()
}

// isLoopback reports whether the peer's IP is a loopback literal (netip, no
// name resolution, IPv4-mapped IPv6 unmapped first).
func isLoopback(ap netip.AddrPort) bool {
	return ap.IsValid() && ap.Addr().Unmap().IsLoopback()
}

// IsBrowser reports whether an Origin header value marks a browser socket:
// any non-empty value, including the opaque origin "null".
func IsBrowser(origin string) bool { return origin != "" }

// ForwardHeaderNames returns, in a fresh slice, the headers whose presence
// marks a request as proxied. The first five are the ones OpenClaw checks;
// the rest are other proxies' spellings of the same thing.
func ForwardHeaderNames() []string {
	return []string{
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP", "X-Forwarded-Host",
		"X-Forwarded-Port", "X-Forwarded-Server", "X-Client-IP", "True-Client-IP", "CF-Connecting-IP",
	}
}

// HasForwardHeaders reports whether h carries any ForwardHeaderNames header,
// even with an empty value. Names match case-insensitively, so a map built
// without canonical keys is handled too.
func HasForwardHeaders(h http.Header) bool {
	names := ForwardHeaderNames()
	for key := range h {
		for _, name := range names {
			if strings.EqualFold(key, name) {
				return true
			}
		}
	}
	return false
}
