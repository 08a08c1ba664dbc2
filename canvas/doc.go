// Package canvas is the canvas host: HTML pages (and their scripts, styles
// and images) that an agent or operator writes and that nodes (phones,
// Macs) display. It runs on its own HTTP listener, apart from the gateway
// port, so pages never share an origin with the gateway's WebChat or its
// credentials.
//
// Files live in <state>/canvas/<agentId>/ and are read and written only
// through an os.Root: a path is split into segments that are each decoded
// once and refused when they are empty, "." or "..", hidden (a leading
// dot), or still hold a '%', '\\', '/' or control character after
// decoding, so "..", "%2e%2e", "..%2f" and the double-encoded "%252e%252e"
// never reach the file system; the os.Root then refuses any symlink that
// leads outside the root.
//
// Every request needs a capability: an unguessable 128-bit token minted for
// one live node session (Mint), carried in the path as
// /__openclaw__/cap/<token>/… (OpenClaw's scoped-URL form). A capability
// ends when its session ends, when the session refreshes it, or when it has
// not been used for its time to live; and it is honoured only from the
// address the node session came from. No capability: 401; a dead one: 401;
// someone else's (another address): 403; a bad or missing path: 404.
//
// Pages get a strict Content-Security-Policy (no inline script, no
// third-party origins, no framing), no-referrer, nosniff and no-store, and
// no cookies. Live reload is a WebSocket at /__openclaw__/ws under the same
// capability: it sends "reload" when a file of the canvas changes, and a
// small same-origin script added to HTML pages reloads them.
package canvas
