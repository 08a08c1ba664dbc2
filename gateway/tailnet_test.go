package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/store/bolt"
)

// What a tailnet listener's Identify says decides silent pairing, and
// nothing else does: attack rows E4, E5 and E6 at the gateway, with the
// identity source replaced by a function (the real WhoIs, over real tsnet
// peers, is exercised in tsnode and cmd/clawgate).

// fakeIdentify answers a tailnet listener's Identify as the test says,
// and records the remote addresses it was asked about.
type fakeIdentify struct {
	mu     sync.Mutex
	answer func(ctx context.Context) (*PeerIdentity, error)
	asked  []string
}

func (f *fakeIdentify) set(answer func(ctx context.Context) (*PeerIdentity, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer = answer
}

func (f *fakeIdentify) identify(ctx context.Context, remoteAddr string) (*PeerIdentity, error) {
	f.mu.Lock()
	f.asked = append(f.asked, remoteAddr)
	answer := f.answer
	f.mu.Unlock()
	return answer(ctx)
}

func (f *fakeIdentify) lastAsked() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.asked) == 0 {
		return ""
	}
	return f.asked[len(f.asked)-1]
}

// startTailnetPathGateway serves a paired gateway on loopback and on a
// second loopback socket tagged as the tailnet listener, whose peers are
// identified by id. It returns the loopback and tailnet URLs.
func startTailnetPathGateway(t *testing.T, id *fakeIdentify) (loopURL, tailURL string) {
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
		_ = db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pm.Close()
		_ = db.Close()
	})
	secret, err := authn.NewSharedSecret(testToken)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Version: "test", Token: secret, StateDir: dir, Pairing: pm})
	if err != nil {
		t.Fatal(err)
	}
	loop, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tail, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx,
			Listener{Listener: loop, Path: authn.PathLoopback},
			Listener{Listener: tail, Path: authn.PathTailnet, Hosts: []string{tail.Addr().String()}, Identify: id.identify})
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
	return "ws://" + loop.Addr().String(), "ws://" + tail.Addr().String()
}

// TestTailnetIdentifyFailsClosed: only a peer Identify vouched for pairs
// silently over the tailnet listener. A Funnel connection (even one a
// faulty policy marked trusted), an Identify error, a nil identity and an
// Identify that outlives its deadline all leave the peer remote: pairing
// required with the shared token, nothing at all without it (E4, E5).
// A failure is not remembered: the peer's next connection is identified
// afresh (E5). A trusted peer whose request carries
// proxy headers is not trusted either (E6).
func TestTailnetIdentifyFailsClosed(t *testing.T) {
	fi := &fakeIdentify{}
	_, tailURL := startTailnetPathGateway(t, fi)
	owner := func(context.Context) (*PeerIdentity, error) {
		return &PeerIdentity{NodeID: "nPhone", NodeName: "phone.tail1234.ts.net", UserLogin: "me@example.com", Trusted: true}, nil
	}

	// Baseline: the owner's phone pairs silently; Identify was asked
	// about the connection's own remote address.
	fi.set(owner)
	rc, f := signedConnect(t, tailURL, signedSpec{id: newIdentity(t), token: testToken, scopes: []string{protocol.ScopeRead}})
	if tok, _ := helloAuth(wantHello(t, f)); !tokenRE.MatchString(tok) {
		t.Fatalf("trusted tailnet peer got device token %q", tok)
	}
	if local := rc.ws.LocalAddr().String(); fi.lastAsked() != local {
		t.Fatalf("Identify asked about %q, want the peer's address %s", fi.lastAsked(), local)
	}
	rc.ws.Close()

	cases := []struct {
		name   string
		answer func(ctx context.Context) (*PeerIdentity, error)
		header http.Header
	}{
		{"funnel, marked trusted", func(context.Context) (*PeerIdentity, error) {
			return &PeerIdentity{NodeID: "nRelay", NodeName: "relay.tail1234.ts.net", UserLogin: "me@example.com", Funnel: true, Trusted: true}, nil
		}, nil},
		{"whois error", func(context.Context) (*PeerIdentity, error) {
			return nil, errors.New("peer not found")
		}, nil},
		{"nil identity", func(context.Context) (*PeerIdentity, error) { return nil, nil }, nil},
		{"whois past its deadline", func(ctx context.Context) (*PeerIdentity, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}, nil},
		{"trusted but proxied", owner, http.Header{"X-Forwarded-For": {"127.0.0.1"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fi.set(c.answer)
			dev := newIdentity(t)
			rc, f := signedConnect(t, tailURL, signedSpec{id: dev, token: testToken, scopes: []string{protocol.ScopeRead}, header: c.header})
			wantPairingRequired(t, rc, f, "not-paired")
			// Without the shared secret it is refused outright.
			rc, f = signedConnect(t, tailURL, signedSpec{id: newIdentity(t), scopes: []string{protocol.ScopeRead}, header: c.header})
			msg := "unauthorized: gateway token missing (use this gateway's gateway.auth.token or pair the device)"
			wantConnectErr(t, rc, f, protocol.ErrInvalidRequest, msg, protocol.DetailAuthTokenMissing, protocol.ClosePolicy, msg)
			// The failure is not remembered for the peer: its next
			// connection is identified afresh, and a new device on it
			// pairs silently. (The refused device's own request stays
			// interactive: pairing never turns a pending interactive
			// request silent.)
			fi.set(owner)
			rc, f = signedConnect(t, tailURL, signedSpec{id: newIdentity(t), token: testToken, scopes: []string{protocol.ScopeRead}})
			wantHello(t, f)
			rc.ws.Close()
			rc, f = signedConnect(t, tailURL, signedSpec{id: dev, token: testToken, scopes: []string{protocol.ScopeRead}})
			wantPairingRequired(t, rc, f, "not-paired")
		})
	}
}
