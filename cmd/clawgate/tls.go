package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/tlspin"
)

// tlsFlags are the gateway's TLS and bind-safety flags.
type tlsFlags struct {
	on           bool
	certFile     string
	keyFile      string
	plaintextLAN bool
}

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&t.on, "tls", false, "serve wss:// with the managed self-signed certificate (<state-dir>/tls/, created on first start)")
	fs.StringVar(&t.certFile, "tls-cert", "", "serve wss:// with this PEM certificate (needs --tls-key)")
	fs.StringVar(&t.keyFile, "tls-key", "", "the PEM private key of --tls-cert (must not be readable by group or others)")
	fs.BoolVar(&t.plaintextLAN, "dangerously-allow-plaintext-lan", false,
		"DANGEROUS: allow a plaintext ws:// listener beyond loopback; the token and every message cross the network in the clear")
}

func (p paths) tlsDir() string   { return filepath.Join(p.stateDir, "tls") }
func (p paths) tlsCert() string  { return filepath.Join(p.tlsDir(), "gateway.crt") }
func (p paths) tlsKey() string   { return filepath.Join(p.tlsDir(), "gateway.key") }
func (p paths) knownGWs() string { return filepath.Join(p.stateDir, "known_gateways.json") }

// listenPlan is where and how the gateway listens.
type listenPlan struct {
	addr   netip.AddrPort
	remote bool // the bind reaches beyond loopback
	pair   *tlspin.Pair
	// extraLoopback: the bind is one non-loopback address, so local
	// clients get their own listener on 127.0.0.1 at the same port.
	extraLoopback bool
	hosts         []string // Host header values accepted from remote peers
}

// planListen resolves --bind/--port against the config and decides TLS.
// A bind beyond loopback needs TLS (or the dangerous plaintext flag); the
// certificate is loaded, or created on first start, here.
func planListen(f gatewayFlags, g config.Gateway, p paths, log *slog.Logger) (*listenPlan, error) {
	port := config.DefaultPort
	if g.Port != 0 {
		port = g.Port
	}
	if f.port != 0 {
		port = f.port
	}
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("gateway: --port %d is out of range", port)
	}
	bind := g.Bind
	if f.bind != "" {
		bind = f.bind
	}
	var ip netip.Addr
	switch bind {
	case "", "loopback", "localhost":
		ip = netip.MustParseAddr("127.0.0.1")
	case "lan", "all":
		ip = netip.IPv4Unspecified()
	default:
		a, err := netip.ParseAddr(bind)
		if err != nil {
			return nil, fmt.Errorf("gateway: --bind %q is not \"loopback\" or an IP address (or \"lan\" for every interface)", bind)
		}
		ip = a
	}
	lp := &listenPlan{addr: netip.AddrPortFrom(ip, uint16(port)), remote: !ip.Unmap().IsLoopback()}
	t := f.tls
	if (t.certFile == "") != (t.keyFile == "") {
		return nil, errors.New("gateway: --tls-cert and --tls-key go together")
	}
	useTLS := t.on || t.certFile != ""
	if lp.remote && !useTLS && !t.plaintextLAN {
		return nil, fmt.Errorf("gateway: refusing to bind %s without TLS: a plaintext listener beyond loopback would expose the token "+
			"and every message to the network. Use --tls (clients then pin the certificate fingerprint that clawgate tls fingerprint prints), "+
			"the tailnet, or an SSH tunnel (ssh -N -L %d:127.0.0.1:%d host) with the default loopback bind. "+
			"--dangerously-allow-plaintext-lan overrides this refusal", bind, port, port)
	}
	if useTLS {
		pair, err := loadGatewayPair(t, p, ip, log)
		if err != nil {
			return nil, err
		}
		lp.pair = pair
	}
	if lp.remote {
		lp.extraLoopback = !ip.IsUnspecified()
		lp.hosts = remoteHosts(ip, lp.pair, g.AllowedHosts)
	}
	return lp, nil
}

// loadGatewayPair loads the user's pair, or the managed one (creating it
// on first start).
func loadGatewayPair(t tlsFlags, p paths, bind netip.Addr, log *slog.Logger) (*tlspin.Pair, error) {
	if t.certFile != "" {
		pair, err := tlspin.Load(t.certFile, t.keyFile)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		warnExpiry(pair, log)
		return pair, nil
	}
	if err := config.EnsureDir(p.tlsDir()); err != nil {
		return nil, err
	}
	pair, created, err := tlspin.LoadOrCreate(p.tlsCert(), p.tlsKey(), tlspin.Options{Hosts: certHosts(bind)})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if created {
		log.Info("created a self-signed TLS certificate; clients pin one of these fingerprints (clawgate tls fingerprint prints them)",
			"cert", p.tlsCert(), "sha256", pair.CertFingerprint().String(), "spki", pair.SPKIFingerprint().String())
	}
	warnExpiry(pair, log)
	return pair, nil
}

