package client_test

// Attack-list group D (transport / TLS pinning) against a real gateway
// served over real TLS sockets on loopback. Each TestD<n> names its row.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/store/bolt"
	"github.com/clawgate/clawgate/tlspin"
)

const testToken = "tls-test-token-0123456789abcdef012345"

// countingListener counts accepted connections and the application bytes
// (above TLS) the server read from them: an HTTP upgrade request that was
// written shows up here.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
	appBytes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	return &countingConn{Conn: c, n: &l.appBytes}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// newPair creates a managed-style certificate and key under the test's
// temp dir.
func newPair(t *testing.T, hosts ...string) (p *tlspin.Pair, certFile, keyFile string) {
	t.Helper()
	return newPairTB(t, hosts...)
}

func newPairTB(t testing.TB, hosts ...string) (p *tlspin.Pair, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "gateway.crt"), filepath.Join(dir, "gateway.key")
	p, err := tlspin.Create(certFile, keyFile, tlspin.Options{Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	return p, certFile, keyFile
}

type tlsGateway struct {
	url string
	ln  *countingListener
	pm  *pairing.Manager
}

// startTLSGateway serves a real gateway (with pairing) over TLS with pair
// (plaintext when nil) on a loopback port, its listener tagged path
// (authn.PathTLS: every peer is remote, as beyond loopback).
func startTLSGateway(t testing.TB, pair *tlspin.Pair, path authn.Path) *tlsGateway {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "clawgate.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := pairing.New(db, pairing.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pm.Close(); db.Close() })
	secret, err := authn.NewSharedSecret(testToken)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(gateway.Options{Version: "test", Token: secret, Pairing: pm, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var inner net.Listener = tcp
	scheme := "ws://"
	if pair != nil {
		inner, scheme = tls.NewListener(tcp, tlspin.ServerConfig(pair)), "wss://"
	}
	ln := &countingListener{Listener: inner}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, gateway.Listener{Listener: ln, Path: path, Hosts: []string{"127.0.0.1"}})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return &tlsGateway{url: scheme + tcp.Addr().String(), ln: ln, pm: pm}
}

func dial(t *testing.T, o client.Options) (*client.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, o)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func newIdentity(t *testing.T) *client.Identity {
	t.Helper()
	id, err := client.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// settle lets the server finish reading whatever a failed client sent.
func settle() { time.Sleep(100 * time.Millisecond) }

// TestTLSRemotePeerPairsWithPin: over a pinned wss:// connection to the
// TLS listener, a signed device is remote: the first connect is refused
// with PAIRING_REQUIRED, and after approval the device gets a token and
// health works.
func TestTLSRemotePeerPairsWithPin(t *testing.T) {
	pair, _, _ := newPair(t)
	g := startTLSGateway(t, pair, authn.PathTLS)
	id := newIdentity(t)
	scopes := []string{protocol.ScopeRead}
	opts := client.Options{URL: g.url, Token: testToken, Identity: id, Scopes: scopes,
		TLSFingerprint: pair.CertFingerprint().String()}

	_, err := dial(t, opts)
	var rerr *client.RemoteError
	if !errors.As(err, &rerr) || rerr.Code != protocol.ErrNotPaired || rerr.DetailCode() != protocol.DetailPairingRequired {
		t.Fatalf("first remote connect: %v, want NOT_PAIRED/PAIRING_REQUIRED", err)
	}
	rid, _ := rerr.Details.(map[string]any)["requestId"].(string)
	if rid == "" {
		t.Fatalf("no requestId in %v", rerr.Details)
	}
	if _, err := g.pm.Approve(rid, pairing.Caller{Scopes: []string{protocol.ScopeAdmin}}); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, opts)
	if err != nil {
		t.Fatalf("approved device over pinned TLS: %v", err)
	}
	if c.Hello().Auth.DeviceToken == "" {
		t.Error("approved remote device got no device token")
	}
	res, err := c.Call(context.Background(), "health", nil)
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ OK bool }
	if json.Unmarshal(res, &h) != nil || !h.OK {
		t.Fatalf("health: %s", res)
	}
	// A wrong shared token over TLS is an auth failure like anywhere else.
	_, err = dial(t, client.Options{URL: g.url, Token: "wrong-token-wrong-token-wrong-token", Identity: newIdentity(t),
		TLSFingerprint: pair.SPKIFingerprint().String()})
	if !errors.As(err, &rerr) || rerr.DetailCode() != protocol.DetailAuthTokenMismatch {
		t.Fatalf("wrong token over TLS: %v", err)
	}
}

// TestD1PinMismatchSendsNoHTTP: the client pins the real gateway and is
// sent to a man in the middle with another certificate. The handshake
// fails with a terminal "TLS pin mismatch ... certificate changed" error;
// the MITM reads 0 bytes of HTTP (the upgrade request is never written)
// and sees exactly one connection (no retry loop). The same holds against
// the real gateway with a wrong pin.
func TestD1PinMismatchSendsNoHTTP(t *testing.T) {
	pair, _, _ := newPair(t)
	g := startTLSGateway(t, pair, authn.PathLoopback)
	pin := pair.CertFingerprint().String()

	// The pinned client works, and its upgrade request is counted.
	c, err := dial(t, client.Options{URL: g.url, Token: testToken, TLSFingerprint: pin})
	if err != nil {
		t.Fatalf("pinned connect: %v", err)
	}
	c.Close()
	if g.ln.appBytes.Load() == 0 {
		t.Fatal("the counting listener saw no bytes from a successful connect; the zero-byte checks below would prove nothing")
	}

	// A MITM: a TLS server with another certificate that would answer
	// anything.
	mitmPair, _, _ := newPair(t)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mitm := &countingListener{Listener: tls.NewListener(tcp, tlspin.ServerConfig(mitmPair))}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "mitm", http.StatusTeapot)
	})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = hs.Serve(mitm) }()
	t.Cleanup(func() { hs.Close(); wg.Wait() })
	mitmURL := "wss://" + tcp.Addr().String()

	_, err = dial(t, client.Options{URL: mitmURL, Token: testToken, TLSFingerprint: pin})
	var pm *tlspin.PinMismatchError
	if !errors.Is(err, tlspin.ErrCertificateChanged) || !errors.As(err, &pm) {
		t.Fatalf("MITM: %v, want tlspin.ErrCertificateChanged", err)
	}
	for _, want := range []string{"TLS pin mismatch", "certificate changed", mitmPair.CertFingerprint().String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), testToken) {
		t.Error("the error carries the token")
	}
	settle()
	if n := mitm.appBytes.Load(); n != 0 {
		t.Fatalf("the MITM read %d bytes of HTTP", n)
	}
	if n := mitm.accepted.Load(); n != 1 {
		t.Fatalf("the MITM saw %d connections, want 1 (no retry)", n)
	}

	// Control: the same MITM with its own pin does get the upgrade request,
	// so zero above means the check ran before it.
	if _, err := dial(t, client.Options{URL: mitmURL, Token: testToken, TLSFingerprint: mitmPair.CertFingerprint().String()}); err == nil {
		t.Fatal("the MITM's teapot answer was accepted as an upgrade")
	}
	settle()
	if mitm.appBytes.Load() == 0 {
		t.Fatal("control: the MITM saw no bytes from a client that pinned it")
	}

	// Wrong pin against the real gateway: not one byte.
	before, acc := g.ln.appBytes.Load(), g.ln.accepted.Load()
	_, err = dial(t, client.Options{URL: g.url, Token: testToken, TLSFingerprint: mitmPair.SPKIFingerprint().String()})
	if !errors.Is(err, tlspin.ErrCertificateChanged) {
		t.Fatalf("wrong pin: %v", err)
	}
	settle()
	if n := g.ln.appBytes.Load() - before; n != 0 {
		t.Fatalf("the gateway read %d bytes from a client whose pin failed", n)
	}
	if n := g.ln.accepted.Load() - acc; n != 1 {
		t.Fatalf("%d connections for one failed dial, want 1", n)
	}
}

