// Package fake is a local Discord for tests: REST under /api/v9 (gateway
// discovery, users/@me, create and edit channel messages, "Bot" token
// auth) and the gateway over a WebSocket (HELLO, IDENTIFY → READY as a
// zlib frame, RESUME with replay of missed dispatches, heartbeats and
// their ACKs, MESSAGE_CREATE and other dispatches shaped like the Discord
// documentation's examples, close 4004 on a bad token). It imports no
// Discord SDK, so it checks a client against the protocol rather than
// against itself.
package fake
