package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

// writeTimeout bounds one frame write; a peer that cannot take a frame in
// this time is gone or hostile.
const writeTimeout = 10 * time.Second

// Conn is one WebSocket client connection.
type Conn struct {
	srv         *Server
	ws          *websocket.Conn
	br          *bufio.Reader // what ws reads from; nil if not ours
	pre         *bytes.Reader // bytes sent with the upgrade request, read before the socket; reader only
	id          string
	arrival     Arrival
	nonce       string
	challengeTs int64
	log         *slog.Logger

	sess atomic.Pointer[Session] // set once the handshake succeeds

	mu          sync.Mutex
	queue       [][]byte
	queued      int
	seq         uint64
	closing     bool
	aborted     atomic.Bool // queued frames were dropped; stop writing them
	closeCode   int
	closeReason string
	// The writer goroutine runs only while there is something to send:
	// signal starts it, it exits once the queue is empty, so an idle
	// connection holds no writer stack. At most one runs at a time.
	writing bool
	pingDue bool // the tick asked for a ping; the writer sends it
	// direct: the socket may be written without a writer (writeDirect).
	// pending holds the unwritten rest of such a write; the writer sends
	// it before anything else.
	direct  bool
	pending []byte
	// wmu is held by every write of the socket through the WebSocket
	// (frames, pings, pongs, close frames); a direct write is made only
	// when TryLock gets it, so the two never interleave.
	wmu       sync.Mutex
	noWriter  bool // the reader has ended; end() finishes the close
	closeSent bool // the close frame went out (or the socket was closed)
	writers   sync.WaitGroup
	reading   sync.WaitGroup  // done when the reader has ended
	ctx       context.Context // canceled when the connection ends
	cancel    context.CancelFunc

	// poll is the connection's place in the server's poller, under mu
	// (fd is set once, before the connection is shared).
	poll         pollState
	readDeadline atomic.Int64 // unix ns; the poller wakes a parked conn past it

	unauthorizedStreak int       // touched only by the reader goroutine
	pingWindow         time.Time // reader goroutine only: ping rate window
	pings              int
	inflight           atomic.Int32 // async requests running (maxInflight)
}

// Arrival is what the listener knew about a connection at accept time. It
// travels with the connection into auth; nothing later re-derives it from
// addresses or headers.
type Arrival struct {
	Path      authn.Path
	Remote    netip.AddrPort
	Origin    string
	Host      string
	Forwarded bool // proxy headers were present on the upgrade request
	UserAgent string
	Peer      *PeerIdentity // set by the listener's Identify (tailnet WhoIs)
}

// Session is what a successful connect established.
type Session struct {
	Protocol    int
	Role        string
	Scopes      []string
	Client      protocol.ClientInfo
	Caps        []string
	DeviceID    string
	AuthMethod  string
	PresenceKey string
	ConnectedAt time.Time
}

// ID returns the connection id (a UUID, also sent as server.connId).
func (c *Conn) ID() string { return c.id }

// Session returns the connection's session, or nil before the handshake.
func (c *Conn) Session() *Session { return c.sess.Load() }

// Context is canceled when the connection closes.
func (c *Conn) Context() context.Context { return c.ctx }

// enqueue appends one encoded frame to the outbound queue. It never blocks:
// a queue that would exceed maxBufferedBytes closes the connection with
// 1008 "slow consumer" and drops what was queued.
func (c *Conn) enqueue(frame []byte) bool {
	return c.enqueueFrame(func() []byte { return frame })
}

// enqueueEvent stamps a broadcast event with this connection's next seq and
// queues it. payload is already encoded. The seq is taken and the frame
// queued under one lock, so concurrent broadcasters (the tick loop, the
// presence loop, a method) can never queue seq n+1 before n.
func (c *Conn) enqueueEvent(name string, payload json.RawMessage, sv *protocol.StateVersion) bool {
	return c.enqueueFrame(func() []byte {
		c.seq++
		seq := c.seq
		return encodeEvent(name, payload, &seq, sv)
	})
}

// enqueueFrame queues the frame build returns; build runs under c.mu.
func (c *Conn) enqueueFrame(build func() []byte) bool {
	return c.queueFrame(false, false, build)
}

