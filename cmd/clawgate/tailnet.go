package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/ipc"
	"github.com/clawgate/clawgate/tsnode/tsipc"
)

// tailnetFlags: the switch for the tailnet listener; its settings live in
// the config file's "tailnet" section.
type tailnetFlags struct {
	enable bool
}

func (f *tailnetFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.enable, "tailnet", false, `also serve on the tailnet with tsnet (settings: the config file's "tailnet" section)`)
}

// tailnetHelperEnv is appended to the tailnet helper's environment (tests:
// the offline tailscale knobs).
var tailnetHelperEnv []string

// Restart backoff of the tailnet helper.
const (
	helperBackoffMin = time.Second
	helperBackoffMax = 30 * time.Second
	// helperStable: a helper that ran this long restarts after the least
	// backoff again.
	helperStable = time.Minute
	// helperStopWait is how long a stopping helper may take to leave the
	// tailnet (an ephemeral node logs out) before it is killed.
	helperStopWait = 10 * time.Second
)

// Helper states in the status section.
const (
	helperRunning    = "running"
	helperRestarting = "restarting"
)

// tailnet is the gateway's side of the tailnet node, which runs in the
// clawgate-tailnet helper process (so this binary links no tailscale.com):
// the listeners fed with the connections the helper relays, the node's
// state as the helper last pushed it, and the helper's supervision.
type tailnet struct {
	start tsipc.Start // the helper's options; the auth key among them: never logged
	port  int
	srv   *gateway.Server
	log   *slog.Logger
	env   []string

	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// launchMu orders launches and listen: a port added while a helper
	// starts is opened by that helper.
	launchMu sync.Mutex

	mu       sync.Mutex
	closing  bool
	proc     *ipc.Process           // the running helper; nil while it restarts
	lns      map[int]*relayListener // by tailnet port
	state    tsipc.State
	lastExit string // why the helper last exited
	restarts int
}

// startTailnet joins the tailnet when --tailnet or the config enables it;
// otherwise it starts nothing and returns nil (every method of a nil
// *tailnet is a no-op). It starts the helper and hands it the node's
// options; the node comes up in the background: the gateway serves
// loopback at once, and the tailnet listener accepts as soon as the node
// runs (after interactive login if there is no auth key).
func startTailnet(f tailnetFlags, cfg config.Tailnet, gatewayAddr net.Addr, p paths, e env, srv *gateway.Server, log *slog.Logger) (*tailnet, error) {
	if !f.enable && !cfg.Enabled {
		return nil, nil
	}
	log = log.With("component", "tailnet")
	t := &tailnet{srv: srv, log: log, port: cfg.Port,
		env: slices.Clone(tailnetHelperEnv), // ipc.Start passes none of the gateway's secrets
		lns: map[int]*relayListener{}}
	if tcp, ok := gatewayAddr.(*net.TCPAddr); ok && t.port == 0 {
		t.port = tcp.Port
	}
	if err := checkTailnetConfig(cfg, t.port); err != nil {
		return nil, err
	}
	dir := filepath.Join(p.stateDir, "tsnet")
	if err := config.EnsureDir(dir); err != nil {
		return nil, err
	}
	key, keySource, err := tailnetAuthKey(cfg, e)
	if err != nil {
		return nil, err
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = defaultTailnetHostname
	}
	t.start = tsipc.Start{
		Version: tsipc.Version, Dir: dir, Hostname: hostname, AuthKey: key, ControlURL: cfg.ControlURL,
		Ephemeral: cfg.Ephemeral, AdvertiseTags: cfg.AdvertiseTags, UploadLogs: cfg.UploadLogs,
		LogLevel: leastLevel(log), BackendLogs: log.Enabled(context.Background(), slog.LevelDebug),
		AllowedLogins: cfg.AllowedLogins, AllowedTags: cfg.AllowedTags,
	}
	t.state.Status = tsipc.Status{State: "NoState", Hostname: hostname}
	t.lns[t.port] = newRelayListener(t.port)
	t.ctx, t.cancel = context.WithCancel(context.Background())
	proc, err := t.launch()
	if err != nil {
		t.cancel()
		return nil, err
	}
	if err := srv.AddStatusSection("tailnet", t.status); err != nil {
		_ = proc.Stop(helperStopWait)
		t.cancel()
		return nil, err
	}
	t.wg.Add(1)
	go func() { defer t.wg.Done(); t.supervise(proc) }()
	allowed := "the login that owns the gateway node"
	if len(cfg.AllowedLogins) > 0 {
		allowed = strings.Join(cfg.AllowedLogins, ",")
	}
	log.Info("tailnet listener starting", "port", t.port, "authKey", keySource,
		"autoApproveLogins", allowed, "autoApproveTags", strings.Join(cfg.AllowedTags, ","))
	return t, nil
}