func warnExpiry(p *tlspin.Pair, log *slog.Logger) {
	if left := time.Until(p.Leaf.NotAfter); left < 30*24*time.Hour {
		log.Warn("the TLS certificate expires soon or has expired; unpinned clients will refuse it (re-issue: clawgate tls rotate)",
			"notAfter", p.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}

// certHosts are the names a new managed certificate carries.
func certHosts(bind netip.Addr) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		hosts = append(hosts, h)
	}
	if bind.IsValid() && !bind.IsUnspecified() && !bind.Unmap().IsLoopback() {
		hosts = append(hosts, bind.String())
	}
	return hosts
}

// remoteHosts are the Host header values accepted from remote peers: the
// bound address (or, for a wildcard bind, the host's addresses now), the
// host name, the certificate's names, and gateway.allowedHosts. A Host
// outside the list gets 403 (DNS-rebinding defense).
func remoteHosts(bind netip.Addr, pair *tlspin.Pair, allowed []string) []string {
	var hosts []string
	add := func(h string) {
		if h != "" {
			hosts = append(hosts, strings.ToLower(h))
		}
	}
	if bind.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if pfx, err := netip.ParsePrefix(a.String()); err == nil {
					add(pfx.Addr().WithZone("").String())
				}
			}
		}
	} else {
		add(bind.String())
	}
	if h, err := os.Hostname(); err == nil {
		add(h)
		if !strings.Contains(h, ".") {
			add(h + ".local")
		}
	}
	if pair != nil {
		for _, n := range pair.Leaf.DNSNames {
			add(n)
		}
		for _, ip := range pair.Leaf.IPAddresses {
			add(ip.String())
		}
	}
	for _, a := range allowed {
		add(a)
	}
	return hosts
}

// listen opens the planned sockets and tags each with how its peers
// arrive. Loopback peers stay local-eligible (authn decides), and every
// other peer is remote: authn.PathTLS over TLS, authn.PathUnknown (also
// remote) for the dangerous plaintext bind.
func (lp *listenPlan) listen() ([]gateway.Listener, error) {
	tcp, err := listenTCP(lp.addr)
	if err != nil {
		return nil, err
	}
	wrap := func(l net.Listener) net.Listener {
		if lp.pair == nil {
			return l
		}
		return tls.NewListener(l, tlspin.ServerConfig(lp.pair))
	}
	remotePath := authn.PathUnknown
	if lp.pair != nil {
		remotePath = authn.PathTLS
	}
	switch {
	case !lp.remote:
		return []gateway.Listener{{Listener: wrap(tcp), Path: authn.PathLoopback}}, nil
	case lp.extraLoopback:
		lo, err := listenTCP(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), lp.addr.Port()))
		if err != nil {
			tcp.Close()
			return nil, err
		}
		return []gateway.Listener{
			{Listener: wrap(lo), Path: authn.PathLoopback},
			{Listener: wrap(tcp), Path: remotePath, Hosts: lp.hosts},
		}, nil
	}
	local, remote := splitByLocality(tcp)
	return []gateway.Listener{
		{Listener: wrap(local), Path: authn.PathLoopback},
		{Listener: wrap(remote), Path: remotePath, Hosts: lp.hosts},
	}, nil
}

// listenTCP listens without TCP keep-alive probes on accepted sockets: the
// gateway's own tick and ping with a read deadline of two tick intervals
// already find dead peers, and leaving them off saves four setsockopt
// calls per accepted connection.
func listenTCP(addr netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr.String())
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("gateway: %s is already in use (another clawgate or OpenClaw gateway running?)", addr)
		}
		return nil, fmt.Errorf("gateway: listen: %w", err)
	}
	return ln, nil
}

// logListening reports the listeners, and the fingerprints to pin when
// serving TLS.
func (lp *listenPlan) logAttrs() []any {
	attrs := []any{"bind", lp.addr.String()}
	if lp.pair != nil {
		attrs = append(attrs, "tls", true, "sha256", lp.pair.CertFingerprint().String(), "spki", lp.pair.SPKIFingerprint().String())
	}
	if lp.remote && lp.pair == nil {
		attrs = append(attrs, "plaintextLAN", true)
	}
	return attrs
}

