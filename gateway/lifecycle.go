package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/protocol"
)

// maxInflight bounds the asynchronous requests one connection may have
// running at once.
const maxInflight = 32

// runConn owns a connection from 101 until it is closed. It runs the
// handshake in the HTTP handler goroutine; once the connection is
// authenticated the handler goroutine returns, so its grown stack and
// everything net/http keeps for a hijacked request (its 4 KiB bufio reader
// and writer, the parsed request) are released while the connection stays
// open. Where the socket can be polled (poll_linux.go), an idle
// authenticated connection then holds no goroutine at all: the poller
// starts a reader when bytes arrive and the reader parks the connection
// again once everything received is handled. Elsewhere a reader goroutine
// per connection waits in read. Either way one reader at a time.
// br is the buffered reader the WebSocket reads from and pre what it reads
// before the socket, or nil (see hijackReader).
func (s *Server) runConn(ws *websocket.Conn, br *bufio.Reader, pre *bytes.Reader, arrival Arrival, ip string) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		srv:     s,
		ws:      ws,
		br:      br,
		pre:     pre,
		id:      newUUID(),
		arrival: arrival,
		nonce:   newUUID(),
		ctx:     ctx,
		cancel:  cancel,
	}
	c.reading.Add(1)
	c.poll.fd = -1
	if s.poll.Load() != nil && br != nil {
		c.poll.fd = int32(connFD(ws.NetConn()))
		c.direct = c.poll.fd >= 0
	}
	c.log = slog.New(connLogHandler{s.log.Handler(), c})
	if !s.addConn(c) {
		cancel()
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(protocol.CloseServiceRestart, "service restart"), time.Now().Add(time.Second))
		_ = ws.Close()
		s.releasePreauth(ip)
		return
	}
	ws.SetReadLimit(protocol.MaxPreauthPayload)
	ws.SetPingHandler(c.onPing)
	ws.SetCloseHandler(c.onClose)
	_ = ws.SetReadDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	c.challengeTs = s.nowMs()
	c.send(protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventChallenge,
		Payload: protocol.Challenge{Nonce: c.nonce, Ts: c.challengeTs}})

	if !c.handshake() {
		c.drain()
		c.end(ip)
		return
	}
	s.releasePreauth(ip)
	c.nonce = "" // only the handshake needed it
	ws.SetReadLimit(protocol.MaxPayload)
	c.armReadDeadline()
	ws.SetPongHandler(func(string) error { c.onPong(); return nil })
	s.onConnected(c)
	if c.buffered() || !c.park() {
		c.startReader()
	}
}

// end is the reader's last step, on whichever goroutine read last: it
// finishes the close, releases the pre-auth slot of an unauthenticated
// connection (preauthIP) and forgets the connection.
func (c *Conn) end(preauthIP string) {
	c.reading.Done()
	c.cancel()
	c.finishClose()
	if preauthIP != "" {
		c.srv.releasePreauth(preauthIP)
	}
	c.srv.removeConn(c)
}

// connLogHandler adds a connection's attributes to each record it logs,
// so an idle connection keeps no handler with preformatted attributes.
type connLogHandler struct {
	slog.Handler
	c *Conn
}

func (h connLogHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(slog.String("conn", h.c.id[:8]), slog.String("remote", h.c.arrival.Remote.String()),
		slog.String("listener", h.c.arrival.Path.String()))
	return h.Handler.Handle(ctx, r)
}

func (h connLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return connLogHandler{h.Handler.WithAttrs(as), h.c}
}

func (h connLogHandler) WithGroup(name string) slog.Handler {
	return connLogHandler{h.Handler.WithGroup(name), h.c}
}

// startReader runs the connection's reader on a fresh goroutine. The caller
// has made it the only reader (the handshake is over, or it took the
// connection out of the poller).
func (c *Conn) startReader() {
	c.srv.metrics.readerStarts.Add(1)
	c.srv.wg.Add(1)
	go func() {
		defer c.srv.wg.Done()
		c.readLoop()
	}()
}

