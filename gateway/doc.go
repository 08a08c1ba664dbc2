// Package gateway is clawgate's composition root: the HTTP and WebSocket
// server on the gateway port, the connection lifecycle (challenge, connect,
// dispatch, close), the event bus with per-connection sequence numbers,
// presence, the idempotency cache and the method handlers.
//
// Each connection has exactly one reader (the goroutine that accepted it)
// and one writer goroutine; every outbound queue is bounded by
// protocol.MaxBufferedBytes, and a client that falls that far behind is
// closed with 1008 "slow consumer" without slowing anyone else.
package gateway