// splitByLocality routes each connection accepted on a wildcard socket by
// its kernel-reported addresses: when both ends are loopback IPs the peer
// is on this host and the connection goes to local; every other one goes
// to remote. Closing either half closes the socket.
func splitByLocality(ln net.Listener) (local, remote net.Listener) {
	s := &splitListener{ln: ln, done: make(chan struct{}), loopDone: make(chan struct{})}
	s.local = &splitHalf{s: s, ch: make(chan net.Conn)}
	s.remote = &splitHalf{s: s, ch: make(chan net.Conn)}
	go s.acceptLoop()
	return s.local, s.remote
}

type splitListener struct {
	ln            net.Listener
	local, remote *splitHalf
	once          sync.Once
	done          chan struct{} // closed by close
	loopDone      chan struct{} // closed when acceptLoop returns
}

type splitHalf struct {
	s  *splitListener
	ch chan net.Conn
}

func (h *splitHalf) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.s.done:
		return nil, net.ErrClosed
	}
}

func (h *splitHalf) Close() error   { return h.s.close() }
func (h *splitHalf) Addr() net.Addr { return h.s.ln.Addr() }

func (s *splitListener) close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.ln.Close()
	})
	<-s.loopDone
	return err
}

func (s *splitListener) acceptLoop() {
	defer close(s.loopDone)
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				s.once.Do(func() { close(s.done) })
				return
			}
			// Temporary (EMFILE and the like): back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-s.done:
				return
			}
			continue
		}
		backoff = 0
		half := s.remote
		if isLoopbackConn(c) {
			half = s.local
		}
		select {
		case half.ch <- c:
		case <-s.done:
			c.Close()
			return
		}
	}
}

// isLoopbackConn: both socket addresses parse as loopback IPs.
func isLoopbackConn(c net.Conn) bool {
	return loopbackAddr(c.LocalAddr()) && loopbackAddr(c.RemoteAddr())
}

func loopbackAddr(a net.Addr) bool {
	if a == nil {
		return false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

const tlsUsage = `usage: clawgate tls <command> [flags]

commands:
  fingerprint          print the gateway certificate's fingerprints (what clients pin)
  rotate [--new-key]   re-issue the managed certificate (same key: SPKI pins keep working;
                       --new-key: every pin breaks)

flags: --state-dir DIR  --json  (fingerprint also: --tls-cert FILE)
`

// runTLS is `clawgate tls`.
func runTLS(args []string, e env) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, tlsUsage)
		return exitError{err: errors.New("tls: no command"), silent: true}
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("tls "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	stateDir := fs.String("state-dir", "", "state directory")
	asJSON := fs.Bool("json", false, "print JSON")
	var certFile *string
	var newKey *bool
	switch sub {
	case "fingerprint":
		certFile = fs.String("tls-cert", "", "a certificate file instead of the managed one")
	case "rotate":
		newKey = fs.Bool("new-key", false, "generate a new key too (breaks every pin, SPKI pins included)")
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, tlsUsage)
		return nil
	default:
		fmt.Fprint(e.stderr, tlsUsage)
		return exitError{err: fmt.Errorf("tls: unknown command %q", sub), silent: false}
	}
	if err := fs.Parse(rest); err != nil {
		return exitError{err: err, silent: true}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("tls %s: unexpected argument %q", sub, fs.Arg(0))
	}
	p, err := resolvePaths(*stateDir, e)
	if err != nil {
		return err
	}
	var pair *tlspin.Pair
	switch sub {
	case "fingerprint":
		file := p.tlsCert()
		if *certFile != "" {
			file = *certFile
		}
		leaf, err := tlspin.ReadCertificate(file)
		if err != nil {
			return fmt.Errorf("tls fingerprint: %w (start the gateway once with --tls, or run clawgate tls rotate, to create it)", err)
		}
		pair = &tlspin.Pair{Leaf: leaf}
	case "rotate":
		if err := config.EnsureDir(p.stateDir); err != nil {
			return err
		}
		if err := config.EnsureDir(p.tlsDir()); err != nil {
			return err
		}
		mode := tlspin.KeepKey
		_, keyErr := os.Stat(p.tlsKey())
		if *newKey || errors.Is(keyErr, os.ErrNotExist) {
			mode = tlspin.NewKey
		}
		var opts tlspin.Options
		if _, err := os.Stat(p.tlsCert()); err != nil {
			opts.Hosts = certHosts(netip.Addr{}) // a first certificate; a re-issue keeps the old names
		}
		pair, err = tlspin.Rotate(p.tlsCert(), p.tlsKey(), mode, opts)
		if err != nil {
			return fmt.Errorf("tls rotate: %w", err)
		}
		defer fmt.Fprintln(e.stderr, "clawgate: restart the gateway to serve the new certificate")
	}
	return printFingerprints(e, pair, *asJSON)
}

