package gateway

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clawgate/clawgate/authn"
)

// maxPaths bounds the per-listener counters; authn.Path values beyond it
// are counted as PathUnknown.
const maxPaths = 8

func pathIndex(p authn.Path) int {
	if p < 0 || int(p) >= maxPaths {
		return int(authn.PathUnknown)
	}
	return int(p)
}

// countAccepted is the http.Server ConnState hook of listener l: it counts
// every TCP connection the listener accepts.
func (s *Server) countAccepted(l Listener) func(net.Conn, http.ConnState) {
	i := pathIndex(l.Path)
	return func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.metrics.accepted[i].Add(1)
		}
	}
}

// serveMetrics answers GET /metrics in the Prometheus text format (0.0.4).
// Local clients (direct loopback, no proxy headers, no browser Origin) may
// read it; anyone else needs the shared gateway token as a bearer token,
// and wrong tokens count toward the auth-failure limiter. The Host header
// is checked as for the WebSocket upgrade, so a DNS-rebound page cannot
// read it either.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, l Listener) {
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "bad remote address", http.StatusBadRequest)
		return
	}
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !s.hostAllowed(r.Host, l, local) {
		http.Error(w, "host not allowed", http.StatusForbidden)
		return
	}
	arr := authn.Arrival{Path: l.Path, Remote: remote, Forwarded: authn.HasForwardHeaders(r.Header), Origin: r.Header.Get("Origin")}
	if arr.Locality() != authn.Local && !s.metricsBearerOK(w, r, arr) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.writeMetrics(w)
}

