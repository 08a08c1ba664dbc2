package tsnode

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"tailscale.com/client/local"
	"tailscale.com/ipn"

	"github.com/clawgate/clawgate/tsnode/tsipc"
)

func TestTailnetDecide(t *testing.T) {
	self := Self{OwnerLogin: "me@example.com", MagicDNSSuffix: "tail1234.ts.net"}
	mine := Identity{NodeID: "n1", NodeName: "phone.tail1234.ts.net", UserLogin: "me@example.com"}
	with := func(f func(*Identity)) Identity { id := mine; f(&id); return id }
	cases := []struct {
		name    string
		id      Identity
		self    Self
		policy  Policy
		trusted bool
	}{
		{"owner's device", mine, self, Policy{}, true},
		{"owner's login in another case", with(func(i *Identity) { i.UserLogin = "Me@Example.com" }), self, Policy{}, true},
		{"another user", with(func(i *Identity) { i.UserLogin = "you@example.com" }), self, Policy{}, false},
		{"another user, allowlisted", with(func(i *Identity) { i.UserLogin = "you@example.com" }), self,
			Policy{AllowedLogins: []string{"you@example.com"}}, true},
		{"allowlist replaces the owner default", mine, self, Policy{AllowedLogins: []string{"you@example.com"}}, false},
		{"shared in, owner's login", with(func(i *Identity) { i.SharedIn = true }), self, Policy{}, false},
		{"funnel", with(func(i *Identity) { i.Funnel = true }), self, Policy{}, false},
		{"funnel with no node", Identity{Funnel: true}, self, Policy{}, false},
		{"unidentified", Identity{}, self, Policy{}, false},
		{"name outside the tailnet", with(func(i *Identity) { i.NodeName = "phone.other.ts.net" }), self, Policy{}, false},
		{"suffix lookalike", with(func(i *Identity) { i.NodeName = "phone.eviltail1234.ts.net" }), self, Policy{}, false},
		{"tagged, no allowlist", with(func(i *Identity) { i.UserLogin = ""; i.Tags = []string{"tag:ci"} }), self, Policy{}, false},
		{"tagged, login allowlisted", with(func(i *Identity) { i.UserLogin = ""; i.Tags = []string{"tag:ci"} }), self,
			Policy{AllowedLogins: []string{"me@example.com"}}, false},
		{"tagged, tag allowlisted", with(func(i *Identity) { i.UserLogin = ""; i.Tags = []string{"tag:web", "tag:ci"} }), self,
			Policy{AllowedTags: []string{"tag:ci"}}, true},
		{"tagged and shared in", with(func(i *Identity) { i.Tags = []string{"tag:ci"}; i.SharedIn = true }), self,
			Policy{AllowedTags: []string{"tag:ci"}}, false},
		{"tagged gateway, no allowlist", mine, Self{MagicDNSSuffix: "tail1234.ts.net"}, Policy{}, false},
		{"no owner login", with(func(i *Identity) { i.UserLogin = "" }), self, Policy{}, false},
		{"no MagicDNS suffix known", with(func(i *Identity) { i.NodeName = "phone" }), Self{OwnerLogin: "me@example.com"}, Policy{}, true},
	}
	for _, c := range cases {
		v := Decide(c.id, c.self, c.policy)
		if v.Trusted != c.trusted || v.Reason == "" {
			t.Errorf("%s: %+v, want trusted=%v with a reason", c.name, v, c.trusted)
		}
	}
}

// fakeListener yields the connections it is given.
type fakeListener struct{ conns chan net.Conn }

func (l *fakeListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l *fakeListener) Close() error   { return nil }
func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// TestTailnetFunnelConn: E4. A connection that arrives as *ipn.FunnelConn
// (the public internet through Tailscale's ingress) is identified as
// Funnel, whatever WhoIs would say about the relay that carried it, and
// is never trusted; once it closes, the mark goes away.
func TestTailnetFunnelConn(t *testing.T) {
	n := &Node{funnel: map[string]bool{}}
	inner := &fakeListener{conns: make(chan net.Conn, 1)}
	ln := &listener{Listener: inner, n: n}
	a, b := net.Pipe()
	defer b.Close()
	relay := &net.TCPAddr{IP: net.ParseIP("100.64.0.7"), Port: 51000}
	inner.conns <- &ipn.FunnelConn{Conn: addrConn{Conn: a, remote: relay}, Src: netip.MustParseAddrPort("203.0.113.7:4444")}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	id, err := n.WhoIs(context.Background(), c.RemoteAddr().String())
	if err != nil || !id.Funnel {
		t.Fatalf("WhoIs(funnel conn) = %+v, %v; want a Funnel identity", id, err)
	}
	self := Self{OwnerLogin: "me@example.com", MagicDNSSuffix: "tail1234.ts.net"}
	if v := Decide(id, self, Policy{AllowedLogins: []string{"me@example.com"}, AllowedTags: []string{"tag:ci"}}); v.Trusted {
		t.Fatalf("funnel conn trusted: %+v", v)
	}
	c.Close()
	// After close the relay's address is an ordinary (here: unstarted,
	// so unidentifiable) tailnet address again.
	if _, err := n.WhoIs(context.Background(), relay.String()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("WhoIs after close: %v, want ErrNotRunning", err)
	}
}

