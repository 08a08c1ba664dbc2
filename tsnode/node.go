package tsnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"tailscale.com/client/local"
	"tailscale.com/envknob"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tsnet"
	"tailscale.com/wgengine/netstack"

	"github.com/clawgate/clawgate/tsnode/tsipc"
)

// DefaultHostname is the node name asked of the control server when
// Options.Hostname is empty.
const DefaultHostname = "clawgate"

// Options configure a Node.
type Options struct {
	// Dir holds the node's state (its keys). It is created with mode 0700;
	// an existing directory open to group or others is refused.
	Dir string
	// Hostname is the name asked of the control server (default
	// DefaultHostname); the MagicDNS name is derived from it.
	Hostname string
	// AuthKey registers a new node without interactive login. It is
	// never logged. Empty: interactive login (the URL is surfaced in
	// Status and in the log).
	AuthKey string
	// ControlURL is the coordination server, e.g. a self-hosted
	// Headscale. Empty: Tailscale's.
	ControlURL string
	// Ephemeral nodes are removed from the tailnet soon after they go
	// offline.
	Ephemeral bool
	// AdvertiseTags asks the control server to tag this node.
	AdvertiseTags []string
	// UploadLogs allows tsnet to upload its logs to Tailscale's log
	// service. Off by default (TS_NO_LOGS_NO_SUPPORT).
	UploadLogs bool
	// Logger receives user-facing events (login URL, state changes);
	// nil discards them.
	Logger *slog.Logger
	// BackendLogs routes tailscale's verbose backend log to Logger at
	// debug level. Off: it is discarded.
	BackendLogs bool
	// PeerGone is called (from the node's watcher goroutine) with the
	// stable node ID of every peer that left the netmap or whose key
	// expired. It must not block for long.
	PeerGone func(nodeID string)
	// Changed is called (from the node's goroutines) after Status or
	// Hosts may have changed, so a caller can push them elsewhere
	// instead of polling. It must not block.
	Changed func()
}

// Status is a snapshot of the node. It is defined in tsipc, which the
// gateway imports to receive it from the helper without linking the node.
type Status = tsipc.Status

// Node is one tsnet node. Create it with New, then Start; Close stops it.
type Node struct {
	opts Options
	log  *slog.Logger
	srv  *tsnet.Server
	lc   *local.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // wakes the refresher; capacity 1
	ready  chan struct{} // closed when the node first reaches Running

	refreshMu sync.Mutex

	mu        sync.Mutex
	started   bool
	closed    bool
	status    Status
	hosts     []string
	peers     map[string]bool // stable node IDs in the netmap, not expired
	loggedURL string
	funnel    map[string]bool // remote addrs of live Funnel conns
}

var noLogsOnce sync.Once

// New validates opts and prepares the state directory. It starts
// nothing.
func New(opts Options) (*Node, error) {
	if opts.Dir == "" {
		return nil, errors.New("tsnode.New: no state directory")
	}
	if opts.Hostname == "" {
		opts.Hostname = DefaultHostname
	}
	if err := ensurePrivateDir(opts.Dir); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &tsnet.Server{
		Dir:           opts.Dir,
		Hostname:      opts.Hostname,
		AuthKey:       opts.AuthKey,
		ControlURL:    opts.ControlURL,
		Ephemeral:     opts.Ephemeral,
		AdvertiseTags: slices.Clone(opts.AdvertiseTags),
		UserLogf: func(format string, args ...any) {
			log.Info("tsnet: " + fmt.Sprintf(format, args...))
		},
	}
	if opts.BackendLogs {
		srv.Logf = func(format string, args ...any) {
			log.Debug("tsnet backend: " + fmt.Sprintf(format, args...))
		}
	} else {
		srv.Logf = func(string, ...any) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Node{
		opts: opts, log: log, srv: srv, ctx: ctx, cancel: cancel,
		kick:   make(chan struct{}, 1),
		ready:  make(chan struct{}),
		status: Status{State: ipn.NoState.String(), Hostname: opts.Hostname},
		peers:  map[string]bool{},
		funnel: map[string]bool{},
	}, nil
}

func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tsnode: state directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("tsnode: state directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("tsnode: %s is not a directory", dir)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("tsnode: state directory %s has mode %04o; it holds the node's keys and must be private (fix with: chmod 700 %s)",
			dir, st.Mode().Perm(), dir)
	}
	return nil
}