// TestD2UnpinnedSelfSignedFails: wss:// without a pin to the self-signed
// gateway fails chain verification ("unknown certificate", with the
// fingerprint to check), and a configuration that skips verification
// without a pin is refused before connecting. Expired and wrong-host-name
// certificates fail verification too, even from a trusted root.
func TestD2UnpinnedSelfSignedFails(t *testing.T) {
	pair, _, _ := newPair(t, "gw.example")
	g := startTLSGateway(t, pair, authn.PathLoopback)

	_, err := dial(t, client.Options{URL: g.url, Token: testToken})
	var ve *tlspin.VerifyError
	if !errors.Is(err, tlspin.ErrUnknownCertificate) || !errors.As(err, &ve) || errors.Is(err, tlspin.ErrCertificateChanged) {
		t.Fatalf("unpinned self-signed: %v, want tlspin.ErrUnknownCertificate", err)
	}
	if ve.Presented.Cert != pair.CertFingerprint() || !strings.Contains(err.Error(), pair.CertFingerprint().String()) {
		t.Errorf("the error does not show the presented fingerprint: %v", err)
	}

	acc := g.ln.accepted.Load()
	skip := &websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if _, err := dial(t, client.Options{URL: g.url, Token: testToken, Dialer: skip}); err == nil || !strings.Contains(err.Error(), "without a pin") {
		t.Fatalf("InsecureSkipVerify without a pin: %v", err)
	}
	settle()
	if g.ln.accepted.Load() != acc {
		t.Fatal("the InsecureSkipVerify dialer reached the gateway")
	}

	// A trusted root, but the URL's host is not a name in the certificate.
	roots := x509.NewCertPool()
	roots.AddCert(pair.Leaf)
	_, err = dial(t, client.Options{URL: g.url, Token: testToken, Dialer: &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots}}})
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Fatalf("wrong host name: %v, want x509.HostnameError", err)
	}
	// With the right name it verifies, so the failure above is the name.
	c, err := dial(t, client.Options{URL: g.url, Token: testToken,
		Dialer: &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "gw.example"}}})
	if err != nil {
		t.Fatalf("trusted root and right name: %v", err)
	}
	c.Close()

	// An expired certificate from a trusted root.
	dir := t.TempDir()
	old, err := tlspin.Create(filepath.Join(dir, "c"), filepath.Join(dir, "k"), tlspin.Options{Hosts: []string{"gw.example"},
		Now: func() time.Time { return time.Now().Add(-48 * time.Hour) }, Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ge := startTLSGateway(t, old, authn.PathLoopback)
	roots.AddCert(old.Leaf)
	before := ge.ln.appBytes.Load()
	_, err = dial(t, client.Options{URL: ge.url, Token: testToken,
		Dialer: &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "gw.example"}}})
	var ie x509.CertificateInvalidError
	if !errors.As(err, &ie) || ie.Reason != x509.Expired {
		t.Fatalf("expired: %v, want x509 Expired", err)
	}
	settle()
	if ge.ln.appBytes.Load() != before {
		t.Fatal("HTTP was sent to a gateway whose certificate failed verification")
	}
}

