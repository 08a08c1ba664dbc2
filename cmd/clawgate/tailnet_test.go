package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/ipc"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/store/bolt"
	"github.com/clawgate/clawgate/tsnode/tsipc"
	"github.com/clawgate/clawgate/tsnode/tsnodetest"
)

const tailnetTestToken = "tailnet-test-token-0123456789abcdef0123456"

// tnBuffer collects log output from several goroutines.
type tnBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *tnBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *tnBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tailnetGateway is a real gateway.Server with pairing over bbolt, a
// loopback listener, and the tailnet listener wired exactly as
// runGateway wires it (startTailnet), on an in-process tailnet.
type tailnetGateway struct {
	srv      *gateway.Server
	tl       *tailnet
	loopback string // ws://127.0.0.1:port
	port     int
	ip       netip.Addr // tailnet IPv4
	dnsName  string
	nodeID   string
	owner    string // login that owns the gateway node
	logs     *tnBuffer
}

func startTailnetGateway(t testing.TB, tn *tsnodetest.Tailnet, cfg config.Tailnet) *tailnetGateway {
	t.Helper()
	return launchTailnetGateway(t, tn, cfg, false)
}

// launchTailnetGateway starts the gateway; with noWait it returns before
// the tailnet node is up (call waitReady).
func launchTailnetGateway(t testing.TB, tn *tsnodetest.Tailnet, cfg config.Tailnet, noWait bool) *tailnetGateway {
	t.Helper()
	state := filepath.Join(t.TempDir(), "state")
	if err := config.EnsureDir(state); err != nil {
		t.Fatal(err)
	}
	logs := &tnBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	db, err := bolt.Open(filepath.Join(state, "clawgate.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := pairing.New(db, pairing.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := authn.NewSharedSecret(tailnetTestToken)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(gateway.Options{Version: "test", Token: secret, Logger: log, Pairing: pm,
		Backup: db.BackupFile, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.ControlURL = tn.ControlURL()
	if cfg.Hostname == "" {
		cfg.Hostname = "gw"
	}
	cfg.Ephemeral = true
	e := env{stdout: logs, stderr: logs, getenv: func(string) string { return "" }}
	tl, err := startTailnet(tailnetFlags{enable: true}, cfg, ln.Addr(), paths{stateDir: state}, e, srv, log)
	if err != nil || tl == nil {
		t.Fatalf("startTailnet: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	lns := append([]gateway.Listener{{Listener: ln, Path: authn.PathLoopback}}, tl.listeners()...)
	go func() { done <- srv.Serve(ctx, lns...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Serve did not return")
		}
		tl.close()
		pm.Close()
		db.Close()
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	g := &tailnetGateway{srv: srv, tl: tl, loopback: "ws://" + ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port, logs: logs}
	if !noWait {
		g.waitReady(t)
	}
	return g
}

// waitReady waits until the helper reports the gateway's node running
// and records its names.
func (g *tailnetGateway) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	st := g.tl.nodeStatus()
	for !st.Running() {
		if time.Now().After(deadline) {
			t.Fatalf("tailnet node not running: %+v\n%s", st, g.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
		st = g.tl.nodeStatus()
	}
	g.dnsName, g.nodeID, g.owner = st.DNSName, st.NodeID, st.OwnerLogin
	for _, ip := range st.IPs {
		if ip.Is4() {
			g.ip = ip
		}
	}
}

// tailnetURL is the gateway's URL on the tailnet by name.
func (g *tailnetGateway) tailnetURL() string {
	return "ws://" + net.JoinHostPort(g.dnsName, strconv.Itoa(g.port))
}

// ipURL is the gateway's URL on the tailnet by IPv4 address.
func (g *tailnetGateway) ipURL() string {
	return "ws://" + netip.AddrPortFrom(g.ip, uint16(g.port)).String()
}

// tnDevice is one client device: a key pair, dialing from a tailnet peer
// (nil: from loopback).
type tnDevice struct {
	id   *client.Identity
	peer *tsnodetest.Peer
}

func newTnDevice(t testing.TB, peer *tsnodetest.Peer) *tnDevice {
	t.Helper()
	id, err := client.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return &tnDevice{id: id, peer: peer}
}

// dialToken connects with the given shared token.
func (d *tnDevice) dialToken(url, token string, scopes ...string) (*client.Client, error) {
	return d.dialOpts(client.Options{URL: url, Token: token, Scopes: scopes})
}

// dial connects the device to url with the shared token (or a device
// token when devToken is set), asking for scopes.
func (d *tnDevice) dial(url, devToken string, header http.Header, scopes ...string) (*client.Client, error) {
	opts := client.Options{URL: url, Scopes: scopes, Header: header}
	if devToken != "" {
		opts.DeviceToken = devToken
	} else {
		opts.Token = tailnetTestToken
	}
	return d.dialOpts(opts)
}

func (d *tnDevice) dialOpts(opts client.Options) (*client.Client, error) {
	opts.Identity, opts.DisplayName = d.id, "test device"
	if d.peer != nil {
		opts.AllowInsecurePlaintext = true // WireGuard encrypts the tailnet hop
		opts.Dialer = &websocket.Dialer{NetDialContext: d.peer.Dial, HandshakeTimeout: 20 * time.Second}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return client.Dial(ctx, opts)
}

func tnDetail(err error) (code, requestID string) {
	var re *client.RemoteError
	if !errors.As(err, &re) {
		return "", ""
	}
	if m, ok := re.Details.(map[string]any); ok {
		requestID, _ = m["requestId"].(string)
	}
	return re.DetailCode(), requestID
}

func tnCall(t testing.TB, c *client.Client, method string, params any) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Call(ctx, method, params)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return res
}

// waitWhoIs polls the gateway node's WhoIs (through the helper) for peer
// until ok accepts it.
func (g *tailnetGateway) waitWhoIs(t testing.TB, p *tsnodetest.Peer, what string, ok func(login string, sharedIn bool) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var res tsipc.Identified
		err := g.tl.call(ctx, tsipc.MethodIdentify, tsipc.Identify{Remote: netip.AddrPortFrom(p.IP, 1).String()}, &res)
		id := res.Identity
		cancel()
		if err == nil && ok(id.UserLogin, id.SharedIn) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: WhoIs(%s) = %+v, %v", what, p.Name, id, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestTailnetGateway is the end-to-end run: a real gateway with a tsnet
// listener and real tsnet peers on an in-process tailnet.
func TestTailnetGateway(t *testing.T) {
	tn := tsnodetest.New(t, tsnodetest.Options{})
	g := startTailnetGateway(t, tn, config.Tailnet{})
	peers := tn.NewPeers(t,
		tsnodetest.PeerOptions{Hostname: "phone"},
		tsnodetest.PeerOptions{Hostname: "laptop"},
		tsnodetest.PeerOptions{Hostname: "guest"},
		tsnodetest.PeerOptions{Hostname: "ci", Tags: []string{"tag:ci"}},
		tsnodetest.PeerOptions{Hostname: "mallory"},
	)
	phone, laptop, guest, ci, mallory := peers[0], peers[1], peers[2], peers[3], peers[4]
	tn.SetOwner(phone.ID, g.nodeID) // the gateway owner's own phone
	tn.ShareIn(guest.ID)            // a device shared in from another tailnet
	g.waitWhoIs(t, phone, "phone owned by the gateway's owner", func(l string, _ bool) bool { return l == g.owner })
	g.waitWhoIs(t, guest, "guest shared in", func(_ string, s bool) bool { return s })
	for _, p := range peers {
		p.WaitReach(t, g.ip)
	}
	admin := newTnDevice(t, nil)
	adminC, err := admin.dial(g.loopback, "", nil, protocol.ScopeAdmin, protocol.ScopeRead, protocol.ScopePairing)
	if err != nil {
		t.Fatalf("local admin: %v", err)
	}
	defer adminC.Close()

	// Same user's phone: paired silently (signed challenge, no approval),
	// then health over the tailnet, reached by MagicDNS name.
	phoneDev := newTnDevice(t, phone)
	phoneC, err := phoneDev.dial(g.tailnetURL(), "", nil, protocol.ScopeRead, protocol.ScopeWrite)
	if err != nil {
		t.Fatalf("owner's phone over the tailnet: %v", err)
	}
	defer phoneC.Close()
	if phoneC.Hello().Auth.DeviceToken == "" {
		t.Fatal("silently paired phone got no device token")
	}
	var health protocol.HealthSummary
	if err := json.Unmarshal(tnCall(t, phoneC, "health", nil), &health); err != nil || !health.OK {
		t.Fatalf("health over the tailnet: %+v, %v", health, err)
	}
	// The device token works alone on the next connect.
	again, err := phoneDev.dial(g.ipURL(), phoneC.Hello().Auth.DeviceToken, nil, protocol.ScopeRead)
	if err != nil {
		t.Fatalf("phone reconnect with its device token: %v", err)
	}
	again.Close()

	// Another user of the same tailnet: pairing required, then connects
	// after device.pair.approve.
	laptopDev := newTnDevice(t, laptop)
	_, err = laptopDev.dial(g.ipURL(), "", nil, protocol.ScopeRead)
	code, reqID := tnDetail(err)
	if code != protocol.DetailPairingRequired || reqID == "" {
		t.Fatalf("other user's laptop: %v (detail %q, request %q), want PAIRING_REQUIRED with a request id", err, code, reqID)
	}
	tnCall(t, adminC, "device.pair.approve", map[string]any{"requestId": reqID})
	laptopC, err := laptopDev.dial(g.ipURL(), "", nil, protocol.ScopeRead)
	if err != nil {
		t.Fatalf("laptop after approval: %v", err)
	}
	defer laptopC.Close()
	tnCall(t, laptopC, "health", nil)

	// Shared-in and tagged nodes are never auto-approved.
	for _, p := range []*tsnodetest.Peer{guest, ci} {
		_, err := newTnDevice(t, p).dial(g.ipURL(), "", nil, protocol.ScopeRead)
		if code, _ := tnDetail(err); code != protocol.DetailPairingRequired {
			t.Errorf("%s: %v (detail %q), want PAIRING_REQUIRED", p.Name, err, code)
		}
	}

	// E1: forged identity headers change nothing. Mallory (another user)
	// claims to be the owner, local, and proxied: still pairing.
	forged := http.Header{
		"Tailscale-User-Login":   {g.owner},
		"Tailscale-User-Name":    {"Owner"},
		"Tailscale-Headers-Info": {"https://tailscale.com/s/serve-headers"},
		"X-Forwarded-For":        {"127.0.0.1"},
		"X-Forwarded-User":       {g.owner},
		"X-Real-Ip":              {"127.0.0.1"},
	}
	_, err = newTnDevice(t, mallory).dial(g.ipURL(), "", forged, protocol.ScopeRead, protocol.ScopeAdmin)
	if code, _ := tnDetail(err); code != protocol.DetailPairingRequired {
		t.Fatalf("mallory with forged headers: %v (detail %q), want PAIRING_REQUIRED", err, code)
	}
	// ...and the owner's second device claiming to be someone else is
	// still the owner's (identity comes from WhoIs, not headers).
	tab, err := newTnDevice(t, phone).dial(g.tailnetURL(), "", http.Header{"Tailscale-User-Login": {mallory.Login}}, protocol.ScopeRead)
	if err != nil {
		t.Fatalf("owner's second device with a forged Tailscale-User-Login: %v", err)
	}
	tab.Close()

	// E2: identity headers on the loopback listener are anonymous: no
	// token, no entry.
	noTok := client.Options{URL: g.loopback, Header: http.Header{"Tailscale-User-Login": {g.owner}, "Tailscale-User-Name": {"Owner"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = client.Dial(ctx, noTok)
	cancel()
	if code, _ := tnDetail(err); code != protocol.DetailAuthTokenMissing {
		t.Fatalf("loopback with Tailscale headers and no token: %v (detail %q), want AUTH_TOKEN_MISSING", err, code)
	}

	// E6: a tailnet peer is never local, even when trusted: local-only
	// methods refuse it.
	phoneAdmin, err := newTnDevice(t, phone).dial(g.tailnetURL(), "", nil, protocol.ScopeAdmin, protocol.ScopeRead)
	if err != nil {
		t.Fatalf("owner's phone asking for admin: %v", err)
	}
	_, err = phoneAdmin.Call(context.Background(), "clawgate.backup", map[string]any{"path": filepath.Join(t.TempDir(), "x.db")})
	var re *client.RemoteError
	if !errors.As(err, &re) || re.Code != protocol.ErrForbidden {
		t.Fatalf("clawgate.backup from the tailnet: %v, want FORBIDDEN (local only)", err)
	}
	phoneAdmin.Close()

	// status: the tailnet section; login URL and owner only for admins.
	var st struct {
		Tailnet tailnetStatus `json:"tailnet"`
	}
	if err := json.Unmarshal(tnCall(t, adminC, "status", nil), &st); err != nil {
		t.Fatal(err)
	}
	if st.Tailnet.State != "Running" || st.Tailnet.DNSName != g.dnsName || st.Tailnet.Port != g.port ||
		len(st.Tailnet.IPs) == 0 || st.Tailnet.OwnerLogin != g.owner {
		t.Fatalf("admin status.tailnet = %+v", st.Tailnet)
	}
	st.Tailnet = tailnetStatus{}
	if err := json.Unmarshal(tnCall(t, laptopC, "status", nil), &st); err != nil {
		t.Fatal(err)
	}
	if st.Tailnet.State != "Running" || st.Tailnet.OwnerLogin != "" || st.Tailnet.LoginURL != "" {
		t.Fatalf("read-only status.tailnet = %+v", st.Tailnet)
	}

	// E7: key expiry closes that node's sockets; removal from the tailnet
	// closes the phone's (last: it freezes the gateway's netmap updates).
	// The gateway no longer reaches a departed node over WireGuard, so the
	// close is observed on the gateway's side.
	tn.ExpireKey(laptop.ID)
	g.waitPeerClosed(t, laptop.ID, 2) // left: admin (loopback), phone
	tnCall(t, phoneC, "health", nil)
	tn.RemoveFrom(g.nodeID, phone.ID)
	g.waitPeerClosed(t, phone.ID, 1) // left: admin
	tnCall(t, adminC, "health", nil)
}

// waitPeerClosed waits until the gateway has closed the socket of tailnet
// node id and holds exactly want sockets.
func (g *tailnetGateway) waitPeerClosed(t testing.TB, id string, want int) {
	t.Helper()
	line := "node=" + id + " sockets=1"
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(g.logs.String(), line) || g.srv.ConnCount() != want {
		if time.Now().After(deadline) {
			t.Fatalf("socket of %s not closed (log has %q: %v; %d sockets open, want %d)",
				id, line, strings.Contains(g.logs.String(), line), g.srv.ConnCount(), want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestTailnetLoginURL: without an auth key the gateway serves loopback at
// once and shows the login URL to admins only; once the login completes,
// the tailnet listener answers on names it learned after Serve started.
func TestTailnetLoginURL(t *testing.T) {
	tn := tsnodetest.New(t, tsnodetest.Options{RequireAuth: true})
	g := launchTailnetGateway(t, tn, config.Tailnet{}, true)
	admin, err := newTnDevice(t, nil).dial(g.loopback, "", nil, protocol.ScopeAdmin, protocol.ScopeRead)
	if err != nil {
		t.Fatalf("loopback while the tailnet waits for login: %v", err)
	}
	defer admin.Close()
	reader, err := client.Dial(context.Background(), client.Options{URL: g.loopback, Token: tailnetTestToken, Scopes: []string{protocol.ScopeRead}})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	var st struct {
		Tailnet tailnetStatus `json:"tailnet"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := json.Unmarshal(tnCall(t, admin, "status", nil), &st); err != nil {
			t.Fatal(err)
		}
		if st.Tailnet.LoginURL != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no login URL in status: %+v", st.Tailnet)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if st.Tailnet.State != "NeedsLogin" || len(st.Tailnet.IPs) != 0 || !strings.HasPrefix(st.Tailnet.LoginURL, tn.ControlURL()) {
		t.Fatalf("status.tailnet before login = %+v", st.Tailnet)
	}
	if !strings.Contains(g.logs.String(), st.Tailnet.LoginURL) {
		t.Fatalf("login URL not in the log:\n%s", g.logs.String())
	}
	url := st.Tailnet.LoginURL
	st.Tailnet = tailnetStatus{}
	if err := json.Unmarshal(tnCall(t, reader, "status", nil), &st); err != nil {
		t.Fatal(err)
	}
	if st.Tailnet.LoginURL != "" || st.Tailnet.State != "NeedsLogin" {
		t.Fatalf("read-only caller's status.tailnet = %+v, want the state without the login URL", st.Tailnet)
	}
	if !tn.CompleteLogin(url) {
		t.Fatalf("control server does not know %s", url)
	}
	g.waitReady(t)
	phone := tn.NewPeer(t, tsnodetest.PeerOptions{Hostname: "phone"})
	phone.WaitReach(t, g.ip)
	_, err = newTnDevice(t, phone).dial(g.tailnetURL(), "", nil, protocol.ScopeRead)
	if code, _ := tnDetail(err); code != protocol.DetailPairingRequired {
		t.Fatalf("phone after the gateway's login: %v, want PAIRING_REQUIRED from the tailnet listener", err)
	}
}

// TestTailnetHostHeader: E8 and E6. On the tailnet listener the Host
// header must name the gateway's tailnet node on its port; loopback names
// and anything else get 403 before any WebSocket exists.
func TestTailnetHostHeader(t *testing.T) {
	tn := tsnodetest.New(t, tsnodetest.Options{})
	g := startTailnetGateway(t, tn, config.Tailnet{})
	phone := tn.NewPeer(t, tsnodetest.PeerOptions{Hostname: "phone"})
	phone.WaitReach(t, g.ip)
	port := strconv.Itoa(g.port)
	cases := []struct {
		host string
		want int
	}{
		{"evil.example", http.StatusForbidden},
		{"evil.example:" + port, http.StatusForbidden},
		{"127.0.0.1:" + port, http.StatusForbidden}, // tailnet traffic is never loopback
		{"localhost:" + port, http.StatusForbidden},
		{g.dnsName + ":1", http.StatusForbidden}, // right name, wrong port
		{"gw.evil.example:" + port, http.StatusForbidden},
		{g.dnsName + ":" + port, http.StatusSwitchingProtocols},
		{g.dnsName, http.StatusSwitchingProtocols},
		{"gw:" + port, http.StatusSwitchingProtocols}, // MagicDNS short name
		{netip.AddrPortFrom(g.ip, uint16(g.port)).String(), http.StatusSwitchingProtocols},
	}
	for _, c := range cases {
		if got := tnUpgradeStatus(t, phone, netip.AddrPortFrom(g.ip, uint16(g.port)).String(), c.host); got != c.want {
			t.Errorf("Host %q: HTTP %d, want %d", c.host, got, c.want)
		}
	}
	if !strings.Contains(g.logs.String(), "host not allowed") {
		t.Error("refused Host not logged")
	}
}

// tnUpgradeStatus sends one WebSocket upgrade with the given Host over the
// tailnet and returns the HTTP status.
func tnUpgradeStatus(t testing.TB, p *tsnodetest.Peer, addr, host string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := p.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("Host %q: %v", host, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTailnetAllowedTagsAndLogins: the configured policy replaces the
// default: an allowlisted tag pairs silently; the owner is no longer
// trusted when allowedLogins names someone else.
func TestTailnetAllowedTagsAndLogins(t *testing.T) {
	tn := tsnodetest.New(t, tsnodetest.Options{})
	peers := tn.NewPeers(t,
		tsnodetest.PeerOptions{Hostname: "ci", Tags: []string{"tag:ci"}},
		tsnodetest.PeerOptions{Hostname: "friend"},
	)
	ci, friend := peers[0], peers[1]
	g := startTailnetGateway(t, tn, config.Tailnet{AllowedTags: []string{"tag:ci"}, AllowedLogins: []string{friend.Login}})
	phone := tn.NewPeer(t, tsnodetest.PeerOptions{Hostname: "phone"})
	tn.SetOwner(phone.ID, g.nodeID)
	g.waitWhoIs(t, phone, "phone owned by the gateway's owner", func(l string, _ bool) bool { return l == g.owner })
	for _, p := range []*tsnodetest.Peer{ci, friend, phone} {
		p.WaitReach(t, g.ip)
	}
	for _, p := range []*tsnodetest.Peer{ci, friend} {
		c, err := newTnDevice(t, p).dial(g.ipURL(), "", nil, protocol.ScopeRead)
		if err != nil {
			t.Fatalf("%s (allowlisted): %v", p.Name, err)
		}
		c.Close()
	}
	_, err := newTnDevice(t, phone).dial(g.ipURL(), "", nil, protocol.ScopeRead)
	if code, _ := tnDetail(err); code != protocol.DetailPairingRequired {
		t.Fatalf("owner's phone with allowedLogins set to another user: %v (detail %q), want PAIRING_REQUIRED", err, code)
	}
}

// TestTailnetOff: without --tailnet or the config switch nothing
// tailnet-related starts, and the status has no tailnet section.
func TestTailnetOff(t *testing.T) {
	state := t.TempDir()
	tl, err := startTailnet(tailnetFlags{}, config.Tailnet{ControlURL: "http://127.0.0.1:1"}, nil, paths{stateDir: state},
		env{getenv: func(string) string { return "" }}, nil, slog.New(slog.DiscardHandler))
	if err != nil || tl != nil {
		t.Fatalf("startTailnet with tailnet off = %v, %v", tl, err)
	}
	if tl.listeners() != nil {
		t.Fatal("listeners from a nil tailnet")
	}
	tl.close()
	if _, err := os.Stat(filepath.Join(state, "tsnet")); !os.IsNotExist(err) {
		t.Fatalf("tsnet state dir created with the tailnet off: %v", err)
	}
}

// TestTailnetConfigChecks: bad settings are refused before anything starts;
// the auth key file must be private.
func TestTailnetConfigChecks(t *testing.T) {
	state := t.TempDir()
	keyFile := filepath.Join(state, "authkey")
	if err := os.WriteFile(keyFile, []byte("tskey-auth-secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := env{getenv: func(string) string { return "" }}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 18789}
	for _, c := range []struct {
		cfg  config.Tailnet
		want string
	}{
		{config.Tailnet{ControlURL: "ftp://x"}, "controlURL"},
		{config.Tailnet{ControlURL: "https://user:pw@headscale.example"}, "controlURL"},
		{config.Tailnet{AllowedTags: []string{"ci"}}, "not a tag"},
		{config.Tailnet{AdvertiseTags: []string{"tag:"}}, "not a tag"},
		{config.Tailnet{AllowedLogins: []string{" "}}, "empty"},
		{config.Tailnet{Port: 70000}, "out of range"},
		{config.Tailnet{AuthKeyFile: keyFile}, "chmod 600"},
	} {
		_, err := startTailnet(tailnetFlags{enable: true}, c.cfg, addr, paths{stateDir: state}, e, nil, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error about %q", c.cfg, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "tskey-auth-secret") {
			t.Errorf("error shows the key: %v", err)
		}
	}
}

// helperPID is the running helper's process id (0 while it restarts).
func (g *tailnetGateway) helperPID() int {
	g.tl.mu.Lock()
	defer g.tl.mu.Unlock()
	if g.tl.proc == nil {
		return 0
	}
	return g.tl.proc.Pid()
}

// adminTailnetStatus reads the status method's tailnet section.
func adminTailnetStatus(t testing.TB, c *client.Client) tailnetStatus {
	t.Helper()
	var st struct {
		Tailnet tailnetStatus `json:"tailnet"`
	}
	if err := json.Unmarshal(tnCall(t, c, "status", nil), &st); err != nil {
		t.Fatal(err)
	}
	return st.Tailnet
}

// TestTailnetHelperRestart: when the helper process dies, the gateway
// logs it, reports it in the status section, closes the connections it
// relayed, keeps serving loopback, and restarts it; the node comes back
// with its saved state and the tailnet listener answers again.
func TestTailnetHelperRestart(t *testing.T) {
	t.Setenv("CLAWGATE_GATEWAY_TOKEN", "env-token-for-the-gateway-only")
	tn := tsnodetest.New(t, tsnodetest.Options{})
	g := startTailnetGateway(t, tn, config.Tailnet{})
	// The helper gets none of the gateway's secrets in its environment.
	environ, err := os.ReadFile("/proc/" + strconv.Itoa(g.helperPID()) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(environ), "env-token-for-the-gateway-only") {
		t.Fatal("the gateway token is in the helper's environment")
	}
	phone := tn.NewPeer(t, tsnodetest.PeerOptions{Hostname: "phone"})
	tn.SetOwner(phone.ID, g.nodeID)
	g.waitWhoIs(t, phone, "phone owned by the gateway's owner", func(l string, _ bool) bool { return l == g.owner })
	phone.WaitReach(t, g.ip)
	admin, err := newTnDevice(t, nil).dial(g.loopback, "", nil, protocol.ScopeAdmin, protocol.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if st := adminTailnetStatus(t, admin); st.Helper != helperRunning || st.Restarts != 0 {
		t.Fatalf("status.tailnet before the crash = %+v", st)
	}
	phoneDev := newTnDevice(t, phone)
	phoneC, err := phoneDev.dial(g.tailnetURL(), "", nil, protocol.ScopeRead)
	if err != nil {
		t.Fatalf("phone over the tailnet: %v", err)
	}
	defer phoneC.Close()
	devToken := phoneC.Hello().Auth.DeviceToken
	if g.srv.ConnCount() != 2 {
		t.Fatalf("%d sockets, want 2 (admin, phone)", g.srv.ConnCount())
	}

	pid := g.helperPID()
	if pid <= 0 {
		t.Fatalf("helper pid %d", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The phone's relayed socket dies with the helper; loopback serves on.
	deadline := time.Now().Add(20 * time.Second)
	for g.srv.ConnCount() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sockets after the helper died, want 1 (admin)", g.srv.ConnCount())
		}
		time.Sleep(10 * time.Millisecond)
	}
	tnCall(t, admin, "health", nil)
	var st tailnetStatus
	for {
		st = adminTailnetStatus(t, admin)
		if st.Restarts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status.tailnet after the helper died = %+v, want helperRestarts 1", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(st.HelperExit, "signal: killed") || !strings.Contains(g.logs.String(), "tailnet helper exited") {
		t.Fatalf("the helper's death is not reported: status %+v\n%s", st, g.logs.String())
	}
	second, err := newTnDevice(t, nil).dial(g.loopback, "", nil, protocol.ScopeRead)
	if err != nil {
		t.Fatalf("loopback while the helper restarts: %v", err)
	}
	second.Close()

	// Restarted: same node (its state dir kept the keys), serving again.
	deadline = time.Now().Add(60 * time.Second)
	for {
		st = adminTailnetStatus(t, admin)
		if st.Helper == helperRunning && st.State == "Running" && g.helperPID() != pid && g.helperPID() != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper not back: status.tailnet = %+v\n%s", st, g.logs.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	if st.DNSName != g.dnsName || st.Restarts != 1 {
		t.Fatalf("status.tailnet after the restart = %+v, want %s and one restart", st, g.dnsName)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		c, err := phoneDev.dial(g.tailnetURL(), devToken, nil, protocol.ScopeRead)
		if err == nil {
			tnCall(t, c, "health", nil)
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("phone over the tailnet after the helper's restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTailnetRelayedConnection: a tailnet connection reaches the gateway
// through the helper's relay: a request and its answer cross it both ways,
// the gateway's close reaches the peer, and the peer's half close reaches
// the gateway (which answers what it got, then closes).
func TestTailnetRelayedConnection(t *testing.T) {
	tn := tsnodetest.New(t, tsnodetest.Options{})
	g := startTailnetGateway(t, tn, config.Tailnet{})
	phone := tn.NewPeer(t, tsnodetest.PeerOptions{Hostname: "phone"})
	phone.WaitReach(t, g.ip)
	addr := netip.AddrPortFrom(g.ip, uint16(g.port)).String()
	host := g.dnsName + ":" + strconv.Itoa(g.port)
	dial := func() net.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := phone.Dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}
	healthz := func(br *bufio.Reader, c net.Conn, closeConn bool) {
		t.Helper()
		hdr := ""
		if closeConn {
			hdr = "Connection: close\r\n"
		}
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n%s\r\n", host, hdr)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("healthz over the relay: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ok":true`) {
			t.Fatalf("healthz over the relay: HTTP %d %q %v", resp.StatusCode, body, err)
		}
	}

	// Two requests on one connection, the second asking to close: the
	// gateway closes, and the peer reads EOF.
	c := dial()
	br := bufio.NewReader(c)
	healthz(br, c, false)
	healthz(br, c, true)
	if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after the gateway closed: %d, %v; want EOF", n, err)
	}
	c.Close()

	// The peer sends a request and shuts down its writes: the gateway
	// still answers, then closes.
	c = dial()
	defer c.Close()
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("tailnet connection %T has no CloseWrite", c)
	}
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	br = bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz before a half close: %v, %v", resp, err)
	}
	resp.Body.Close()
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("after the peer's half close the gateway did not close cleanly: %v", err)
	}
}

// TestTailnetHelperMissing: without the clawgate-tailnet helper, the
// tailnet refuses to start with an error that says how to install it, and
// the binary exits with it.
func TestTailnetHelperMissing(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("CLAWGATE_HELPER_DIR", empty)
	state := t.TempDir()
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 18789}
	tl, err := startTailnet(tailnetFlags{enable: true}, config.Tailnet{}, addr, paths{stateDir: state},
		env{getenv: func(string) string { return "" }}, nil, slog.New(slog.DiscardHandler))
	if err == nil || tl != nil || !strings.Contains(err.Error(), "clawgate-tailnet") || !strings.Contains(err.Error(), "go install") {
		t.Fatalf("startTailnet without the helper = %v, %v; want an error naming it and how to install it", tl, err)
	}

	cmd := exec.Command(binary, "gateway", "--port", strconv.Itoa(freePort(t)), "--tailnet")
	cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+filepath.Join(t.TempDir(), "state"),
		"CLAWGATE_GATEWAY_TOKEN=", "OPENCLAW_GATEWAY_TOKEN=", "TS_AUTHKEY=", "CLAWGATE_HELPER_DIR="+empty)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "clawgate-tailnet") || !strings.Contains(string(out), "go install") {
		t.Fatalf("clawgate gateway --tailnet without the helper: %v\n%s", err, out)
	}
}

// TestTailnetCanvas: the canvas host also serves on the tailnet (its port
// opened in the helper too) and builds its tailnet URLs on the names the
// helper pushed; a tailnet peer gets the same answer as loopback.
func TestTailnetCanvas(t *testing.T) {
	tn := tsnodetest.New(t, tsnodetest.Options{})
	g := startTailnetGateway(t, tn, config.Tailnet{})
	cport := freePort(t)
	cv, err := newCanvas(canvasFlags{port: cport}, paths{stateDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cv.stop()
	if err := cv.start(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: g.port}); err != nil {
		t.Fatal(err)
	}
	if err := cv.serveTailnet(g.tl); err != nil {
		t.Fatal(err)
	}
	if got, want := cv.tailnetURL(), "http://"+g.dnsName+":"+strconv.Itoa(cport); got != want {
		t.Fatalf("canvas tailnet URL %q, want %q", got, want)
	}
	phone := tn.NewPeer(t, tsnodetest.PeerOptions{Hostname: "phone"})
	phone.WaitReach(t, g.ip)
	get := func(c *http.Client, url string) (int, string) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const page = "/__openclaw__/canvas/main/"
	loopCode, loopBody := get(http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(cport)+page)
	peer := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: phone.Dial}}
	defer peer.CloseIdleConnections()
	tailCode, tailBody := get(peer, "http://"+netip.AddrPortFrom(g.ip, uint16(cport)).String()+page)
	if tailCode != loopCode || tailBody != loopBody {
		t.Fatalf("canvas over the tailnet: HTTP %d %q; over loopback: HTTP %d %q", tailCode, tailBody, loopCode, loopBody)
	}
}

// TestDoctorTailnetHelper: with the tailnet enabled in the config, doctor
// finds the helper where the gateway would, and calls its absence critical.
func TestDoctorTailnetHelper(t *testing.T) {
	s := newDoctorSetup(t)
	s.write(t, "clawgate.json", `{"version":1,"tailnet":{"enabled":true}}`, 0o600)
	rep, out, err := s.doctor(t)
	if f := findingsByID(rep)["tailnet-helper"]; err != nil || f.Severity != sevOK || !strings.HasSuffix(f.Detail, "/"+tsipc.HelperName) {
		t.Fatalf("helper installed: err %v, finding %+v\n%s", err, f, out)
	}
	t.Setenv("CLAWGATE_HELPER_DIR", t.TempDir())
	rep, _, err = s.doctor(t)
	if f := wantCritical(t, rep, err, "tailnet-helper"); !strings.Contains(f.Detail, tsipc.HelperName) {
		t.Errorf("finding %+v does not name the helper", f)
	}
	// Installed where any user could replace it: not missing, but refused.
	open := t.TempDir()
	if err := os.Symlink(filepath.Join(filepath.Dir(binary), tsipc.HelperName), filepath.Join(open, tsipc.HelperName)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CLAWGATE_HELPER_DIR", open)
	rep, _, err = s.doctor(t)
	if f := wantCritical(t, rep, err, "tailnet-helper"); strings.Contains(f.Title, "missing") ||
		!strings.Contains(f.Detail, "writable by every user") || strings.Contains(f.Fix, "go install") {
		t.Errorf("a world-writable helper directory: finding %+v; want it called unsafe, not missing", f)
	}
	s.write(t, "clawgate.json", `{"version":1}`, 0o600)
	rep, _, _ = s.doctor(t)
	if f, ok := findingsByID(rep)["tailnet-helper"]; ok {
		t.Errorf("tailnet off, yet a helper finding: %+v", f)
	}
}

// TestTailnetListenWhileHelperDies: a port added while the helper has just
// died (before the supervisor noticed) is kept for its successor to open,
// not refused (the canvas host would lose its tailnet listener for good).
func TestTailnetListenWhileHelperDies(t *testing.T) {
	proc, err := ipc.Start(context.Background(), tsipc.HelperName, ipc.StartOptions{Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	_ = proc.Stop(10 * time.Second) // dead, and t.proc still names it
	tl := &tailnet{proc: proc, lns: map[int]*relayListener{}, log: slog.New(slog.DiscardHandler)}
	tl.ctx, tl.cancel = context.WithCancel(context.Background())
	defer tl.cancel()
	ln, err := tl.listen(18793)
	if err != nil || ln == nil {
		t.Fatalf("listen while the helper is dead = %v, %v; want the listener, opened on restart", ln, err)
	}
	if tl.lns[18793] == nil {
		t.Fatal("the port is not recorded for the restarted helper")
	}
	if _, err := tl.listen(18793); err == nil {
		t.Fatal("a second listen on the same port succeeded")
	}
}
