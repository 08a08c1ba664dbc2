package gateway

import (
	"net"
	"net/http"
)

// serveWebChat hands GET and HEAD requests that are not WebSocket upgrades
// to Options.WebChat, after the same Host check as an upgrade (no DNS
// rebinding); everything else is 404.
func (s *Server) serveWebChat(w http.ResponseWriter, r *http.Request, l Listener) {
	if s.opts.WebChat == nil || r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.NotFound(w, r)
		return
	}
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !s.hostAllowed(r.Host, l, local) {
		http.Error(w, "host not allowed", http.StatusForbidden)
		return
	}
	s.opts.WebChat.ServeHTTP(w, r)
}