// defaultTailnetHostname is the node name asked of the control server when
// the config names none (tsnode.DefaultHostname).
const defaultTailnetHostname = "clawgate"

// leastLevel is the least level log records (the helper logs no finer).
func leastLevel(log *slog.Logger) slog.Level {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if log.Enabled(context.Background(), l) {
			return l
		}
	}
	return slog.LevelError
}

func checkTailnetConfig(cfg config.Tailnet, port int) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("tailnet: port %d is out of range", port)
	}
	if cfg.ControlURL != "" {
		u, err := url.Parse(cfg.ControlURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return fmt.Errorf("tailnet: controlURL %q is not an http(s) URL of a coordination server", cfg.ControlURL)
		}
	}
	for _, tag := range append(append([]string(nil), cfg.AllowedTags...), cfg.AdvertiseTags...) {
		if !strings.HasPrefix(tag, "tag:") || len(tag) == len("tag:") {
			return fmt.Errorf("tailnet: %q is not a tag (tags look like tag:name)", tag)
		}
	}
	for _, l := range cfg.AllowedLogins {
		if strings.TrimSpace(l) == "" {
			return errors.New("tailnet: allowedLogins has an empty entry")
		}
	}
	return nil
}

// tailnetAuthKey reads the auth key from the config's file (which must be
// private) or $TS_AUTHKEY. It returns where it came from, never the key.
func tailnetAuthKey(cfg config.Tailnet, e env) (key, source string, err error) {
	if cfg.AuthKeyFile != "" {
		k, err := config.ReadSecret(cfg.AuthKeyFile)
		if err != nil {
			return "", "", fmt.Errorf("tailnet: auth key: %w", err)
		}
		if k == "" {
			return "", "", fmt.Errorf("tailnet: auth key file %s is empty", cfg.AuthKeyFile)
		}
		return k, cfg.AuthKeyFile, nil
	}
	if k := strings.TrimSpace(e.getenv("TS_AUTHKEY")); k != "" {
		return k, "TS_AUTHKEY", nil
	}
	return "", "none (interactive login, or the node's saved state)", nil
}

// launch starts the helper, starts the node in it and opens every
// listener's port there.
func (t *tailnet) launch() (*ipc.Process, error) {
	t.launchMu.Lock()
	defer t.launchMu.Unlock()
	proc, err := ipc.Start(t.ctx, tsipc.HelperName, ipc.StartOptions{
		Env: t.env, Handler: t.handle, Stderr: ipc.NewLogWriter(t.log, "tailnet helper"),
	})
	if err != nil {
		if errors.Is(err, ipc.ErrNotFound) {
			return nil, fmt.Errorf("tailnet: the node runs in the %s helper, which must sit next to clawgate "+
				"(install both with `go install github.com/clawgate/clawgate/cmd/...@latest`): %w", tsipc.HelperName, err)
		}
		return nil, fmt.Errorf("tailnet: %w", err)
	}
	ctx, cancel := context.WithTimeout(t.ctx, time.Minute)
	defer cancel()
	if err := proc.Conn().Call(ctx, tsipc.MethodStart, t.start, nil); err != nil {
		_ = proc.Stop(helperStopWait)
		return nil, fmt.Errorf("tailnet: %w", err)
	}
	t.mu.Lock()
	ports := make([]int, 0, len(t.lns))
	for port := range t.lns {
		ports = append(ports, port)
	}
	t.mu.Unlock()
	slices.Sort(ports)
	for _, port := range ports {
		if err := proc.Conn().Call(ctx, tsipc.MethodListen, tsipc.Listen{Port: port}, nil); err != nil {
			_ = proc.Stop(helperStopWait)
			return nil, fmt.Errorf("tailnet: listen on port %d: %w", port, err)
		}
	}
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		_ = proc.Stop(helperStopWait)
		return nil, errors.New("tailnet: closing")
	}
	t.proc = proc
	t.mu.Unlock()
	return proc, nil
}

// supervise restarts the helper whenever it exits, with a backoff, until
// close. Loopback serves throughout; the tailnet listeners wait.
func (t *tailnet) supervise(proc *ipc.Process) {
	backoff := helperBackoffMin
	for {
		began := time.Now()
		select {
		case <-t.ctx.Done():
			return
		case <-proc.Done():
		}
		exit := proc.Stop(time.Second) // reaps it; says how it ended
		if t.isClosing() {
			return
		}
		why := "exited"
		if exit != nil {
			why = exit.Error()
		}
		t.mu.Lock()
		t.proc, t.lastExit = nil, why
		t.restarts++
		t.state = tsipc.State{Status: tsipc.Status{State: "NoState", Hostname: t.start.Hostname}}
		t.mu.Unlock()
		if time.Since(began) >= helperStable {
			backoff = helperBackoffMin
		}
		for {
			t.log.Warn("tailnet helper exited; restarting it", "exit", why, "in", backoff.String())
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, helperBackoffMax)
			p, err := t.launch()
			if err == nil {
				t.log.Info("tailnet helper restarted")
				proc = p
				break
			}
			if t.isClosing() {
				return
			}
			why = err.Error()
			t.mu.Lock()
			t.lastExit = why
			t.mu.Unlock()
		}
	}
}

