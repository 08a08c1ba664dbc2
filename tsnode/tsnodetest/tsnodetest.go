// Package tsnodetest runs a whole tailnet inside a test process: the
// in-process control server and DERP/STUN relay from
// tailscale.com/tstest/integration, on loopback only, and real tsnet peer
// nodes ("phones") that dial the gateway through it. It also changes what
// the control server says about nodes (owner, sharing, key expiry,
// removal) so tests can exercise the gateway's trust decisions.
//
// Only tests import it. Like tsnode, it is an allowed importer of
// tailscale.com; test code elsewhere uses it without touching tailscale
// types.
package tsnodetest

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/client/local"
	"tailscale.com/envknob"
	"tailscale.com/net/netns"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
	"tailscale.com/tstest/integration"
	"tailscale.com/tstest/integration/testcontrol"
)

// MagicDNSDomain is the tailnet's MagicDNS suffix.
const MagicDNSDomain = "tail-scale.ts.net"

// offlineKnobs keep every tailscale component on loopback even when the
// test runs outside the loopback-only namespace: no log upload, no
// NAT-PMP/PCP/UPnP probing of a LAN router, no LAN addresses advertised,
// and a panic should anything reach Tailscale's production control.
// envknob reads some of these at package init, so they are set through
// envknob (which updates the registered values) and only when the
// environment does not set them already. Once per process, before any node
// starts.
var knobsOnce sync.Once

func offlineKnobs() {
	knobsOnce.Do(func() {
		for k, v := range map[string]string{
			"TS_NO_LOGS_NO_SUPPORT":        "true",
			"TS_DISABLE_PORTMAPPER":        "1",
			"TS_DISABLE_UPNP":              "1",
			"TS_DEBUG_OMIT_LOCAL_ADDRS":    "1",
			"TS_PANIC_IF_HIT_MAIN_CONTROL": "1",
		} {
			if os.Getenv(k) == "" {
				envknob.Setenv(k, v)
			}
		}
		// As tailscale's own tests do: no SO_MARK/bind-to-interface
		// (needs privileges the test may not have).
		netns.SetEnabled(false)
	})
}

// OfflineEnv is the environment a non-test clawgate binary needs to join
// the test tailnet from inside the loopback-only namespace: the same
// knobs, plus "assume the network is up" (there is no default route).
func OfflineEnv() []string {
	return []string{
		"TS_NO_LOGS_NO_SUPPORT=true", "TS_DISABLE_PORTMAPPER=1", "TS_DISABLE_UPNP=1",
		"TS_DEBUG_OMIT_LOCAL_ADDRS=1", "TS_PANIC_IF_HIT_MAIN_CONTROL=1", "TS_ASSUME_NETWORK_UP_FOR_TEST=1",
	}
}

// Tailnet is one in-process tailnet.
type Tailnet struct {
	t       testing.TB
	control *testcontrol.Server
	url     string
	logf    func(string, ...any)
	// requireAuth: peers complete their interactive login automatically.
	requireAuth bool
	// registrationClosed refuses every registration (see ExpireKey).
	registrationClosed atomic.Bool
}

// Options configure New.
type Options struct {
	// RequireAuthKey makes the control server refuse nodes that do not
	// present this auth key.
	RequireAuthKey string
	// RequireAuth makes registration interactive: nodes get a login URL
	// that CompleteLogin finishes (peers from NewPeer finish theirs
	// themselves).
	RequireAuth bool
}