// buffered reports whether bytes received are waiting in the connection's
// read buffer, which the poller cannot see.
func (c *Conn) buffered() bool {
	if c.pre != nil && c.pre.Len() == 0 {
		c.pre = nil // drained: the socket is read directly from here on
	}
	return c.br != nil && c.br.Buffered() > 0 || c.pre != nil
}

// armReadDeadline allows two tick intervals of silence (plus a slack of
// half a tick, at most 5 s) before an authenticated peer is considered
// gone; any frame or pong re-arms it.
func (c *Conn) armReadDeadline() {
	tick := c.srv.opts.TickInterval
	c.setReadDeadline(time.Now().Add(2*tick + min(tick/2, 5*time.Second)))
}

// onPong re-arms the read deadline for a pong, unless the connection is
// closing: then the close wait stands.
func (c *Conn) onPong() {
	if !c.isClosing() {
		c.armReadDeadline()
	}
}

// setReadDeadline sets the socket's read deadline and records it for the
// poller, which wakes a parked connection whose deadline has passed so its
// reader sees the timeout.
func (c *Conn) setReadDeadline(t time.Time) {
	c.readDeadline.Store(t.UnixNano())
	_ = c.ws.NetConn().SetReadDeadline(t)
}

// maxPingsPerSecond bounds the pings a peer may send. Clients ping every
// few seconds at most; a flood is closed with 1008 instead of being
// answered pong for pong (G5).
const maxPingsPerSecond = 50

// onPing answers a ping with a pong, within the rate limit. It runs on the
// reader goroutine (gorilla calls it while reading).
func (c *Conn) onPing(data string) error {
	now := time.Now()
	if now.Sub(c.pingWindow) >= time.Second {
		c.pingWindow, c.pings = now, 0
	}
	c.pings++
	switch {
	case c.pings == maxPingsPerSecond+1:
		c.log.Warn("closing: ping flood")
		c.closeAfterFlush(protocol.ClosePolicy, "too many pings")
		return nil
	case c.pings > maxPingsPerSecond:
		return nil
	}
	if !c.lockControl(now.Add(time.Second)) {
		return nil // the writer is stuck on this peer: no pong, as before
	}
	err := c.ws.WriteControl(websocket.PongMessage, []byte(data), now.Add(time.Second))
	c.wmu.Unlock()
	if err != nil {
		// Part of the pong may be out: only gorilla's writer, which
		// knows its write failed, may write to this socket from now on.
		c.stopDirect()
	}
	if err != nil && !errors.Is(err, websocket.ErrCloseSent) && !isTimeout(err) {
		return err
	}
	return nil
}

// lockControl takes wmu for a control frame the reader writes (a pong, a
// close echo), waiting until deadline at most, as gorilla's own write lock
// would, so a writer stuck on a peer that does not read cannot hold the
// reader for its whole writeTimeout. It gives up, too, while the rest of
// a cut direct write is waiting for the writer: the control frame may not
// go before it.
func (c *Conn) lockControl(deadline time.Time) bool {
	for !c.wmu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	c.mu.Lock()
	cut := c.pending != nil
	c.mu.Unlock()
	if cut {
		c.wmu.Unlock()
		return false
	}
	return true
}

// stopDirect makes every later frame go through gorilla's writer: after a
// close frame, or a control write that failed part way, a direct write
// would put bytes where the peer may not find a frame boundary.
func (c *Conn) stopDirect() {
	c.mu.Lock()
	c.direct = false
	c.mu.Unlock()
}

// onClose answers the peer's close frame with the same code, as gorilla's
// default handler does, but under wmu (writeDirect).
func (c *Conn) onClose(code int, _ string) error {
	c.stopDirect() // nothing may follow the close frame
	if c.lockControl(time.Now().Add(time.Second)) {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		c.wmu.Unlock()
	}
	return nil
}

// drain keeps reading after a close was requested so the peer's answering
// close frame is consumed; the writer bounds this with a read deadline.
func (c *Conn) drain() {
	for {
		if _, _, err := c.ws.ReadMessage(); err != nil {
			return
		}
	}
}