// recordingDialer records every TCP dial and makes none.
type recordingDialer struct {
	mu    sync.Mutex
	addrs []string
}

var errNoNetwork = errors.New("test: no network")

func (r *recordingDialer) dialer() *websocket.Dialer {
	return &websocket.Dialer{NetDialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
		r.mu.Lock()
		r.addrs = append(r.addrs, addr)
		r.mu.Unlock()
		return nil, errNoNetwork
	}}
}

func (r *recordingDialer) dials() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.addrs...)
}

// TestD3PlaintextRemoteRefused: credentials over ws:// to a host that is
// not loopback are refused before connecting; the dangerous flag lets the
// dial happen (here into a recorder, never onto the network).
func TestD3PlaintextRemoteRefused(t *testing.T) {
	for _, u := range []string{"ws://192.0.2.10:18789", "ws://gateway.example:18789", "ws://[2001:db8::1]:18789"} {
		rec := &recordingDialer{}
		_, err := dial(t, client.Options{URL: u, Token: testToken, Dialer: rec.dialer()})
		if !errors.Is(err, client.ErrPlaintextRemote) {
			t.Fatalf("%s: %v, want ErrPlaintextRemote", u, err)
		}
		if strings.Contains(err.Error(), testToken) {
			t.Error("refusal carries the token")
		}
		if !strings.Contains(err.Error(), "ssh -N -L") || !strings.Contains(err.Error(), "wss://") {
			t.Errorf("refusal does not say what to do: %v", err)
		}
		if d := rec.dials(); len(d) != 0 {
			t.Fatalf("%s: dialed %v before refusing", u, d)
		}
		_, err = dial(t, client.Options{URL: u, Token: testToken, Dialer: rec.dialer(), AllowInsecurePlaintext: true})
		if !errors.Is(err, errNoNetwork) || len(rec.dials()) != 1 {
			t.Fatalf("%s with AllowInsecurePlaintext: %v, dials %v", u, err, rec.dials())
		}
	}
	// A pin on a plaintext URL is a mistake, not a silent no-op.
	_, err := dial(t, client.Options{URL: "ws://127.0.0.1:1", TLSFingerprint: strings.Repeat("ab", 32)})
	if err == nil || !strings.Contains(err.Error(), "needs a wss:// URL") {
		t.Fatalf("pin on ws://: %v", err)
	}
	_, err = dial(t, client.Options{URL: "wss://127.0.0.1:1", TLSFingerprint: "sha1:abcd"})
	if !errors.Is(err, tlspin.ErrBadPin) {
		t.Fatalf("bad pin: %v", err)
	}
}

