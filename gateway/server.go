package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/logring"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/providers"
)

// Listener is a net.Listener tagged with how its connections arrive. Only
// authn.PathLoopback connections can ever be local.
type Listener struct {
	net.Listener
	Path authn.Path
	// Hosts, when set, are the only Host header values accepted on this
	// listener (host or host:port), e.g. the gateway's tailnet names.
	Hosts []string
	// HostsFunc, when set, replaces Hosts and is asked on every upgrade,
	// for names learned after Serve starts (see extra.go).
	HostsFunc func() []string
	// Identify, when set, says who the peer at remoteAddr is (tailnet
	// WhoIs). It runs once per upgrade, before 101; an error or timeout
	// leaves the connection unidentified, which is treated as remote.
	Identify func(ctx context.Context, remoteAddr string) (*PeerIdentity, error)
}

// PeerIdentity is what a listener's Identify learned about a peer from a
// cryptographic source (never from headers).
type PeerIdentity struct {
	NodeID    string   // stable node id
	NodeName  string   // e.g. "phone.tailnet-x.ts.net"
	UserLogin string   // owner login; "" for tagged nodes
	Tags      []string // ACL tags of the node
	SharedIn  bool     // shared into this tailnet from another
	Funnel    bool     // arrived from the public internet via Funnel
	// Trusted: the listener's trust policy allows silent pairing for this
	// peer (still with a signed challenge).
	Trusted bool
}

// Options configure a Server. Zero values take the protocol defaults.
type Options struct {
	Version string
	Token   SecretChecker
	// Limiter counts auth failures; nil gets authn.DefaultLimits.
	Limiter *authn.Limiter
	// Pairing decides which devices may connect and issues device tokens.
	// Nil disables device pairing: signed devices then connect on the
	// shared token alone (only tests of the bare core do that).
	Pairing *pairing.Manager
	// Backup writes a consistent copy of the state to path (clawgate.backup,
	// admin and local only). Nil leaves the method out.
	Backup           func(path string) (int64, error)
	Logger           *slog.Logger
	Now              func() time.Time
	TickInterval     time.Duration
	HandshakeTimeout time.Duration
	// TrimInterval is how often the gateway checks whether to return
	// memory a burst of connections left behind to the OS (memtrim.go);
	// 0 means 5 s, negative never.
	TrimInterval     time.Duration
	MaxBufferedBytes int
	MaxPreauthPerIP  int // pre-auth sockets per remote IP
	MaxConns         int // all sockets
	// AllowedHosts are extra Host header values accepted on upgrade
	// (host or host:port), beyond loopback names on the listener's port.
	AllowedHosts []string
	// AllowedOrigins are browser origins accepted on upgrade, beyond the
	// gateway's own loopback origin.
	AllowedOrigins []string
	StateDir       string
	ConfigPath     string
	// Agent configures agent runs and chat sessions (agent.go).
	Agent AgentOptions
	// WebChat, when set, answers GET requests on the gateway port that are
	// not WebSocket upgrades (the embedded WebChat page).
	WebChat http.Handler
	// Nodes is the node command policy (allowCommands/denyCommands).
	Nodes NodePolicy
	// Logs, when set, is the in-memory log ring served by logs.tail.
	Logs *logring.Ring
	// Providers, when set, are the messaging channels: send,
	// channels.status and channels.logout go through it, and its admitted
	// inbound messages and status changes become events (channels.go).
	Providers providers.Hub
	// Automation configures cron jobs and heartbeats (cron.go).
	Automation AutomationOptions
	// Canvas connects the canvas host (canvas.go).
	Canvas CanvasOptions
}

func (o *Options) setDefaults() {
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TickInterval <= 0 {
		o.TickInterval = protocol.TickIntervalMs * time.Millisecond
	}
	if o.TrimInterval == 0 {
		o.TrimInterval = 5 * time.Second
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = handshakeTimeoutFromEnv()
	}
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = protocol.MaxBufferedBytes
	}
	if o.MaxPreauthPerIP <= 0 {
		o.MaxPreauthPerIP = 32
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 100000
	}
	if o.Limiter == nil {
		o.Limiter = authn.NewLimiter(authn.DefaultLimits())
	}
}

// Server is the gateway: one HTTP server per listener, one connection set.
type Server struct {
	opts     Options
	log      *slog.Logger
	contract *protocol.Contract
	methods  map[string]*method
	upgrader websocket.Upgrader
	features atomic.Pointer[featuresCache] // hello-ok's encoded features (hello.go)
	started  time.Time
	bootID   string
	host     string

	mu       sync.RWMutex
	conns    map[*Conn]struct{}
	preauth  map[string]int // remote IP → sockets not yet authenticated
	stopping bool

	bus     bus
	dedupe  *dedupeCache
	agents  *agentRuns // agent runs and chat sessions (agent.go)
	nodes   *nodeHub   // node registry, exec approvals, setup codes (nodes.go)
	metrics metrics
	wg      sync.WaitGroup         // connection and background goroutines
	poll    atomic.Pointer[poller] // idle sockets (poll_linux.go); nil: a goroutine each

	auto *automation // cron and heartbeats (cron.go, heartbeat.go)
}

