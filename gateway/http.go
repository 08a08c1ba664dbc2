package gateway

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

// SecretChecker compares a presented shared secret with the configured one
// in constant time.
type SecretChecker interface {
	Equal(candidate string) bool
}

// forwardHeaders mark a request that passed through a proxy. Their presence
// makes a loopback connection non-local; their values are never trusted.

func (s *Server) handler(l Listener) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.serveHealthz)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { s.serveMetrics(w, r, l) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.serveRoot(w, r, l) })
	return securityHeaders(mux)
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write([]byte(`{"ok":true,"status":"live"}`))
}

func (s *Server) serveRoot(w http.ResponseWriter, r *http.Request, l Listener) {
	if !isUpgrade(r) {
		s.serveWebChat(w, r, l)
		return
	}
	s.serveUpgrade(w, r, l)
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// serveUpgrade checks Host, Origin and the connection budgets before
// answering 101, then runs the connection until it closes.
func (s *Server) serveUpgrade(w http.ResponseWriter, r *http.Request, l Listener) {
	growStack(len(r.Host))
	kind := l.Path
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "bad remote address", http.StatusBadRequest)
		return
	}
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !s.hostAllowed(r.Host, l, local) {
		s.log.Warn("upgrade refused: host not allowed", "host", r.Host, "remote", remote)
		http.Error(w, "host not allowed", http.StatusForbidden)
		return
	}
	origin, hasOrigin := r.Header["Origin"]
	if hasOrigin && !s.originAllowed(firstOr(origin), r.Host, local) {
		s.log.Warn("upgrade refused: origin not allowed", "origin", firstOr(origin), "remote", remote)
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if len(r.Header.Values("Sec-WebSocket-Extensions")) > 0 {
		// Compression is never negotiated; the header is simply not echoed.
		r.Header.Del("Sec-WebSocket-Extensions")
	}
	ip := remote.Addr().Unmap().String()
	if !s.admitPreauth(ip) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "Too many unauthenticated sockets", http.StatusServiceUnavailable)
		return
	}
	var peer *PeerIdentity
	if l.Identify != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		p, err := l.Identify(ctx, r.RemoteAddr)
		cancel()
		if err != nil {
			s.log.Info("peer not identified; treated as remote", "remote", remote, "err", err)
		} else {
			peer = p
		}
	}
	hw := &hijackReader{ResponseWriter: w}
	ws, err := s.upgrader.Upgrade(hw, r, nil)
	if err != nil {
		s.releasePreauth(ip)
		return // the upgrader already answered
	}
	arrival := Arrival{
		Path:      kind,
		Remote:    remote,
		Origin:    firstOr(origin),
		Host:      r.Host,
		Forwarded: authn.HasForwardHeaders(r.Header),
		UserAgent: r.UserAgent(),
		Peer:      peer,
	}
	s.runConn(ws, hw.br, hw.pre, arrival, ip)
}

// handshakeStack is about the stack the handshake needs below
// serveUpgrade (upgrade, strict parse and schema walk, ed25519 verify,
// pairing lookup, hello-ok encoding).
const handshakeStack = 16 << 10

// growStack grows the calling goroutine's stack once, while it is still
// shallow, to what the handshake needs. net/http starts each connection's
// goroutine on a small stack; left alone it grows by doubling in the middle
// of the handshake, each time copying a deep stack, which profiles showed
// at about 5% of the gateway's CPU per signed handshake. The stack is
// released with the handler goroutine once the handshake is done
// (lifecycle.go), so idle connections do not keep it.
//
//go:noinline
func growStack(n int) byte {
	var pad [handshakeStack]byte // indexed by n so that the frame is kept
	pad[n%len(pad)] = 1
	return pad[(n/2)%len(pad)]
}

func firstOr(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// hostAllowed defends against DNS rebinding: the Host header must name the
// gateway itself. On loopback that is 127.0.0.1, [::1] or localhost on the
// listener's port; other listeners accept only configured names.
func (s *Server) hostAllowed(host string, l Listener, local net.Addr) bool {
	kind := l.Path
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = host, ""
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	localPort := ""
	if tcp, ok := local.(*net.TCPAddr); ok {
		localPort = strconv.Itoa(tcp.Port)
	}
	matches := func(list []string) bool {
		for _, a := range list {
			a = strings.ToLower(a)
			if a == strings.ToLower(host) || a == h && (port == "" || port == localPort) {
				return true
			}
		}
		return false
	}
	if hosts := l.hostList(); hosts != nil {
		return matches(hosts)
	}
	if matches(s.opts.AllowedHosts) {
		return true
	}
	if kind != authn.PathLoopback {
		return false
	}
	if port != "" && localPort != "" && port != localPort {
		return false
	}
	return isLoopbackName(h)
}

func isLoopbackName(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil && a.Unmap().IsLoopback()
}

// originAllowed accepts configured origins and the gateway's own loopback
// origin (the WebChat page it serves). "null" and everything else fail.
func (s *Server) originAllowed(origin, host string, local net.Addr) bool {
	o := strings.ToLower(strings.TrimSpace(origin))
	if o == "" || o == "null" {
		return false
	}
	for _, a := range s.opts.AllowedOrigins {
		if strings.ToLower(a) == o {
			return true
		}
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" && u.Path != "/" {
		return false
	}
	// Same origin as the page the gateway serves: the origin's host:port
	// equals the Host header and names loopback.
	return strings.EqualFold(u.Host, host) && isLoopbackName(strings.ToLower(u.Hostname()))
}

func (s *Server) admitPreauth(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || len(s.conns) >= s.opts.MaxConns {
		return false
	}
	if s.preauth[ip] >= s.opts.MaxPreauthPerIP {
		return false
	}
	s.preauth[ip]++
	return true
}

func (s *Server) releasePreauth(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.preauth[ip] <= 1 {
		delete(s.preauth, ip)
		return
	}
	s.preauth[ip]--
}

// errFrame builds the generic invalid-frame error.
func invalidFrame(detail string) *protocol.Error {
	return protocol.InvalidRequest("invalid request frame: " + detail)
}