// New starts a control server and a DERP/STUN relay on 127.0.0.1 for the
// test's lifetime. Set CLAWGATE_TSNET_VERBOSE=1 to see their logs.
func New(t testing.TB, opts Options) *Tailnet {
	t.Helper()
	offlineKnobs()
	logf := quietLogf(t)
	derpMap := integration.RunDERPAndSTUN(t, logf, "127.0.0.1")
	control := &testcontrol.Server{
		DERPMap:        derpMap, // nil would mean Tailscale's production DERP map
		DNSConfig:      &tailcfg.DNSConfig{Proxied: true},
		MagicDNSDomain: MagicDNSDomain,
		TagOwners:      map[string][]string{}, // non-nil: requested tags are applied
		RequireAuthKey: opts.RequireAuthKey,
		RequireAuth:    opts.RequireAuth,
		AllOnline:      true,
		Logf:           logf,
	}
	tn := &Tailnet{t: t, control: control, logf: logf, requireAuth: opts.RequireAuth}
	control.MaybeRateLimitRegister = func() (bool, string, string) {
		if tn.registrationClosed.Load() {
			return true, "3600", "registration closed by the test"
		}
		return false, "", ""
	}
	control.HTTPTestServer = httptest.NewUnstartedServer(control)
	control.HTTPTestServer.Start()
	t.Cleanup(control.HTTPTestServer.Close)
	tn.url = control.HTTPTestServer.URL
	return tn
}

// quietLogf discards tailscale's logs unless CLAWGATE_TSNET_VERBOSE is
// set, and never logs to t after the test has finished.
func quietLogf(t testing.TB) func(string, ...any) {
	if os.Getenv("CLAWGATE_TSNET_VERBOSE") == "" {
		return func(string, ...any) {}
	}
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf(format, args...)
		}
	}
}

// ControlURL is the coordination server URL to give a node.
func (tn *Tailnet) ControlURL() string { return tn.url }

// Logf is the harness's logger (quiet unless CLAWGATE_TSNET_VERBOSE).
func (tn *Tailnet) Logf(format string, args ...any) { tn.logf(format, args...) }

// Peer is a tsnet node that plays a client device.
type Peer struct {
	tn  *Tailnet
	srv *tsnet.Server
	lc  *local.Client
	// ID is the node's stable ID; Name its MagicDNS FQDN; IP its IPv4
	// tailnet address; Login its owner's login as registered.
	ID    string
	Name  string
	IP    netip.Addr
	IP6   netip.Addr
	Login string
}

// PeerOptions configure NewPeer.
type PeerOptions struct {
	Hostname string
	Tags     []string // e.g. "tag:ci"; applied at registration
	AuthKey  string
}

// NewPeer starts a node and waits until it is on the tailnet. It is
// closed when the test ends.
func (tn *Tailnet) NewPeer(t testing.TB, opts PeerOptions) *Peer {
	t.Helper()
	return tn.NewPeers(t, opts)[0]
}