// TestD4LoopbackIsAnIPLiteral: only IP literals that netip parses as
// loopback are trusted for plaintext; look-alike names and 0.0.0.0 are
// refused before any lookup or dial, and no device token is considered
// safe to send to them.
func TestD4LoopbackIsAnIPLiteral(t *testing.T) {
	cases := []struct {
		host     string
		loopback bool
	}{
		{"127.0.0.1", true},
		{"127.0.0.2", true},
		{"127.255.255.254", true},
		{"[::1]", true},
		{"[::ffff:127.0.0.1]", true}, // IPv4-mapped loopback is loopback
		{"127.evil.com", false},
		{"localhost.evil.com", false},
		{"127.0.0.1.nip.io", false},
		{"localhost", false}, // a name: resolution could say anything
		{"0.0.0.0", false},
		{"[::]", false},
		{"[::ffff:0.0.0.0]", false},
		{"0x7f.0.0.1", false},
		{"2130706433", false},
		{"127.1", false},
		{"[fe80::1%25lo]", false},
		{"128.0.0.1", false},
	}
	for _, tc := range cases {
		u := "ws://" + tc.host + ":18789"
		h := strings.TrimSuffix(strings.TrimPrefix(tc.host, "["), "]")
		if got := client.IsLoopbackHost(strings.ReplaceAll(h, "%25", "%")); got != tc.loopback {
			t.Errorf("IsLoopbackHost(%s) = %v, want %v", tc.host, got, tc.loopback)
		}
		if got := client.TrustedTransport(u); got != tc.loopback {
			t.Errorf("TrustedTransport(%s) = %v, want %v", u, got, tc.loopback)
		}
		rec := &recordingDialer{}
		_, err := dial(t, client.Options{URL: u, Token: testToken, Dialer: rec.dialer()})
		if tc.loopback {
			if !errors.Is(err, errNoNetwork) || len(rec.dials()) != 1 {
				t.Errorf("%s: loopback literal not dialed: %v", u, err)
			}
			continue
		}
		if !errors.Is(err, client.ErrPlaintextRemote) || len(rec.dials()) != 0 {
			t.Errorf("%s: %v (dials %v), want ErrPlaintextRemote and no dial", u, err, rec.dials())
		}
	}
	if !client.TrustedTransport("wss://gateway.example:18789") {
		t.Error("wss:// is a trusted transport (pinned or verified)")
	}
}

