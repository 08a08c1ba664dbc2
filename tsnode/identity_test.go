package tsnode

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"tailscale.com/ipn"
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
