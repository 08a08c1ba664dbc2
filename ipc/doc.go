// Package ipc connects the gateway to its helper processes: a bidirectional
// RPC over a Unix stream socket (either side can call the other, calls can be
// cancelled, and open file descriptors can travel with a call), and the start,
// lookup and stop of a helper binary.
//
// The gateway keeps the heavy SDKs (the tailnet node, WhatsApp) out of its own
// binary: each runs in a helper started only when it is configured, so a
// gateway that uses neither does not carry their code or their memory, and a
// fault in one does not take the gateway down.
//
// A frame is a 4-byte big-endian length and one JSON object. The peer is
// another clawgate binary, but frames are still parsed defensively: a
// malformed frame closes the connection.
package ipc