// TestD5Rotation: a re-issue with the same key keeps an SPKI pin working
// and breaks a certificate pin with the "changed" error; a new key breaks
// both; pinning the old and the new key side by side (a pre-announced
// second pin) carries a client across the key change.
func TestD5Rotation(t *testing.T) {
	p0, certFile, keyFile := newPair(t)
	p1, err := tlspin.Rotate(certFile, keyFile, tlspin.KeepKey, tlspin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g1 := startTLSGateway(t, p1, authn.PathLoopback)
	if _, err := dial(t, client.Options{URL: g1.url, Token: testToken, TLSFingerprint: p0.SPKIFingerprint().String()}); err != nil {
		t.Fatalf("SPKI pin after a same-key re-issue: %v", err)
	}
	_, err = dial(t, client.Options{URL: g1.url, Token: testToken, TLSFingerprint: p0.CertFingerprint().String()})
	if !errors.Is(err, tlspin.ErrCertificateChanged) || !strings.Contains(err.Error(), "certificate changed") {
		t.Fatalf("certificate pin after a re-issue: %v, want certificate changed", err)
	}

	p2, err := tlspin.Rotate(certFile, keyFile, tlspin.NewKey, tlspin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g2 := startTLSGateway(t, p2, authn.PathLoopback)
	_, err = dial(t, client.Options{URL: g2.url, Token: testToken, TLSFingerprint: p0.SPKIFingerprint().String()})
	if !errors.Is(err, tlspin.ErrCertificateChanged) {
		t.Fatalf("SPKI pin after a key change: %v, want certificate changed", err)
	}
	both := p0.SPKIFingerprint().String() + "," + p2.SPKIFingerprint().String()
	for _, g := range []*tlsGateway{g1, g2} {
		if _, err := dial(t, client.Options{URL: g.url, Token: testToken, TLSFingerprint: both}); err != nil {
			t.Fatalf("old+new pins: %v", err)
		}
	}
}

// TestD6ServerTLSConfig: the gateway's TLS listener negotiates TLS 1.3 when
// offered and refuses clients below TLS 1.2. (Key file mode checks are in
// tlspin and in cmd/clawgate's startup refusal tests.)
func TestD6ServerTLSConfig(t *testing.T) {
	pair, _, _ := newPair(t)
	g := startTLSGateway(t, pair, authn.PathLoopback)
	addr := strings.TrimPrefix(g.url, "wss://")
	pins := []tlspin.Fingerprint{pair.CertFingerprint()}

	c, err := tls.Dial("tcp", addr, tlspin.ClientConfig(tlspin.ClientOptions{Pins: pins}))
	if err != nil {
		t.Fatal(err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(v))
	}
	c.Close()

	old := tlspin.ClientConfig(tlspin.ClientOptions{Pins: pins})
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c, err := tls.Dial("tcp", addr, old); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 client completed a handshake")
	}
	// A client that insists on TLS 1.1 cannot be talked into it by client.Dial.
	d := &websocket.Dialer{TLSClientConfig: &tls.Config{MaxVersion: tls.VersionTLS11, RootCAs: x509.NewCertPool()}}
	if _, err := dial(t, client.Options{URL: g.url, Token: testToken, Dialer: d}); err == nil {
		t.Fatal("TLS 1.1 dial succeeded")
	}
}