// handle serves the helper's calls.
func (t *tailnet) handle(ctx context.Context, req *ipc.Request) (any, error) {
	switch req.Method {
	case tsipc.MethodAccept:
		return nil, t.accept(ctx, req)
	}
	for _, f := range req.Files {
		_ = f.Close()
	}
	switch req.Method {
	case tsipc.MethodState:
		var st tsipc.State
		if err := req.Decode(&st); err != nil {
			return nil, err
		}
		t.mu.Lock()
		t.state = st
		t.mu.Unlock()
		return nil, nil
	case tsipc.MethodPeerGone:
		var p tsipc.PeerGone
		if err := req.Decode(&p); err != nil {
			return nil, err
		}
		t.peerGone(p.NodeID)
		return nil, nil
	}
	return nil, &ipc.Error{Code: "unknown_method", Message: "gateway: unknown tailnet helper method " + req.Method}
}

// accept turns a relayed tailnet connection into a net.Conn with the
// tailnet addresses and queues it on its port's listener.
func (t *tailnet) accept(ctx context.Context, req *ipc.Request) error {
	defer func() {
		for _, f := range req.Files {
			_ = f.Close()
		}
	}()
	var p tsipc.Accept
	if err := req.Decode(&p); err != nil {
		return err
	}
	if len(req.Files) != 1 {
		return fmt.Errorf("gateway: tailnet accept with %d descriptors", len(req.Files))
	}
	remote, err1 := netip.ParseAddrPort(p.Remote)
	local, err2 := netip.ParseAddrPort(p.Local)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("gateway: tailnet accept: %w", err)
	}
	t.mu.Lock()
	ln := t.lns[p.Port]
	t.mu.Unlock()
	if ln == nil {
		return fmt.Errorf("gateway: no tailnet listener on port %d", p.Port)
	}
	nc, err := net.FileConn(req.Files[0])
	if err != nil {
		return fmt.Errorf("gateway: tailnet accept: %w", err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		_ = nc.Close()
		return fmt.Errorf("gateway: tailnet accept: a %T, not a Unix socket", nc)
	}
	c := &gateway.RelayedConn{UnixConn: uc,
		Local: net.TCPAddrFromAddrPort(local), Remote: net.TCPAddrFromAddrPort(remote)}
	if err := ln.push(ctx, c); err != nil {
		_ = c.Close()
		return err
	}
	return nil
}

// listeners returns the tailnet listener to serve beside the others.
func (t *tailnet) listeners() []gateway.Listener {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	ln := t.lns[t.port]
	t.mu.Unlock()
	return []gateway.Listener{{Listener: ln, Path: authn.PathTailnet, HostsFunc: t.hosts, Identify: t.identify}}
}

// listen opens another port on the node (the canvas host) and returns its
// listener.
func (t *tailnet) listen(port int) (net.Listener, error) {
	t.launchMu.Lock()
	defer t.launchMu.Unlock()
	t.mu.Lock()
	if _, dup := t.lns[port]; dup {
		t.mu.Unlock()
		return nil, fmt.Errorf("tailnet: port %d is already served", port)
	}
	ln := newRelayListener(port)
	t.lns[port] = ln
	proc := t.proc
	t.mu.Unlock()
	if proc == nil {
		return ln, nil // the helper listens when it restarts
	}
	ctx, cancel := context.WithTimeout(t.ctx, time.Minute)
	defer cancel()
	if err := proc.Conn().Call(ctx, tsipc.MethodListen, tsipc.Listen{Port: port}, nil); err != nil {
		if errors.Is(err, ipc.ErrClosed) && t.ctx.Err() == nil {
			return ln, nil // the helper died: its successor listens (launch)
		}
		t.mu.Lock()
		delete(t.lns, port)
		t.mu.Unlock()
		return nil, fmt.Errorf("tailnet: listen on port %d: %w", port, err)
	}
	return ln, nil
}

// close stops the helper (after Serve has closed its listener); the
// helper leaves the tailnet and exits.
func (t *tailnet) close() {
	if t == nil || t.cancel == nil {
		return
	}
	t.mu.Lock()
	t.closing = true
	proc := t.proc
	for _, ln := range t.lns {
		_ = ln.Close()
	}
	t.mu.Unlock()
	if proc != nil {
		if err := proc.Stop(helperStopWait); err != nil {
			t.log.Debug("tailnet helper stop", "err", err)
		}
	}
	t.cancel() // ends a restart in progress
	t.wg.Wait()
}