// queueFrame sends the frame build returns, preceded by a ping if ping is
// set. When nothing is queued and no writer runs, the frame is written to
// the socket at once without blocking (writeDirect), which is the common
// case for responses, events and ticks; otherwise it joins the queue and
// a writer is started. build runs under c.mu. With scratch set, the
// frame is in a buffer the caller reuses, and is copied if it is queued.
func (c *Conn) queueFrame(ping, scratch bool, build func() []byte) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	frame := build()
	if c.direct && !c.writing && len(c.queue) == 0 && c.pending == nil && !c.pingDue && c.poll.state != pollGone {
		switch c.writeDirect(ping, frame) {
		case directDone:
			c.mu.Unlock()
			return true
		case directBroken:
			c.mu.Unlock()
			c.writeFailed()
			return false
		case directPartial:
			c.mu.Unlock()
			c.signal() // the writer sends the rest (c.pending)
			return true
		}
		// directBusy: queue it.
	}
	if scratch {
		frame = bytes.Clone(frame)
	}
	if ping {
		c.pingDue = true
	}
	if c.queued+len(frame) > c.srv.opts.MaxBufferedBytes {
		c.mu.Unlock()
		c.srv.metrics.slowConsumers.Add(1)
		c.log.Warn("closing slow consumer", "queuedBytes", c.queued)
		c.abort(protocol.ClosePolicy, "slow consumer")
		return false
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.mu.Unlock()
	c.signal()
	return true
}

// signal makes sure a writer runs to send what is queued (and the close
// frame once closing is set).
func (c *Conn) signal() {
	c.mu.Lock()
	start := !c.writing && !c.noWriter
	if start {
		c.writing = true
		c.writers.Add(1)
		c.srv.wg.Add(1)
	}
	c.mu.Unlock()
	if start {
		c.srv.metrics.writerStarts.Add(1)
		go func() {
			defer c.srv.wg.Done()
			defer c.writers.Done()
			c.writeLoop()
		}()
	}
}

// send encodes v and queues it.
func (c *Conn) send(v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("encode frame", "err", err)
		return false
	}
	return c.enqueue(b)
}

// closeAfterFlush asks the writer to send everything queued, then the close
// frame.
func (c *Conn) closeAfterFlush(code int, reason string) {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.closeCode, c.closeReason = code, truncateReason(reason)
	}
	c.mu.Unlock()
	c.signal()
}

// abort drops the queue and closes with code at once; used for slow
// consumers and revoked devices.
func (c *Conn) abort(code int, reason string) {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.closeCode, c.closeReason = code, truncateReason(reason)
	}
	c.queue, c.queued = nil, 0
	c.mu.Unlock()
	// The writer drops the rest of the batch it holds; a write already in
	// flight ends when the peer reads or at writeTimeout.
	c.aborted.Store(true)
	c.signal()
}

// writeLoop is the connection's only writer while it runs. It sends
// batches until the queue is empty, then returns; after a close request it
// sends the close frame and returns for good.
func (c *Conn) writeLoop() {
	for {
		c.mu.Lock()
		batch, pending := c.queue, c.pending != nil
		c.queue, c.queued = nil, 0
		closing, ping := c.closing, c.pingDue
		c.pingDue = false
		if len(batch) == 0 && !pending && !closing && !ping || c.ctx.Err() != nil && !closing {
			// Nothing to send, or the reader has ended and its
			// finishClose takes over. After closeAfterFlush the
			// batch still goes out before the close frame, even if
			// the reader ended before this writer first ran.
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if pending && !c.writeRest() {
			return
		}
		if ping && !closing && !c.aborted.Load() {
			// Only this connection's writer waits on its peer: a ping to
			// a peer that does not read delays no one else (tickAll).
			_ = c.lockWrites()
			_ = c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout))
			c.wmu.Unlock()
		}
		for _, frame := range batch {
			if c.aborted.Load() {
				break
			}
			_ = c.lockWrites()
			_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
			err := c.ws.WriteMessage(websocket.TextMessage, frame)
			c.wmu.Unlock()
			if err != nil {
				c.writeFailed()
				return
			}
		}
		if closing || c.aborted.Load() {
			c.sendClose()
			return
		}
	}
}

// writeRest sends the unwritten rest of a direct write. It is whole frames
// to the peer only together with what writeDirect wrote, so it goes out
// even if the connection is being aborted.
func (c *Conn) writeRest() bool {
	err := c.lockWrites()
	c.wmu.Unlock()
	if err != nil {
		c.writeFailed()
		return false
	}
	return true
}

