package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
)

// An idle authenticated connection holds no goroutine where the socket can
// be polled (poll_linux.go): its reader parks it in the server's poller
// once everything received is handled, and the poller starts a reader
// again when bytes arrive, when its read deadline passes, or when a close
// needs the reader. The state below is guarded by the connection's mu;
// whoever moves it from parked to reading becomes the only reader.

// pollState is a connection's place in the poller.
type pollState struct {
	fd         int32  // the socket, or -1 when the connection is not polled
	slot       uint32 // the poller's key for the connection while registered
	gen        uint32 // arming count; a stale readiness event carries an old one
	state      uint8
	registered bool
	// ready: the reader was started by a readiness event (see unpark).
	ready bool
}

const (
	pollReading uint8 = iota // a reader goroutine owns the connection
	pollParked               // armed in the poller; no goroutine
	pollGone                 // the socket is closed or closing; never armed again
)

// readBufferSize is the read buffer of every WebSocket connection (a
// malloc size class just over 256). gorilla adopts a hijacked reader
// larger than 256 bytes as its own when the upgrader's ReadBufferSize is
// 0, so the gateway can see what is buffered (Conn.buffered). A control
// frame (at most 131 bytes) fits; larger reads go straight into the
// message.
const readBufferSize = 288

// park hands the connection to the poller: the reader goroutine returns
// and the next readiness event starts a new one. It returns false, and the
// caller keeps reading, when the connection is not polled, is closing, or
// cannot be armed.
func (c *Conn) park() bool {
	p := c.srv.poll.Load()
	if p == nil || c.poll.fd < 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.poll.state != pollReading {
		return false
	}
	if err := p.arm(c); err != nil {
		c.log.Debug("poller: cannot arm; reading on a goroutine", "err", err)
		return false
	}
	c.poll.state = pollParked
	return true
}

// unpark takes a parked connection out of the poller and starts its reader.
// A readiness event (ready) only does so for the arming gen belongs to.
// Bytes have then arrived, so the reader gets a short grace to read them
// even if the deadline passes before it is scheduled (as a reader blocked
// in read is woken by the bytes, not by the deadline); a silent peer has
// no readiness event, and a peer that sends less than a frame is still
// dropped when the grace ends.
func (c *Conn) unpark(gen uint32, ready bool) {
	c.mu.Lock()
	if c.poll.state != pollParked || ready && gen != c.poll.gen {
		c.mu.Unlock()
		return
	}
	c.poll.state = pollReading
	c.poll.ready = ready
	c.srv.poll.Load().unparked()
	c.mu.Unlock()
	c.startReader()
}

// wake starts the reader of a parked connection (a close frame went out and
// the peer's answer must be read).
func (c *Conn) wake() { c.unpark(0, false) }

// closeSocket closes the socket, after taking it out of the poller under
// the connection's lock so a closed (and possibly reused) descriptor is
// never armed. A parked connection gets a reader, which sees the closed
// socket and ends the connection.
func (c *Conn) closeSocket() {
	c.mu.Lock()
	parked := c.poll.state == pollParked
	if c.poll.registered {
		c.srv.poll.Load().remove(c)
	}
	c.poll.state = pollGone
	c.mu.Unlock()
	_ = c.ws.NetConn().Close()
	if parked {
		c.startReader()
	}
}

// readControl consumes a ping or pong frame at the head of the read buffer
// and answers it as gorilla would, returning true. Peers answer the
// gateway's pings every tick; gorilla would handle the pong inside
// ReadMessage and then wait there for a data frame, keeping the goroutine,
// so a polled connection takes its control frames here and can park right
// after. Anything else (a data or close frame, a control frame that is
// malformed, unmasked or not yet complete) is left to ReadMessage, which
// also reports errors. It is called only between messages, where gorilla
// holds no frame state.
func (c *Conn) readControl() bool {
	h, err := c.br.Peek(2)
	if err != nil {
		return false
	}
	op := h[0] & 0x0f
	// FIN, no RSV bits, ping (9) or pong (10), masked, length under 126.
	if h[0]&0xf0 != 0x80 || op != 9 && op != 10 || h[1]&0x80 == 0 || h[1]&0x7f > 125 {
		return false
	}
	n := int(h[1] & 0x7f)
	if c.br.Buffered() < 6+n {
		return false // not all there; ReadMessage waits for the rest
	}
	f, _ := c.br.Peek(6 + n)
	var payload [125]byte
	for i := range n {
		payload[i] = f[6+i] ^ f[2+(i&3)]
	}
	_, _ = c.br.Discard(6 + n)
	if op == 10 {
		c.onPong()
		return true
	}
	if err := c.onPing(string(payload[:n])); err != nil {
		c.closeSocket() // the pong could not be written: the socket is gone
	}
	return true
}

// directResult is what a direct write did.
type directResult uint8

const (
	directBusy    directResult = iota // nothing written; queue the frame
	directDone                        // all written
	directPartial                     // part written; the rest is in c.pending
	directBroken                      // the socket cannot be written
)

// maxDirectFrame bounds the frames writeDirect takes; larger ones go
// through the writer.
const maxDirectFrame = 32 << 10

var directBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// writeDirect writes frame (a text message), after a ping if ping is set,
// to the socket with one non-blocking write on the caller's goroutine,
// instead of starting a writer goroutine for it. c.mu is held; no writer
// runs and nothing is queued. What the socket did not take is kept in
// c.pending for the writer. wmu keeps the write from interleaving with a
// pong or close frame the reader is writing; gorilla's own close frames
// for protocol errors bypass it, but those end the connection.
func (c *Conn) writeDirect(ping bool, frame []byte) directResult {
	if len(frame) > maxDirectFrame || !c.wmu.TryLock() {
		return directBusy
	}
	defer c.wmu.Unlock()
	bp := directBufs.Get().(*[]byte)
	b := (*bp)[:0]
	if ping {
		b = append(b, 0x89, 0) // FIN ping, no payload (servers do not mask)
	}
	b = append(b, 0x81) // FIN text
	if n := len(frame); n < 126 {
		b = append(b, byte(n))
	} else { // n <= maxDirectFrame < 1<<16
		b = append(b, 126, byte(n>>8), byte(n))
	}
	b = append(b, frame...)
	n, err := rawWrite(int(c.poll.fd), b)
	res := directDone
	switch {
	case err != nil && n == 0 && isAgain(err):
		res = directBusy
	case err != nil && n == 0:
		res = directBroken
	case n < len(b):
		c.pending = bytes.Clone(b[n:])
		res = directPartial
	}
	*bp = b[:0]
	directBufs.Put(bp)
	return res
}

// hijackReader wraps the upgrade's ResponseWriter so the connection reads
// through a small bufio.Reader the gateway owns (readBufferSize) instead
// of a copy gorilla makes; br is set once the upgrader has hijacked.
type hijackReader struct {
	http.ResponseWriter
	br  *bufio.Reader
	pre *bytes.Reader // what net/http had buffered, read before the socket
}

// Hijack hijacks the underlying connection and substitutes the reader.
// Bytes net/http had already buffered (a client that sent its first frame
// with the upgrade request) are read first.
func (h *hijackReader) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	var src io.Reader = nc
	if n := brw.Reader.Buffered(); n > 0 {
		pre, _ := brw.Reader.Peek(n)
		h.pre = bytes.NewReader(bytes.Clone(pre))
		src = io.MultiReader(h.pre, nc)
	}
	h.br = bufio.NewReaderSize(src, readBufferSize)
	return nc, bufio.NewReadWriter(h.br, brw.Writer), nil
}
