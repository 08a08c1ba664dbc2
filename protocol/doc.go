// Package protocol is the wire contract of the OpenClaw Gateway WebSocket
// protocol as clawgate speaks it: frames, params and result types, error
// codes, details codes, close codes, protocol versions and the embedded JSON
// Schema every inbound frame is validated against.
//
// It imports only the standard library, so every other package (and any Go
// client) can depend on it without pulling in the gateway.
package protocol