// lockWrites takes wmu for a write of the writer or of the close frame and
// first sends the rest of a cut direct write, so nothing lands inside that
// frame (the reader's pongs and close echoes use lockControl). c.mu is
// taken under wmu: the other order only TryLocks wmu.
func (c *Conn) lockWrites() error {
	c.wmu.Lock()
	c.mu.Lock()
	rest := c.pending
	c.pending = nil
	c.mu.Unlock()
	if rest == nil {
		return nil
	}
	nc := c.ws.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := nc.Write(rest)
	return err
}

// writeFailed ends a connection whose socket could not be written.
func (c *Conn) writeFailed() {
	c.mu.Lock()
	c.closeSent = true // nothing more can be written
	c.mu.Unlock()
	c.cancel()
	c.closeSocket()
}

// sendClose sends the requested close frame once, then waits for the
// reader (writeClose).
func (c *Conn) sendClose() {
	c.mu.Lock()
	if c.closeSent {
		c.mu.Unlock()
		return
	}
	c.closeSent = true
	code, reason := c.closeCode, c.closeReason
	// The rest of a direct write the writer never got to (the reader
	// ended first) goes before the close frame, or the frame is cut.
	c.mu.Unlock()
	if !c.writeRest() {
		return
	}
	c.writeClose(code, reason)
}

// finishClose runs on the reader goroutine once it has ended: it waits
// for a running writer, and sends the requested close frame if the writer
// did not, or just releases the socket.
func (c *Conn) finishClose() {
	c.mu.Lock()
	c.noWriter = true
	c.mu.Unlock()
	c.writers.Wait()
	c.mu.Lock()
	closing, sent := c.closing, c.closeSent
	c.mu.Unlock()
	if closing && !sent {
		c.sendClose()
		return
	}
	c.closeSocket()
}

// writeClose sends the close frame and gives the peer a moment to answer
// before the socket is torn down.
func (c *Conn) writeClose(code int, reason string) {
	// The close frame can wait behind megabytes a slow consumer that
	// resumed reading has still to take: writeTimeout, as for any frame.
	_ = c.lockWrites()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(writeTimeout))
	c.wmu.Unlock()
	deadline := time.Now().Add(time.Second)
	// The reader sees the peer's answering close frame and returns; the
	// read deadline bounds that wait for peers that never answer.
	c.setReadDeadline(deadline)
	c.wake() // a parked connection needs its reader to see the answer
	c.reading.Wait()
	c.closeSocket()
}

// truncateReason keeps a close reason within the 123 bytes RFC 6455 allows,
// cutting on a rune boundary.
func truncateReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// encodeEvent builds an event frame. It runs once per recipient of every
// broadcast (each frame carries that connection's seq), so the common case
// is appended by hand; the bytes are exactly what json.Marshal of
// protocol.Event gives (TestEncodeEventMatchesMarshal). payload must be
// json.Marshal output (valid, compact, HTML-escaped), as mustJSON gives.
func encodeEvent(name string, payload json.RawMessage, seq *uint64, sv *protocol.StateVersion) []byte {
	if !plainEventName(name) {
		ev := protocol.Event{Type: protocol.TypeEvent, Event: name, Seq: seq, StateVersion: sv}
		if len(payload) > 0 {
			ev.Payload = payload
		}
		b, _ := json.Marshal(ev)
		return b
	}
	return appendEvent(make([]byte, 0, len(payload)+len(name)+96), name, payload, seq, sv)
}

// appendEvent appends the frame encodeEvent builds to b; name needs no
// escaping (plainEventName).
func appendEvent(b []byte, name string, payload json.RawMessage, seq *uint64, sv *protocol.StateVersion) []byte {
	b = append(b, `{"type":"event","event":"`...)
	b = append(b, name...)
	b = append(b, '"')
	if len(payload) > 0 {
		b = append(b, `,"payload":`...)
		b = append(b, payload...)
	}
	if seq != nil {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, *seq, 10)
	}
	if sv != nil {
		b = append(b, `,"stateVersion":{"presence":`...)
		b = strconv.AppendUint(b, sv.Presence, 10)
		b = append(b, `,"health":`...)
		b = strconv.AppendUint(b, sv.Health, 10)
		b = append(b, '}')
	}
	return append(b, '}')
}

// plainEventName: the name needs no JSON escaping.
func plainEventName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}
