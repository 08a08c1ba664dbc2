// Package tsnode joins the gateway to a tailnet with tailscale.com/tsnet
// (userspace networking: no tailscaled, no root) and answers who a tailnet
// peer is. It is the only package that imports tailscale.com, and only the
// clawgate-tailnet helper (cmd/clawgate-tailnet) imports it: the gateway
// binary speaks to that process over ipc (package tsipc) and links none of
// the node.
//
// A [Node] keeps its state in its own 0700 directory, takes its auth key
// from the caller (never logged), surfaces the interactive login URL, and
// watches the netmap: when a peer leaves it or its key expires, the node
// reports it so the caller can close that peer's sockets.
//
// Identity comes only from the tailnet's cryptographic view of the
// connection: [Node.WhoIs] maps a connection's remote address to the
// node, its owner, its tags and whether it is shared in from another
// tailnet. [Decide] turns that into a trust verdict under a [Policy];
// every error, timeout, unknown or expired peer fails closed. Headers are
// never consulted.
package tsnode
