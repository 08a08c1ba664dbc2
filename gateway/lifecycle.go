package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/protocol"
)

// maxInflight bounds the asynchronous requests one connection may have
// running at once.
const maxInflight = 32

// runConn owns a connection from 101 until it is closed. It runs in the
// HTTP handler goroutine, which is the connection's only reader.
func (s *Server) runConn(ws *websocket.Conn, arrival Arrival, ip string) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		srv:        s,
		ws:         ws,
		id:         newUUID(),
		arrival:    arrival,
		nonce:      newUUID(),
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
		readerDone: make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		inflight:   make(chan struct{}, maxInflight),
	}
	c.log = s.log.With("conn", c.id[:8], "remote", arrival.Remote.String(), "listener", arrival.Path.String())
	if !s.addConn(c) {
		cancel()
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(protocol.CloseServiceRestart, "service restart"), time.Now().Add(time.Second))
		_ = ws.Close()
		s.releasePreauth(ip)
		return
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); c.writeLoop() }()

	authed := false
	defer func() {
		close(c.readerDone)
		cancel()
		<-c.writerDone
		if !authed {
			s.releasePreauth(ip)
		}
		s.removeConn(c)
	}()

	ws.SetReadLimit(protocol.MaxPreauthPayload)
	_ = ws.SetReadDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	c.challengeTs = s.nowMs()
	c.send(protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventChallenge,
		Payload: protocol.Challenge{Nonce: c.nonce, Ts: c.challengeTs}})

	if !c.handshake() {
		c.drain()
		return
	}
	authed = true
	s.releasePreauth(ip)
	ws.SetReadLimit(protocol.MaxPayload)
	c.armReadDeadline()
	ws.SetPongHandler(func(string) error { c.armReadDeadline(); return nil })
	s.onConnected(c)
	defer s.onDisconnected(c)
	c.readLoop()
}

// armReadDeadline allows two tick intervals of silence (plus slack) before
// an authenticated peer is considered gone; any frame or pong re-arms it.
func (c *Conn) armReadDeadline() {
	_ = c.ws.SetReadDeadline(time.Now().Add(2*c.srv.opts.TickInterval + 5*time.Second))
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
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		// The peer closed; gorilla already echoed its close frame.
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has sent 1009 itself.
		c.srv.log.Debug("frame over limit", "conn", c.id[:8])
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

// readLoop handles frames after the handshake until the connection ends.
func (c *Conn) readLoop() {
	for {
		data, ok := c.readFrame()
		if !ok {
			c.drain()
			return
		}
		c.armReadDeadline()
		if c.isClosing() {
			continue
		}
		c.handleFrame(data)
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
