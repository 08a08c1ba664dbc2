package gateway

import "net"

// RelayedConn is a Unix socket that stands for a connection accepted by
// another process (the tailnet node's helper relays each tailnet
// connection through a socket pair): it reports that connection's
// addresses, so the listener's Host check, Identify and the per-peer
// accounting see the tailnet peer. Idle connections are polled and
// written directly on its socket like a TCP connection's.
type RelayedConn struct {
	*net.UnixConn
	Local, Remote net.Addr
}

// LocalAddr is the address the relayed connection arrived at.
func (c *RelayedConn) LocalAddr() net.Addr { return c.Local }

// RemoteAddr is the relayed connection's peer.
func (c *RelayedConn) RemoteAddr() net.Addr { return c.Remote }
