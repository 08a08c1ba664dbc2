package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/tsnode"
)

// tailnetFlags: the switch for the tailnet listener; its settings live in
// the config file's "tailnet" section.
type tailnetFlags struct {
	enable bool
}

func (f *tailnetFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.enable, "tailnet", false, `also serve on the tailnet with tsnet (settings: the config file's "tailnet" section)`)
}

// tailnet is the gateway's tsnet node, its listener and its trust policy.
type tailnet struct {
	node   *tsnode.Node
	policy tsnode.Policy
	port   int
	srv    *gateway.Server
	log    *slog.Logger
	ln     gateway.Listener
}

// startTailnet joins the tailnet when --tailnet or the config enables it;
// otherwise it starts nothing and returns nil (every method of a nil
// *tailnet is a no-op). The node comes up in the background: the gateway
// serves loopback at once, and the tailnet listener accepts as soon as the
// node runs (after interactive login if there is no auth key).
func startTailnet(f tailnetFlags, cfg config.Tailnet, gatewayAddr net.Addr, p paths, e env, srv *gateway.Server, log *slog.Logger) (*tailnet, error) {
	if !f.enable && !cfg.Enabled {
		return nil, nil
	}
	log = log.With("component", "tailnet")
	t := &tailnet{srv: srv, log: log, port: cfg.Port,
		policy: tsnode.Policy{AllowedLogins: cfg.AllowedLogins, AllowedTags: cfg.AllowedTags}}
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
	node, err := tsnode.New(tsnode.Options{
		Dir: dir, Hostname: cfg.Hostname, AuthKey: key, ControlURL: cfg.ControlURL,
		Ephemeral: cfg.Ephemeral, AdvertiseTags: cfg.AdvertiseTags, UploadLogs: cfg.UploadLogs,
		Logger: log, BackendLogs: log.Enabled(context.Background(), slog.LevelDebug),
		PeerGone: t.peerGone,
	})
	if err != nil {
		return nil, err
	}
	t.node = node
	if err := srv.AddStatusSection("tailnet", t.status); err != nil {
		return nil, err
	}
	if err := node.Start(); err != nil {
		_ = node.Close()
		return nil, err
	}
	ln, err := node.Listen(t.port)
	if err != nil {
		_ = node.Close()
		return nil, err
	}
	t.ln = gateway.Listener{Listener: ln, Path: authn.PathTailnet, HostsFunc: node.Hosts, Identify: t.identify}
	allowed := "the login that owns the gateway node"
	if len(cfg.AllowedLogins) > 0 {
		allowed = strings.Join(cfg.AllowedLogins, ",")
	}
	log.Info("tailnet listener starting", "port", t.port, "authKey", keySource,
		"autoApproveLogins", allowed, "autoApproveTags", strings.Join(cfg.AllowedTags, ","))
	return t, nil
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

// listeners returns the tailnet listener to serve beside the others.
func (t *tailnet) listeners() []gateway.Listener {
	if t == nil {
		return nil
	}
	return []gateway.Listener{t.ln}
}

// close stops the node (after Serve has closed its listener).
func (t *tailnet) close() {
	if t == nil || t.node == nil {
		return
	}
	if err := t.node.Close(); err != nil {
		t.log.Debug("tailnet node close", "err", err)
	}
}

// identify is the listener's Identify: WhoIs, then the trust policy. The
// gateway treats an error as an unidentified, remote peer.
func (t *tailnet) identify(ctx context.Context, remoteAddr string) (*gateway.PeerIdentity, error) {
	id, v, err := t.node.Identify(ctx, remoteAddr, t.policy)
	if err != nil {
		return nil, err
	}
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
	// Admin only: whoever opens the login URL decides which tailnet the
	// gateway joins.
	LoginURL   string `json:"loginURL,omitempty"`
	OwnerLogin string `json:"ownerLogin,omitempty"`
	Error      string `json:"error,omitempty"`
}

func (t *tailnet) status(admin bool) any {
	st := t.node.Status()
	out := tailnetStatus{State: st.State, Hostname: st.Hostname, DNSName: st.DNSName, Port: t.port,
		Tailnet: st.Tailnet, Peers: st.Peers, IPs: []string{}}
	for _, ip := range st.IPs {
		out.IPs = append(out.IPs, ip.String())
	}
	if admin {
		out.LoginURL, out.OwnerLogin, out.Error = st.LoginURL, st.OwnerLogin, st.Error
	}
	return out
}