// readFrame reads one text message and applies the transport rules that
// hold before and after the handshake. It returns ok=false when the
// connection must end; the close has then been requested already.
func (c *Conn) readFrame() (data []byte, ok bool) {
	mt, data, err := c.ws.ReadMessage()
	if err != nil {
		c.onReadError(err)
		return nil, false
	}
	if mt != websocket.TextMessage {
		if c.Session() == nil {
			// The real gateway ends such a handshake with a plain 1000.
			c.closeAfterFlush(protocol.CloseNormal, "")
			return nil, false
		}
		c.closeAfterFlush(protocol.CloseInvalidPayload, "binary frames are not supported")
		return nil, false
	}
	if !utf8.Valid(data) {
		c.closeAfterFlush(protocol.CloseInvalidPayload, "invalid UTF-8")
		return nil, false
	}
	return data, true
}

func (c *Conn) onReadError(err error) {
	// gorilla may have written a close frame of its own (1002, 1009):
	// from here on only its writer, which knows that, writes.
	c.stopDirect()
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		// The peer closed; gorilla already echoed its close frame.
	case errors.Is(err, websocket.ErrReadLimit):
		// Over the limit, gorilla has sent 1009 itself and this second
		// close frame is never written (ErrCloseSent). A frame whose
		// 64-bit length has the top bit set gets the same error with no
		// close frame: that is a protocol error, 1002 (G4).
		c.srv.log.Debug("frame over limit or invalid length", "conn", c.id[:8])
		c.closeAfterFlush(protocol.CloseProtocolError, "invalid frame length")
	case isTimeout(err):
		if c.Session() == nil {
			c.log.Debug("handshake timeout")
			c.closeAfterFlush(protocol.CloseNormal, "")
			return
		}
		c.log.Debug("read timeout")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readLoop handles frames after the handshake until the connection ends
// or, for a polled connection, until everything received has been handled
// and the connection is parked in the poller again.
func (c *Conn) readLoop() {
	if c.poll.ready {
		// Woken by bytes that arrived: allow a short grace to read them
		// even if the deadline has passed since (unpark).
		c.poll.ready = false
		tick := c.srv.opts.TickInterval
		grace := time.Now().Add(min(tick/2, 5*time.Second))
		if d := time.Unix(0, c.readDeadline.Load()); d.Before(grace) {
			c.setReadDeadline(grace)
		}
	}
	for {
		if c.poll.fd >= 0 && c.readControl() {
			if !c.buffered() && c.park() {
				return
			}
			continue
		}
		data, ok := c.readFrame()
		if !ok {
			c.drain()
			c.srv.onDisconnected(c)
			c.end("")
			return
		}
		c.armReadDeadline()
		if !c.isClosing() {
			c.handleFrame(data)
		}
		if c.poll.fd >= 0 && !c.buffered() && c.park() {
			return
		}
	}
}

func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// handleFrame validates one post-handshake frame and dispatches it. Invalid
// frames get an INVALID_REQUEST response and the socket stays open.
func (c *Conn) handleFrame(data []byte) {
	v, err := protocol.ParseStrict(data)
	if err != nil {
		c.send(protocol.ErrResponse("invalid", invalidFrame(err.Error())))
		return
	}
	obj, _ := v.(map[string]any)
	id, _ := obj["id"].(string)
	if id == "" {
		id = "invalid"
	}
	if t, _ := obj["type"].(string); t == protocol.TypeCancel {
		if c.srv.contract.Validate("CancelFrame", v) != nil {
			c.send(protocol.ErrResponse(id, invalidFrame("bad cancel frame")))
		}
		return // cancel is accepted and ignored
	}
	if err := c.srv.contract.Validate("RequestFrame", v); err != nil {
		c.send(protocol.ErrResponse(id, invalidFrame(err.Error())))
		return
	}
	var req protocol.Request
	if err := json.Unmarshal(data, &req); err != nil {
		c.send(protocol.ErrResponse(id, invalidFrame(err.Error())))
		return
	}
	c.srv.dispatch(c, &req, obj["params"])
}

func (s *Server) addConn(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) removeConn(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}