func (t *tailnet) isClosing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}

// hosts are the Host header values that name the node, as the helper last
// pushed them (asked on every upgrade: no call).
func (t *tailnet) hosts() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.state.Hosts)
}

// nodeStatus is the node's status as the helper last pushed it.
func (t *tailnet) nodeStatus() tsipc.Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state.Status
}

// call calls the running helper.
func (t *tailnet) call(ctx context.Context, method string, params, result any) error {
	t.mu.Lock()
	proc := t.proc
	t.mu.Unlock()
	if proc == nil {
		return errors.New("tailnet: the helper is not running")
	}
	return proc.Conn().Call(ctx, method, params, result)
}

// identify is the listener's Identify: WhoIs, then the trust policy, both
// in the helper. The gateway treats an error as an unidentified, remote
// peer.
func (t *tailnet) identify(ctx context.Context, remoteAddr string) (*gateway.PeerIdentity, error) {
	var res tsipc.Identified
	if err := t.call(ctx, tsipc.MethodIdentify, tsipc.Identify{Remote: remoteAddr}, &res); err != nil {
		return nil, err
	}
	id, v := res.Identity, res.Verdict
	t.log.Info("tailnet peer identified", "peer", id, "trusted", v.Trusted, "reason", v.Reason)
	return &gateway.PeerIdentity{
		NodeID: id.NodeID, NodeName: id.NodeName, UserLogin: id.UserLogin, Tags: id.Tags,
		SharedIn: id.SharedIn, Funnel: id.Funnel, Trusted: v.Trusted,
	}, nil
}

// peerGone closes the sockets of a peer that left the netmap or expired.
func (t *tailnet) peerGone(nodeID string) {
	if n := t.srv.CloseTailnetPeer(nodeID); n > 0 {
		t.log.Info("closed the sockets of a departed tailnet peer", "node", nodeID, "sockets", n)
	}
}

// tailnetStatus is the "tailnet" section of the status method.
type tailnetStatus struct {
	State    string   `json:"state"`
	Hostname string   `json:"hostname"`
	DNSName  string   `json:"dnsName,omitempty"`
	IPs      []string `json:"ips,omitempty"`
	Port     int      `json:"port"`
	Tailnet  string   `json:"tailnet,omitempty"`
	Peers    int      `json:"peers"`
	// Helper is the helper process: running, or restarting after it
	// exited (Restarts counts those exits).
	Helper   string `json:"helper"`
	Restarts int    `json:"helperRestarts,omitempty"`
	// Admin only: whoever opens the login URL decides which tailnet the
	// gateway joins.
	LoginURL   string `json:"loginURL,omitempty"`
	OwnerLogin string `json:"ownerLogin,omitempty"`
	Error      string `json:"error,omitempty"`
	HelperExit string `json:"helperExit,omitempty"` // why the helper last exited
}

func (t *tailnet) status(admin bool) any {
	t.mu.Lock()
	st := t.state.Status
	helper, restarts, lastExit := helperRestarting, t.restarts, t.lastExit
	if t.proc != nil {
		helper = helperRunning
	}
	t.mu.Unlock()
	out := tailnetStatus{State: st.State, Hostname: st.Hostname, DNSName: st.DNSName, Port: t.port,
		Tailnet: st.Tailnet, Peers: st.Peers, IPs: []string{}, Helper: helper, Restarts: restarts}
	for _, ip := range st.IPs {
		out.IPs = append(out.IPs, ip.String())
	}
	if admin {
		out.LoginURL, out.OwnerLogin, out.Error, out.HelperExit = st.LoginURL, st.OwnerLogin, st.Error, lastExit
	}
	return out
}

// relayListener is a tailnet listener on the gateway's side: Accept
// returns the connections the helper relays for its port. It outlives
// helper restarts.
type relayListener struct {
	port int
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newRelayListener(port int) *relayListener {
	return &relayListener{port: port, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept, or fails when the listener is closed or ctx
// ends first.
func (l *relayListener) push(ctx context.Context, c net.Conn) error {
	select {
	case l.ch <- c:
		return nil
	case <-l.done:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Accept returns the next relayed connection.
func (l *relayListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; connections already accepted stay open.
func (l *relayListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the tailnet port (on every tailnet address of the node).
func (l *relayListener) Addr() net.Addr { return tailnetAddr(l.port) }

// tailnetAddr names a port on the node's tailnet addresses.
type tailnetAddr int

func (a tailnetAddr) Network() string { return "tailnet" }
func (a tailnetAddr) String() string  { return fmt.Sprintf("tailnet:%d", int(a)) }