func printFingerprints(e env, p *tlspin.Pair, asJSON bool) error {
	cert, spki := p.CertFingerprint(), p.SPKIFingerprint()
	if asJSON {
		out, _ := json.MarshalIndent(map[string]any{
			"sha256": cert.String(), "spki": spki.String(), "tlsFingerprint": cert.Hex(),
			"notAfter": p.Leaf.NotAfter.UTC().Format(time.RFC3339),
		}, "", "  ")
		fmt.Fprintln(e.stdout, string(out))
		return nil
	}
	fmt.Fprintf(e.stdout, "certificate  %s\nkey (SPKI)   %s\nexpires      %s\n\n", cert, spki, p.Leaf.NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(e.stdout, "clawgate call --url wss://HOST:PORT --tls-fingerprint %s health\n", spki)
	fmt.Fprintf(e.stdout, "OpenClaw clients: tlsFingerprint %s\n", cert.Hex())
	return nil
}

// callTLSFlags are the client-side transport flags of `clawgate call`.
type callTLSFlags struct {
	fingerprint string
	plaintext   bool
}

func (t *callTLSFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.fingerprint, "tls-fingerprint", "",
		"pin the gateway's certificate (wss:// only): sha256:HEX of the certificate or spki-sha256:HEX of its key; comma-separated to pin several")
	fs.BoolVar(&t.plaintext, "dangerously-allow-plaintext", false,
		"DANGEROUS: allow ws:// to a host that is not a loopback IP address; the token crosses the network in the clear")
}

// pinSource says where the pin of a dial came from, for error hints.
type pinSource int

const (
	pinNone  pinSource = iota
	pinFlag            // --tls-fingerprint
	pinLocal           // this machine's own gateway certificate (loopback URL)
	pinKnown           // known_gateways.json (trusted on first use)
)

// dialSecure dials with the transport policy of the CLI: an explicit pin,
// else this machine's own certificate for a loopback wss:// URL, else a pin
// remembered in known_gateways.json. An unknown certificate is trusted on
// first use only after an interactive yes, with the fingerprints shown. A
// stored device token never goes over forced plaintext. It returns the
// client and the URL that answered.
func dialSecure(ctx context.Context, opts client.Options, f callFlags, p paths, ids *client.IdentityStore, e env) (*client.Client, string, error) {
	opts.TLSFingerprint = f.tls.fingerprint
	opts.AllowInsecurePlaintext = f.tls.plaintext
	hp, host, scheme := urlParts(opts.URL)
	src := pinNone
	if opts.TLSFingerprint != "" {
		src = pinFlag
	}
	known, err := loadKnownGateways(p.knownGWs())
	if err != nil {
		return nil, "", err
	}
	if src == pinNone && scheme == "wss" {
		if client.IsLoopbackHost(host) {
			if pin := localPin(p); pin != "" {
				opts.TLSFingerprint, src = pin, pinLocal
			}
		}
		if src == pinNone && known[hp] != "" {
			opts.TLSFingerprint, src = known[hp], pinKnown
		}
	}
	if !client.TrustedTransport(opts.URL) {
		opts.DeviceToken = "" // a device token is never sent in the clear off this host
	}
	c, err := client.Dial(ctx, opts)
	if err == nil {
		return c, opts.URL, nil
	}
	var rerr *client.RemoteError
	switch {
	case errors.Is(err, tlspin.ErrCertificateChanged):
		switch src {
		case pinKnown:
			return nil, "", fmt.Errorf("%w\nclawgate: %s was trusted earlier (%s). If its key was rotated on purpose, check the new "+
				"fingerprint on the gateway host (clawgate tls fingerprint) and pass it with --tls-fingerprint, or remove the %q entry",
				err, hp, p.knownGWs(), hp)
		case pinLocal:
			return nil, "", fmt.Errorf("%w\nclawgate: the gateway on %s does not serve this machine's certificate (%s); "+
				"if it serves --tls-cert, pass that certificate's fingerprint with --tls-fingerprint", err, hp, p.tlsCert())
		}
		return nil, "", err
	case errors.Is(err, tlspin.ErrUnknownCertificate):
		var ve *tlspin.VerifyError
		if !errors.As(err, &ve) || !interactive() {
			return nil, "", fmt.Errorf("%w\nclawgate: check the fingerprint on the gateway host (clawgate tls fingerprint) and pass it with --tls-fingerprint", err)
		}
		if !askTrust(e, os.Stdin, hp, ve.Presented) {
			return nil, "", err
		}
		pin := ve.Presented.SPKI.String()
		if err := saveKnownGateway(p.knownGWs(), hp, pin); err != nil {
			return nil, "", err
		}
		opts.TLSFingerprint = pin
		c, err := client.Dial(ctx, opts)
		return c, opts.URL, err
	case f.url == "" && !errors.As(err, &rerr) && localPin(p) != "":
		// The default ws:// URL did not answer as a WebSocket; this
		// machine has a gateway certificate, so the gateway may be serving
		// TLS on the same port.
		alt := opts
		alt.URL = "wss://" + hp
		alt.TLSFingerprint = localPin(p)
		alt.DeviceToken = ids.DeviceToken(alt.URL, protocol.RoleOperator)
		if c, err2 := client.Dial(ctx, alt); err2 == nil {
			return c, alt.URL, nil
		}
	}
	return nil, "", err
}

