// Package webchat is the WebChat page: static files embedded in the
// binary and served by the gateway on its own port, with no build step.
//
// The page keeps an Ed25519 device key made with WebCrypto (the private
// key is non-extractable and lives in IndexedDB), signs the v3 connect
// payload for each challenge, and waits for an operator to approve its
// pairing request (it shows the request id meanwhile). Once approved it
// connects with the device token the gateway issued, shows the session's
// history, sends messages, streams the replies, aborts a run, and after
// a disconnect reconnects with backoff and refetches the history (events
// are not replayed).
//
// Handler serves the files with a strict Content-Security-Policy (scripts
// and styles only from the page's own origin, WebSocket connections only
// to it, no framing), and the page never inserts HTML: all text is set
// with textContent. It imports only the standard library.
package webchat