// fakeLocalAPI answers WhoIs the way handler says, standing in for the
// node's local API, so the answers a real netmap cannot be made to give
// (no node, no profile, a stalled backend) are exercised.
func fakeLocalAPI(t *testing.T, handler http.HandlerFunc) *Node {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	var d net.Dialer
	lc := &local.Client{Dial: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }}
	return &Node{lc: lc, funnel: map[string]bool{}}
}

// TestTailnetWhoIsAnswers: E5. WhoIs answers that cannot vouch for a peer
// are errors, never identities, and never panics.
func TestTailnetWhoIsAnswers(t *testing.T) {
	const remote = "100.64.0.9:41000"
	node := `{"ID":9,"StableID":"nStable9","Name":"phone.tail1234.ts.net.","User":3,"Addresses":["100.64.0.9/32"]}`
	profile := `{"ID":3,"LoginName":"me@example.com","DisplayName":"Me"}`
	cases := []struct {
		name   string
		status int
		body   string
		want   error // nil: any error
		ok     func(Identity) bool
	}{
		{name: "no node", status: 200, body: `{"Node":null,"UserProfile":` + profile + `}`, want: ErrIncomplete},
		{name: "no profile", status: 200, body: `{"Node":` + node + `,"UserProfile":null}`, want: ErrIncomplete},
		{name: "empty object", status: 200, body: `{}`, want: ErrIncomplete},
		{name: "null", status: 200, body: `null`, want: ErrIncomplete},
		{name: "no stable id", status: 200, body: `{"Node":{"ID":9,"Name":"x."},"UserProfile":` + profile + `}`, want: ErrIncomplete},
		{name: "not JSON", status: 200, body: `<html>`},
		{name: "not found", status: 404, body: `no match for IP:port`, want: ErrUnknownPeer},
		{name: "backend error", status: 500, body: `boom`},
		{name: "expired", status: 200, body: `{"Node":{"ID":9,"StableID":"nStable9","Name":"phone.tail1234.ts.net.","User":3,"Expired":true},"UserProfile":` + profile + `}`, want: ErrExpiredPeer},
		{name: "ok", status: 200, body: `{"Node":` + node + `,"UserProfile":` + profile + `}`,
			ok: func(id Identity) bool {
				return id.NodeID == "nStable9" && id.NodeName == "phone.tail1234.ts.net" && id.UserLogin == "me@example.com" && !id.Funnel && !id.SharedIn
			}},
		{name: "funnel relay", status: 200, body: `{"Node":{"ID":9,"StableID":"nStable9","Name":"relay.tail1234.ts.net.","User":3,"UnsignedPeerAPIOnly":true},"UserProfile":` + profile + `}`,
			ok: func(id Identity) bool { return id.Funnel }},
		{name: "tagged", status: 200, body: `{"Node":{"ID":9,"StableID":"nStable9","Name":"ci.tail1234.ts.net.","User":3,"Tags":["tag:ci"]},"UserProfile":{"ID":3,"LoginName":"tagged-devices"}}`,
			ok: func(id Identity) bool { return id.UserLogin == "" && len(id.Tags) == 1 }},
		{name: "shared in", status: 200, body: `{"Node":{"ID":9,"StableID":"nStable9","Name":"pc.other.ts.net.","User":3,"Sharer":77},"UserProfile":` + profile + `}`,
			ok: func(id Identity) bool { return id.SharedIn }},
	}
	for _, c := range cases {
		n := fakeLocalAPI(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("addr") != remote {
				t.Errorf("%s: WhoIs asked about %q", c.name, r.URL.Query().Get("addr"))
			}
			w.WriteHeader(c.status)
			_, _ = w.Write([]byte(c.body))
		})
		id, err := n.WhoIs(context.Background(), remote)
		switch {
		case c.ok != nil:
			if err != nil || !c.ok(id) {
				t.Errorf("%s: WhoIs = %+v, %v", c.name, id, err)
			}
		case err == nil:
			t.Errorf("%s: WhoIs = %+v, want an error", c.name, id)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}

	// A backend that never answers: the caller's deadline ends it.
	block := make(chan struct{})
	n := fakeLocalAPI(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if id, err := n.WhoIs(ctx, remote); err == nil {
		t.Fatalf("WhoIs on a stalled backend = %+v, want an error", id)
	}
}

// TestStateRunningIsTailscales: Status.Running (in tsipc, which cannot
// import tailscale.com) names the same backend state as ipn.Running.
func TestStateRunningIsTailscales(t *testing.T) {
	if tsipc.StateRunning != ipn.Running.String() {
		t.Fatalf("tsipc.StateRunning = %q, ipn.Running is %q", tsipc.StateRunning, ipn.Running.String())
	}
}