// Start brings the node up in the background: it returns once the backend
// runs, not when the node is on the tailnet (see Ready and WaitReady).
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started || n.closed {
		return errors.New("tsnode.Start: already started or closed")
	}
	if !n.opts.UploadLogs && !envknob.NoLogsNoSupport() {
		// Process-wide knob; set once, before tsnet's goroutines exist.
		noLogsOnce.Do(envknob.SetNoLogsNoSupport)
	}
	if err := n.srv.Start(); err != nil {
		return fmt.Errorf("tsnode.Start: %w", err)
	}
	if err := n.shortTimeWait(); err != nil {
		_ = n.srv.Close()
		return fmt.Errorf("tsnode.Start: %w", err)
	}
	lc, err := n.srv.LocalClient()
	if err != nil {
		return fmt.Errorf("tsnode.Start: %w", err)
	}
	n.lc = lc
	n.started = true
	n.log.Info("tailnet node starting", "hostname", n.opts.Hostname, "dir", n.opts.Dir,
		"controlURL", n.controlURLForLog(), "ephemeral", n.opts.Ephemeral, "authKey", n.opts.AuthKey != "")
	n.wg.Add(3)
	go func() { defer n.wg.Done(); n.up() }()
	go func() { defer n.wg.Done(); n.watch() }()
	go func() { defer n.wg.Done(); n.refresher() }()
	return nil
}

// timeWait is how long the node's userspace TCP keeps a closed
// connection in TIME-WAIT.
//
// The gateway closes most sockets first, so the TIME-WAIT state is on its
// side. gVisor's netstack (60 s by default) silently drops a SYN that
// reuses the 4-tuple of a connection in TIME-WAIT unless a listening
// endpoint takes it over, and tsnet's listeners are not gVisor listening
// endpoints (connections come through netstack's TCP forwarder). A peer
// that reconnects from a recently used source port (random ports make
// this likely after a few hundred reconnects a minute) would hang for up
// to a minute. WireGuard delivers the tunnel in order, so a short
// TIME-WAIT risks little; with one second a colliding SYN succeeds on its
// first retransmission.
const timeWait = time.Second

// shortTimeWait sets timeWait on the node's netstack (after srv.Start).
func (n *Node) shortTimeWait() error {
	ns, ok := n.srv.Sys().Netstack.GetOK()
	if !ok {
		return errors.New("tsnet has no netstack")
	}
	impl, ok := ns.(*netstack.Impl)
	if !ok {
		return fmt.Errorf("tsnet netstack is a %T", ns)
	}
	opt := tcpip.TCPTimeWaitTimeoutOption(timeWait)
	if err := impl.SetTransportProtocolOption(tcp.ProtocolNumber, &opt); err != nil {
		return fmt.Errorf("netstack TIME-WAIT: %v", err)
	}
	return nil
}

func (n *Node) controlURLForLog() string {
	if n.opts.ControlURL == "" {
		return "default"
	}
	return n.opts.ControlURL
}

// up waits for Running (tsnet.Up also clears any serve or Funnel config
// persisted by an earlier run), retrying after backend errors such as a
// rejected auth key, until the node closes.
func (n *Node) up() {
	for n.ctx.Err() == nil {
		_, err := n.srv.Up(n.ctx)
		if err == nil {
			n.refresh()
			close(n.ready)
			n.log.Info("tailnet node up", "dnsName", n.Status().DNSName, "ips", n.Status().IPs)
			return
		}
		if n.ctx.Err() != nil {
			return
		}
		n.mu.Lock()
		n.status.Error = err.Error()
		n.mu.Unlock()
		n.changed()
		n.log.Warn("tailnet node not up yet", "err", err)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// watch follows the IPN bus and wakes the refresher on every change.
func (n *Node) watch() {
	for n.ctx.Err() == nil {
		w, err := n.lc.WatchIPNBus(n.ctx, ipn.NotifyInitialState|ipn.NotifyPeerChanges)
		if err != nil {
			if n.ctx.Err() == nil {
				n.log.Debug("tailnet bus watch failed; retrying", "err", err)
			}
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		n.poke()
		for {
			note, err := w.Next()
			if err != nil {
				break
			}
			if note.ErrMessage != nil {
				n.mu.Lock()
				n.status.Error = *note.ErrMessage
				n.mu.Unlock()
				n.changed()
				n.log.Warn("tailnet backend error", "err", *note.ErrMessage)
			}
			n.poke()
		}
		w.Close()
	}
}

func (n *Node) changed() {
	if n.opts.Changed != nil {
		n.opts.Changed()
	}
}

func (n *Node) poke() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// refreshGap is the least time between two status refreshes: peer churn
// in a large tailnet (endpoints, online flags) costs at most one full
// status read per gap.
const refreshGap = 100 * time.Millisecond

// refresher coalesces bus notifications into status refreshes.
func (n *Node) refresher() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.kick:
			n.refresh()
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(refreshGap):
		}
	}
}

