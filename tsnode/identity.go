package tsnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"tailscale.com/client/local"
	"tailscale.com/ipn"
	"tailscale.com/net/tsaddr"

	"github.com/clawgate/clawgate/tsnode/tsipc"
)

// Errors of WhoIs. Each one means the peer is not identified: the caller
// treats it as remote and unauthenticated.
var (
	ErrNotTailnetAddr = errors.New("tsnode: remote address is not a tailnet address")
	ErrUnknownPeer    = errors.New("tsnode: peer not in the netmap")
	ErrExpiredPeer    = errors.New("tsnode: peer's node key has expired")
	ErrIncomplete     = errors.New("tsnode: WhoIs answer lacks the node or its owner")
	ErrNotRunning     = errors.New("tsnode: node not started")
)

// Identity is who the tailnet says a peer is (defined in tsipc, which
// the gateway imports to receive it from the helper).
type Identity = tsipc.Identity

// WhoIs identifies the peer at remoteAddr ("ip:port" of an accepted
// connection) from the node's netmap. Any doubt is an error: an address
// outside the tailnet ranges (e.g. a proxied loopback connection), an
// unknown or expired peer, an incomplete answer, or ctx ending.
func (n *Node) WhoIs(ctx context.Context, remoteAddr string) (Identity, error) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return Identity{}, fmt.Errorf("tsnode.WhoIs %q: %w", remoteAddr, err)
	}
	if n.isFunnel(remoteAddr) {
		return Identity{Funnel: true}, nil
	}
	if !tsaddr.IsTailscaleIP(ap.Addr()) {
		return Identity{}, fmt.Errorf("tsnode.WhoIs %s: %w", ap.Addr(), ErrNotTailnetAddr)
	}
	n.mu.Lock()
	lc := n.lc
	n.mu.Unlock()
	if lc == nil {
		return Identity{}, ErrNotRunning
	}
	who, err := lc.WhoIs(ctx, remoteAddr)
	switch {
	case errors.Is(err, local.ErrPeerNotFound):
		return Identity{}, fmt.Errorf("tsnode.WhoIs %s: %w", ap.Addr(), ErrUnknownPeer)
	case err != nil:
		return Identity{}, fmt.Errorf("tsnode.WhoIs %s: %w", ap.Addr(), err)
	case who == nil || who.Node == nil || who.UserProfile == nil:
		return Identity{}, fmt.Errorf("tsnode.WhoIs %s: %w", ap.Addr(), ErrIncomplete)
	}
	node := who.Node
	if node.Expired {
		return Identity{}, fmt.Errorf("tsnode.WhoIs %s: %w", ap.Addr(), ErrExpiredPeer)
	}
	id := Identity{
		NodeID:   string(node.StableID),
		NodeName: strings.TrimSuffix(node.Name, "."),
		Tags:     slices.Clone(node.Tags),
		SharedIn: node.Sharer != 0 || node.Hostinfo.Valid() && node.Hostinfo.ShareeNode(),
		// Funnel ingress relays are unsigned peers; what they carry is
		// the public internet.
		Funnel: node.UnsignedPeerAPIOnly,
	}
	for _, p := range node.Addresses {
		id.Addrs = append(id.Addrs, p.Addr())
	}
	if id.NodeID == "" {
		return Identity{}, fmt.Errorf("tsnode.WhoIs %s: %w", ap.Addr(), ErrIncomplete)
	}
	// A tagged node has no human owner: in production its profile is the
	// "tagged-devices" pseudo-user. Never map it to a login.
	if !node.IsTagged() {
		id.UserLogin = who.UserProfile.LoginName
	}
	return id, nil
}

// Policy says which tailnet peers may pair without an operator's
// approval (still with a signed challenge).
type Policy struct {
	// AllowedLogins are owner logins whose devices are trusted. Empty:
	// the login that owns the gateway node (none if it is tagged).
	AllowedLogins []string
	// AllowedTags trust tagged nodes that carry one of these tags.
	// Empty: no tagged node is trusted.
	AllowedTags []string
}

// Self is what Decide needs to know about the gateway's own node.
type Self struct {
	OwnerLogin     string // "" when the gateway node is tagged
	MagicDNSSuffix string // e.g. "tail1234.ts.net"
}

// Verdict is a trust decision and why (defined in tsipc).
type Verdict = tsipc.Verdict

// Decide applies p to a peer identified by WhoIs. The order matters:
// Funnel and shared-in nodes are never trusted whatever their login or
// tags; a tagged node is judged by its tags only; a person's device by
// its owner's login.
func Decide(id Identity, self Self, p Policy) Verdict {
	switch {
	case id.Funnel:
		return Verdict{Reason: "funnel (public internet)"}
	case id.SharedIn:
		return Verdict{Reason: "shared in from another tailnet"}
	case id.NodeID == "":
		return Verdict{Reason: "unidentified"}
	case self.MagicDNSSuffix != "" && !strings.HasSuffix(strings.ToLower(id.NodeName), "."+strings.ToLower(self.MagicDNSSuffix)):
		return Verdict{Reason: "node name outside this tailnet"}
	case len(id.Tags) > 0:
		for _, t := range id.Tags {
			if containsFold(p.AllowedTags, t) {
				return Verdict{Trusted: true, Reason: "allowed tag " + t}
			}
		}
		return Verdict{Reason: "tagged node without an allowed tag"}
	case id.UserLogin == "":
		return Verdict{Reason: "no owner login"}
	}
	logins := p.AllowedLogins
	if len(logins) == 0 {
		if self.OwnerLogin == "" {
			return Verdict{Reason: "gateway node has no owner login and no allowed logins are configured"}
		}
		logins = []string{self.OwnerLogin}
	}
	if containsFold(logins, id.UserLogin) {
		return Verdict{Trusted: true, Reason: "allowed login"}
	}
	return Verdict{Reason: "another user"}
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// Self returns the gateway node's own facts for Decide.
func (n *Node) Self() Self {
	st := n.Status()
	return Self{OwnerLogin: st.OwnerLogin, MagicDNSSuffix: st.MagicDNSSuffix}
}

// Decide is Decide with the node's current Self.
func (n *Node) Decide(id Identity, p Policy) Verdict { return Decide(id, n.Self(), p) }

// Identify is WhoIs followed by Decide with the node's current Self.
func (n *Node) Identify(ctx context.Context, remoteAddr string, p Policy) (Identity, Verdict, error) {
	id, err := n.WhoIs(ctx, remoteAddr)
	if err != nil {
		return Identity{}, Verdict{Reason: "not identified"}, err
	}
	return id, n.Decide(id, p), nil
}

// listener marks connections that arrive through Funnel, so WhoIs never
// vouches for them. A plain tsnet listener yields none; this is defence in
// depth should a Funnel-capable listener ever be passed through.
type listener struct {
	net.Listener
	n *Node
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if fc, ok := c.(*ipn.FunnelConn); ok {
		key := fc.RemoteAddr().String()
		l.n.setFunnel(key, true)
		return &funnelConn{FunnelConn: fc, release: func() { l.n.setFunnel(key, false) }}, nil
	}
	return c, nil
}

type funnelConn struct {
	*ipn.FunnelConn
	once    sync.Once
	release func()
}

func (c *funnelConn) Close() error {
	c.once.Do(c.release)
	return c.FunnelConn.Close()
}

func (n *Node) setFunnel(remote string, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if on {
		n.funnel[remote] = true
	} else {
		delete(n.funnel, remote)
	}
}

func (n *Node) isFunnel(remote string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.funnel[remote]
}