// metricsBearerOK checks "Authorization: Bearer <shared token>", answering
// 401 or 429 itself when it fails.
func (s *Server) metricsBearerOK(w http.ResponseWriter, r *http.Request, arr authn.Arrival) bool {
	lim, now := s.opts.Limiter, s.opts.Now()
	key := authn.NewLimitKey(authn.LimitSharedSecret, arr)
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	presented := strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) != ""
	if presented {
		if retry, locked := lim.Check(key, now); locked {
			s.metrics.authFailures.Add(1)
			w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
			http.Error(w, "too many failed authentication attempts", http.StatusTooManyRequests)
			return false
		}
		if s.opts.Token.Equal(strings.TrimSpace(tok)) {
			lim.Succeed(key)
			return true
		}
		lim.Fail(key, now)
		s.metrics.authFailures.Add(1)
		s.log.Info("metrics: bearer token refused", "remote", arr.Remote.String(), "listener", arr.Path.String())
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="clawgate"`)
	http.Error(w, "metrics need the gateway token as a bearer token (or a local client)", http.StatusUnauthorized)
	return false
}

// promWriter writes metric families; each family's HELP and TYPE come
// once, before its samples.
type promWriter struct {
	w io.Writer
}

func (p promWriter) family(name, typ, help string) {
	fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (p promWriter) sample(name string, labels []string, v float64) {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i])
			b.WriteString(`="`)
			b.WriteString(escapeLabel(labels[i+1]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	b.WriteByte('\n')
	_, _ = io.WriteString(p.w, b.String())
}

func (p promWriter) single(name, typ, help string, v float64) {
	p.family(name, typ, help)
	p.sample(name, nil, v)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// writeMetrics renders every metric. Nothing here carries a secret: only
// counts, the version and listener names.
func (s *Server) writeMetrics(w io.Writer) {
	p := promWriter{w: w}
	m := &s.metrics

	p.family("clawgate_build_info", "gauge", "Version of the running gateway.")
	p.sample("clawgate_build_info", []string{"version", s.opts.Version, "goversion", runtime.Version()}, 1)
	p.single("process_start_time_seconds", "gauge", "Start time of the gateway since the Unix epoch, in seconds.",
		float64(s.started.UnixNano())/1e9)

	p.family("clawgate_connections_accepted_total", "counter", "TCP connections accepted, by listener.")
	for i := range maxPaths {
		if n := m.accepted[i].Load(); n > 0 || authn.Path(i) == authn.PathLoopback {
			p.sample("clawgate_connections_accepted_total", []string{"listener", authn.Path(i).String()}, float64(n))
		}
	}

	type key struct {
		listener, state string
	}
	open := map[key]int{}
	for _, c := range s.snapshotConns() {
		st := "handshake"
		if c.Session() != nil {
			st = "authenticated"
		}
		open[key{c.arrival.Path.String(), st}]++
	}
	p.family("clawgate_connections_open", "gauge", "WebSocket connections open now, by listener and state (handshake or authenticated).")
	// The loopback series always exist, so a scraper sees zeros, not gaps.
	for _, st := range []string{"authenticated", "handshake"} {
		k := key{authn.PathLoopback.String(), st}
		open[k] = open[k]
	}
	keys := slices.SortedFunc(maps.Keys(open), func(a, b key) int {
		return cmp.Or(cmp.Compare(a.listener, b.listener), cmp.Compare(a.state, b.state))
	})
	for _, k := range keys {
		p.sample("clawgate_connections_open", []string{"listener", k.listener, "state", k.state}, float64(open[k]))
	}

	p.family("clawgate_handshakes_total", "counter", "Connect handshakes, by outcome.")
	p.sample("clawgate_handshakes_total", []string{"outcome", "ok"}, float64(m.handshakesOK.Load()))
	p.sample("clawgate_handshakes_total", []string{"outcome", "failed"}, float64(m.handshakesFailed.Load()))
	p.single("clawgate_auth_failures_total", "counter",
		"Failed authentication attempts: wrong shared or device tokens, bad device proofs, refusals during a lockout, wrong /metrics bearer tokens.",
		float64(m.authFailures.Load()))
	p.single("clawgate_slow_consumer_closes_total", "counter",
		"Connections closed because their bounded event queue overflowed; their queued events were dropped.",
		float64(m.slowConsumers.Load()))
	p.family("clawgate_goroutine_starts_total", "counter",
		"Per-connection goroutines started: readers after the handshake, for input a parked connection's poller does not take itself; writers for frames the socket could not take at once, and for close frames.")
	p.sample("clawgate_goroutine_starts_total", []string{"kind", "reader"}, float64(m.readerStarts.Load()))
	p.sample("clawgate_goroutine_starts_total", []string{"kind", "writer"}, float64(m.writerStarts.Load()))
	p.single("clawgate_memory_trims_total", "counter",
		"Times the gateway, quiet after a burst, returned freed heap memory to the OS.",
		float64(m.memoryTrims.Load()))

	s.writeProviderMetrics(p)

	if pm := s.opts.Pairing; pm != nil {
		if l, err := pm.List(); err == nil {
			p.single("clawgate_pairing_requests_pending", "gauge", "Device pairing requests waiting for approval.", float64(len(l.Pending)))
			p.single("clawgate_paired_devices", "gauge", "Paired devices.", float64(len(l.Paired)))
		}
	}

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.single("go_goroutines", "gauge", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
	p.single("go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and still in use.", float64(ms.HeapAlloc))
	p.single("go_memstats_heap_inuse_bytes", "gauge", "Number of heap bytes in in-use spans.", float64(ms.HeapInuse))
	p.single("go_memstats_heap_idle_bytes", "gauge", "Number of heap bytes in idle spans (waiting to be used or returned to the OS).", float64(ms.HeapIdle))
	p.single("go_memstats_heap_released_bytes", "gauge", "Number of heap bytes returned to the OS.", float64(ms.HeapReleased))
	p.single("go_memstats_stack_inuse_bytes", "gauge", "Number of bytes in stack spans.", float64(ms.StackInuse))
	p.single("go_memstats_next_gc_bytes", "gauge", "Heap size at which the next garbage collection starts.", float64(ms.NextGC))
	p.single("go_memstats_sys_bytes", "gauge", "Number of bytes obtained from the OS.", float64(ms.Sys))
	if rss := readRSS(); rss > 0 {
		p.single("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", float64(rss))
	}
}

// writeProviderMetrics reports each messaging account: whether it is
// connected, its state (one series per account, value 1), restarts and
// inbound events dropped. Labels are the configured channel and account
// names; providers.Status holds no secret.
func (s *Server) writeProviderMetrics(p promWriter) {
	hub := s.opts.Providers
	if hub == nil {
		return
	}
	sts := hub.Statuses()
	if len(sts) == 0 {
		return
	}
	p.family("clawgate_provider_up", "gauge", "1 when the messaging account is connected, else 0.")
	for _, st := range sts {
		up := 0.0
		if st.Connected() {
			up = 1
		}
		p.sample("clawgate_provider_up", []string{"channel", st.Channel, "account", st.AccountID}, up)
	}
	p.family("clawgate_provider_state", "gauge",
		"The messaging account's state (starting, connected, reconnecting, stopped, failed, logged-out); failed and logged-out need the operator.")
	for _, st := range sts {
		p.sample("clawgate_provider_state", []string{"channel", st.Channel, "account", st.AccountID, "state", string(st.State)}, 1)
	}
	p.family("clawgate_provider_restarts_total", "counter", "Restarts of the messaging account's provider by the supervisor.")
	for _, st := range sts {
		p.sample("clawgate_provider_restarts_total", []string{"channel", st.Channel, "account", st.AccountID}, float64(st.Restarts))
	}
	p.family("clawgate_provider_inbound_dropped_total", "counter", "Inbound messages dropped by policy or shape checks.")
	for _, st := range sts {
		p.sample("clawgate_provider_inbound_dropped_total", []string{"channel", st.Channel, "account", st.AccountID}, float64(st.Dropped))
	}
}