// NewPeers starts several peers concurrently and waits for all of them.
func (tn *Tailnet) NewPeers(t testing.TB, opts ...PeerOptions) []*Peer {
	t.Helper()
	out := make([]*Peer, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		wg.Go(func() { out[i], errs[i] = tn.startPeer(t, o) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("tsnodetest: peer %s: %v", opts[i].Hostname, err)
		}
	}
	return out
}

func (tn *Tailnet) startPeer(t testing.TB, opts PeerOptions) (*Peer, error) {
	srv := &tsnet.Server{
		Dir: t.TempDir(), Hostname: opts.Hostname, ControlURL: tn.url, Ephemeral: true,
		AdvertiseTags: opts.Tags, AuthKey: opts.AuthKey, UserLogf: tn.logf, Logf: tn.logf,
	}
	t.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lc, err := srv.LocalClient() // starts the node
	if err != nil {
		return nil, err
	}
	if tn.requireAuth {
		// Peers are not under test here: log them in like a user would.
		go func() {
			for ctx.Err() == nil {
				if st, err := lc.StatusWithoutPeers(ctx); err == nil && st.AuthURL != "" {
					tn.control.CompleteAuth(st.AuthURL)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	st, err := srv.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	p := &Peer{tn: tn, srv: srv, lc: lc, ID: string(st.Self.ID), Name: trimDot(st.Self.DNSName)}
	p.IP, p.IP6 = srv.TailscaleIPs()
	if u, ok := st.User[st.Self.UserID]; ok {
		p.Login = u.LoginName
	}
	return p, nil
}

func trimDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

// Dial opens a connection over the tailnet from this peer.
func (p *Peer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return p.srv.Dial(ctx, network, addr)
}

// WaitReach waits until this peer reaches ip over the tailnet (a TSMP
// ping answered, so both netmaps know each other and the WireGuard
// session is up); without it a first dial can stall for wireguard-go's
// 5 s rekey timeout.
func (p *Peer) WaitReach(t testing.TB, ip netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := p.lc.Ping(ctx, ip, tailcfg.PingTSMP)
		cancel()
		if err == nil {
			return
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("tsnodetest: %s cannot reach %s: %v", p.Name, ip, last)
}

// Close takes the peer off the tailnet.
func (p *Peer) Close() error { return p.srv.Close() }

// node returns the control server's record of the node with stable ID id.
func (tn *Tailnet) node(id string) *tailcfg.Node {
	tn.t.Helper()
	for _, n := range tn.control.AllNodes() {
		if string(n.StableID) == id {
			return n
		}
	}
	tn.t.Fatalf("tsnodetest: no node %s in the control server", id)
	return nil
}

// NodeIDByName returns the stable ID of the node registered with hostname.
func (tn *Tailnet) NodeIDByName(hostname string) string {
	tn.t.Helper()
	for _, n := range tn.control.AllNodes() {
		if n.Hostinfo.Valid() && n.Hostinfo.Hostname() == hostname {
			return string(n.StableID)
		}
	}
	tn.t.Fatalf("tsnodetest: no node named %s", hostname)
	return ""
}

// SetOwner makes node id belong to the user that owns node ownerID (as
// if the same person had logged in on both). Every peer is told.
func (tn *Tailnet) SetOwner(id, ownerID string) {
	n := tn.node(id)
	n.User = tn.node(ownerID).User
	tn.control.UpdateNode(n)
}

// ShareIn marks node id as shared into this tailnet by a user of another
// tailnet (tailcfg.Node.Sharer), which is how production control presents
// a shared-in device.
func (tn *Tailnet) ShareIn(id string) {
	n := tn.node(id)
	n.Sharer = tailcfg.UserID(9001)
	tn.control.UpdateNode(n)
}

// MarkSharee flags node id as a sharee's device (Hostinfo.ShareeNode).
// testcontrol overwrites Hostinfo on the node's next map update, so
// callers re-apply it while polling.
func (tn *Tailnet) MarkSharee(id string) {
	n := tn.node(id)
	if !n.Hostinfo.Valid() {
		return
	}
	hi := n.Hostinfo.AsStruct()
	hi.ShareeNode = true
	n.Hostinfo = hi.View()
	tn.control.UpdateNode(n)
}

// ExpireKey expires node id's key the way production control reports it
// to peers: KeyExpiry in the past and Expired set. (Clients also flag
// expiry themselves from KeyExpiry, but only against control's clock,
// which testcontrol pins to 2020, before the clients' own cut-off.)
//
// It also closes registration for the rest of the test: testcontrol would
// let the expired node re-register with a rotated key and no login, which
// production control does not, and the node would come back.
func (tn *Tailnet) ExpireKey(id string) {
	tn.registrationClosed.Store(true)
	n := tn.node(id)
	n.KeyExpiry = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	n.Expired = true
	tn.control.UpdateNode(n)
}

// RemoveFrom tells observer that peer removed left the tailnet (a
// MapResponse with PeersRemoved, as control sends when a node is deleted).
// testcontrol then stops sending observer automatic netmap updates, so do
// this last in a test.
func (tn *Tailnet) RemoveFrom(observerID, removedID string) {
	tn.t.Helper()
	obs, gone := tn.node(observerID), tn.node(removedID)
	if !tn.control.AddRawMapResponse(obs.Key, &tailcfg.MapResponse{PeersRemoved: []tailcfg.NodeID{gone.ID}}) {
		tn.t.Fatalf("tsnodetest: observer %s has no map stream", observerID)
	}
}

// CompleteLogin finishes an interactive login URL (RequireAuth).
func (tn *Tailnet) CompleteLogin(url string) bool { return tn.control.CompleteAuth(url) }

// Tags returns the tags the control server gave node id.
func (tn *Tailnet) Tags(id string) []string { return slices.Clone(tn.node(id).Tags) }