type metrics struct {
	handshakesOK     atomic.Int64
	handshakesFailed atomic.Int64
	authFailures     atomic.Int64
	slowConsumers    atomic.Int64
	writerStarts     atomic.Int64           // writer goroutines started (queued frames)
	readerStarts     atomic.Int64           // reader goroutines started after the handshake
	memoryTrims      atomic.Int64           // freed memory returned to the OS (memtrim.go)
	accepted         [maxPaths]atomic.Int64 // TCP connections, by authn.Path
}

// New builds a Server. It does not listen; call Serve.
func New(opts Options) (*Server, error) {
	opts.setDefaults()
	if opts.Token == nil {
		return nil, errors.New("gateway.New: no shared token configured")
	}
	contract, err := protocol.LoadContract()
	if err != nil {
		return nil, fmt.Errorf("gateway.New: %w", err)
	}
	host, _ := os.Hostname()
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		contract: contract,
		started:  opts.Now(),
		bootID:   newUUID(),
		host:     host,
		conns:    make(map[*Conn]struct{}),
		preauth:  make(map[string]int),
		dedupe:   newDedupeCache(protocol.DedupeMaxEntries, protocol.DedupeTTLMs*time.Millisecond, opts.Now),
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout:  10 * time.Second,
		ReadBufferSize:    0, // the hijacked reader is used (hijackReader)
		WriteBufferSize:   1024,
		WriteBufferPool:   &sync.Pool{},
		EnableCompression: false,
		// Origin and Host are checked before Upgrade is called.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	s.methods = make(map[string]*method)
	s.bus.init(s)
	s.registerMethods()
	s.initAgents()
	s.registerLogMethods()
	return s, nil
}

// Serve accepts connections on the listeners until ctx is canceled, then
// shuts down: the shutdown event, close 1012 to every client, and a wait
// for every connection goroutine.
func (s *Server) Serve(ctx context.Context, listeners ...Listener) error {
	if len(listeners) == 0 {
		return errors.New("gateway.Serve: no listeners")
	}
	s.poll.Store(newPoller(s))
	servers := make([]*http.Server, 0, len(listeners))
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		hs := s.httpServer(l)
		servers = append(servers, hs)
		go func() {
			if err := hs.Serve(l.Listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("gateway: serve %s: %w", l.Addr(), err)
				return
			}
			errc <- nil
		}()
	}
	bgCtx, stopBg := context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.tickLoop(bgCtx) }()
	if s.opts.TrimInterval > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.trimLoop(bgCtx) }()
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.bus.presenceLoop(bgCtx) }()
	stopAgents := s.startAgents()
	stopAuto := s.startAutomation()
	stopChannels := s.watchChannels()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	stopAuto()   // cron and heartbeats first: their turns are agent runs
	stopAgents() // runs end as aborted and are recorded before sockets close
	stopChannels()
	s.shutdown(servers)
	if p := s.poll.Load(); p != nil {
		p.close() // every connection has ended
	}
	stopBg()
	s.wg.Wait()
	return serveErr
}

func (s *Server) httpServer(l Listener) *http.Server {
	return &http.Server{
		Handler:           s.handler(l),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnState:         s.countAccepted(l),
	}
}

// shutdown stops accepting, tells every client, closes them with 1012 and
// waits for their goroutines.
func (s *Server) shutdown(servers []*http.Server) {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	for _, hs := range servers {
		// Stop accepting; hijacked WebSockets are not affected.
		_ = hs.Close()
	}
	s.bus.broadcast(protocol.EventShutdown, protocol.ShutdownPayload{Reason: "gateway stopping"}, nil, nil)
	for _, c := range s.snapshotConns() {
		c.closeAfterFlush(protocol.CloseServiceRestart, "service restart")
	}
	done := make(chan struct{})
	go func() { s.waitConns(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.log.Warn("connections still open after 5s; dropping them")
		for _, c := range s.snapshotConns() {
			c.closeSocket()
		}
		s.waitConns()
	}
}

func (s *Server) waitConns() {
	for {
		s.mu.RLock()
		n := len(s.conns)
		s.mu.RUnlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Server) snapshotConns() []*Conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// CloseTailnetPeer closes every connection that arrived from the tailnet
// node nodeID (it left the netmap or its key expired). It returns how many.
func (s *Server) CloseTailnetPeer(nodeID string) int {
	n := 0
	for _, c := range s.snapshotConns() {
		if p := c.arrival.Peer; p != nil && p.NodeID == nodeID {
			c.abort(protocol.ClosePolicy, "tailnet peer gone")
			n++
		}
	}
	return n
}

// ConnCount returns the number of open connections.
func (s *Server) ConnCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.conns)
}

func (s *Server) uptime() time.Duration { return s.opts.Now().Sub(s.started) }

func (s *Server) nowMs() int64 { return s.opts.Now().UnixMilli() }

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("gateway: encode %T: %v", v, err))
	}
	return b
}

func goos() string { return runtime.GOOS }

// handshakeTimeoutFromEnv is the default handshake timeout: 15 s, or
// CLAWGATE_HANDSHAKE_TIMEOUT_MS (1 s to 5 min), the counterpart of
// OpenClaw's OPENCLAW_HANDSHAKE_TIMEOUT_MS, for slow clients on starved
// machines.
func handshakeTimeoutFromEnv() time.Duration {
	d := protocol.HandshakeTimeoutMs * time.Millisecond
	if v, err := strconv.Atoi(os.Getenv("CLAWGATE_HANDSHAKE_TIMEOUT_MS")); err == nil && v >= 1000 && v <= 300000 {
		d = time.Duration(v) * time.Millisecond
	}
	return d
}