// refresh reads the full status, updates the snapshot and reports peers
// that left the netmap or expired.
func (n *Node) refresh() {
	n.refreshMu.Lock() // one at a time, so an older read never lands last
	defer n.refreshMu.Unlock()
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	st, err := n.lc.Status(ctx)
	if err != nil {
		if n.ctx.Err() == nil {
			n.log.Debug("tailnet status failed", "err", err)
		}
		return
	}
	snap, hosts := snapshot(st, n.opts.Hostname)
	alive := map[string]bool{}
	expired := map[string]bool{}
	for _, p := range st.Peer {
		switch {
		case !p.InNetworkMap || p.ID == "":
		case p.Expired:
			expired[string(p.ID)] = true
		default:
			alive[string(p.ID)] = true
		}
	}
	for id := range alive {
		// Two records for one node (e.g. mid key rotation): any expired
		// one means the node is not to be trusted.
		if expired[id] {
			delete(alive, id)
		}
	}
	snap.Peers = len(alive)

	n.mu.Lock()
	snap.Error = n.status.Error
	if snap.State == ipn.Running.String() {
		snap.Error = ""
	}
	n.status = snap
	n.hosts = hosts
	var gone []string
	for id := range n.peers {
		if !alive[id] {
			gone = append(gone, id)
		}
	}
	n.peers = alive
	logURL := snap.LoginURL != "" && snap.LoginURL != n.loggedURL
	if logURL {
		n.loggedURL = snap.LoginURL
	}
	n.mu.Unlock()
	n.changed()

	if logURL {
		n.log.Warn("tailnet login required: open this URL to add the gateway to your tailnet (or restart with an auth key)",
			"loginURL", snap.LoginURL)
	}
	slices.Sort(gone)
	for _, id := range gone {
		why := "left the netmap"
		if expired[id] {
			why = "key expired"
		}
		n.log.Info("tailnet peer gone", "node", id, "reason", why)
		if n.opts.PeerGone != nil {
			n.opts.PeerGone(id)
		}
	}
}

// snapshot converts a tailscale status into ours, plus the Host header
// values that name this node.
func snapshot(st *ipnstate.Status, hostname string) (Status, []string) {
	s := Status{State: st.BackendState, LoginURL: st.AuthURL, Hostname: hostname,
		IPs: slices.Clone(st.TailscaleIPs)}
	if st.CurrentTailnet != nil {
		s.Tailnet = st.CurrentTailnet.Name
		s.MagicDNSSuffix = st.CurrentTailnet.MagicDNSSuffix
	}
	if s.MagicDNSSuffix == "" {
		s.MagicDNSSuffix = st.MagicDNSSuffix
	}
	if self := st.Self; self != nil {
		s.NodeID = string(self.ID)
		s.DNSName = strings.TrimSuffix(self.DNSName, ".")
		if self.Tags != nil && self.Tags.Len() > 0 {
			s.Tags = self.Tags.AsSlice()
		} else if u, ok := st.User[self.UserID]; ok {
			s.OwnerLogin = u.LoginName
		}
	}
	if s.State != ipn.Running.String() {
		s.IPs = nil
	}
	var hosts []string
	if s.DNSName != "" {
		hosts = append(hosts, strings.ToLower(s.DNSName))
		if short, _, ok := strings.Cut(s.DNSName, "."); ok && short != "" {
			hosts = append(hosts, strings.ToLower(short))
		}
	}
	for _, ip := range s.IPs {
		hosts = append(hosts, ip.String())
		if ip.Is6() {
			hosts = append(hosts, "["+ip.String()+"]")
		}
	}
	return s, hosts
}

// Ready is closed when the node first reaches Running.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// WaitReady blocks until the node is Running or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	select {
	case <-n.ready:
		return nil
	case <-ctx.Done():
		st := n.Status()
		if st.Error != "" {
			return fmt.Errorf("tsnode: not running (state %s): %s", st.State, st.Error)
		}
		return fmt.Errorf("tsnode: not running (state %s): %w", st.State, ctx.Err())
	}
}

// Status returns a snapshot of the node.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.status
	s.IPs = slices.Clone(s.IPs)
	s.Tags = slices.Clone(s.Tags)
	return s
}

// Hosts returns the Host header values that name this node: its MagicDNS
// FQDN and short name and its tailnet IPs (IPv6 bare and bracketed).
// Empty until the node is Running.
func (n *Node) Hosts() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.hosts)
}

// Listen listens on port of the node's tailnet addresses only (inside the
// userspace network stack: nothing is opened on the host). It can be
// called before the node is Running.
func (n *Node) Listen(port int) (net.Listener, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("tsnode.Listen: port %d out of range", port)
	}
	ln, err := n.srv.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("tsnode.Listen: %w", err)
	}
	return &listener{Listener: ln, n: n}, nil
}

// FunnelConfigured reports whether the node's serve configuration exposes
// anything to the public internet through Funnel. clawgate never sets one;
// tsnet clears any stale one when the node comes up.
func (n *Node) FunnelConfigured(ctx context.Context) (bool, error) {
	sc, err := n.lc.GetServeConfig(ctx)
	if err != nil {
		return false, fmt.Errorf("tsnode.FunnelConfigured: %w", err)
	}
	if sc == nil {
		return false, nil
	}
	for _, on := range sc.AllowFunnel {
		if on {
			return true, nil
		}
	}
	return false, nil
}

// Close stops the node and waits for its goroutines. It is idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	started := n.started
	n.mu.Unlock()
	n.cancel()
	var err error
	if started {
		// tsnet must not be closed unless it started.
		err = n.srv.Close()
	}
	n.wg.Wait()
	return err
}