// urlParts returns host:port (default port 18789, 443 for wss without
// one), the bare host and the scheme of a gateway URL.
func urlParts(raw string) (hostPort, host, scheme string) {
	u, err := url.Parse(raw)
	if err != nil {
		return raw, "", ""
	}
	port := u.Port()
	if port == "" {
		port = strconv.Itoa(config.DefaultPort)
	}
	return net.JoinHostPort(u.Hostname(), port), u.Hostname(), u.Scheme
}

// localPin is the SPKI pin of this machine's managed gateway certificate,
// or "" when there is none. Reading it is local trust, like reading the
// token file.
func localPin(p paths) string {
	leaf, err := tlspin.ReadCertificate(p.tlsCert())
	if err != nil {
		return ""
	}
	return tlspin.SPKIFingerprint(leaf).String()
}

// interactive reports whether stdin and stderr are terminals (a human
// can see the fingerprint and answer).
func interactive() bool {
	return term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stderr.Fd()))
}

// askTrust shows the presented fingerprints and asks, SSH-style.
func askTrust(e env, in io.Reader, hostPort string, p tlspin.Presented) bool {
	fmt.Fprintf(e.stderr, "The authenticity of gateway %s can't be established.\n"+
		"  certificate  %s\n  key (SPKI)   %s\n"+
		"Compare with `clawgate tls fingerprint` on the gateway host.\n"+
		"Trust this key and remember it (yes/no)? ", hostPort, p.Cert, p.SPKI)
	line, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	fmt.Fprintln(e.stderr, "not trusted")
	return false
}

// knownGatewaysFile is known_gateways.json: pins trusted on first use.
type knownGatewaysFile struct {
	Version  int               `json:"version"`
	Gateways map[string]string `json:"gateways"` // host:port → pin
}

func loadKnownGateways(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known gateways: %w", err)
	}
	var f knownGatewaysFile
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || f.Version != 1 {
		return nil, fmt.Errorf("known gateways: %s is not a version 1 file (%v); fix or remove it", path, err)
	}
	for hp, pin := range f.Gateways {
		if _, err := tlspin.ParsePins(pin); err != nil {
			return nil, fmt.Errorf("known gateways: %s: entry %q: %w", path, hp, err)
		}
	}
	if f.Gateways == nil {
		f.Gateways = map[string]string{}
	}
	return f.Gateways, nil
}

func saveKnownGateway(path, hostPort, pin string) error {
	m, err := loadKnownGateways(path)
	if err != nil {
		return err
	}
	m[hostPort] = pin
	data, _ := json.MarshalIndent(knownGatewaysFile{Version: 1, Gateways: m}, "", "  ")
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".known_gateways.tmp-*")
	if err != nil {
		return fmt.Errorf("known gateways: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("known gateways: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("known gateways: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("known gateways: %w", err)
	}
	return nil
}

// healthCheck probes /healthz as a local client would: on loopback at the
// gateway's port, over TLS pinned to the served certificate when TLS is
// on (a plain http:// probe would fail against a TLS port).
func (lp *listenPlan) healthCheck() func(context.Context) error {
	host := "127.0.0.1"
	if lp.addr.Addr().Unmap().IsLoopback() {
		host = lp.addr.Addr().Unmap().String()
	}
	hp := net.JoinHostPort(host, strconv.Itoa(int(lp.addr.Port())))
	if lp.pair == nil {
		return healthCheck("http://" + hp + "/healthz")
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true,
		TLSClientConfig: tlspin.ClientConfig(tlspin.ClientOptions{Pins: []tlspin.Fingerprint{lp.pair.SPKIFingerprint()}})}
	c := &http.Client{Transport: tr}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+hp+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New("healthz: " + resp.Status)
		}
		return nil
	}
}
