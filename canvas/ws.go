package canvas

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Live reload is a send-mostly WebSocket (RFC 6455), implemented here in a
// few lines so that this package needs nothing but the standard library:
// the server sends "reload" text frames and pings; what the page sends is
// read only to answer pings and closes, and is otherwise discarded.

const (
	maxReloadSockets = 256
	// pingEvery is also how often a socket rechecks its capability.
	pingEvery    = 30 * time.Second
	wsWriteWait  = 10 * time.Second
	maxFrameRead = 4096
	wsGUID       = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

type reloadSocket struct {
	notify chan struct{} // cap 1: coalesces bursts of changes
}

// changed tells every live-reload socket that a file changed.
func (h *Host) changed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.sockets {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

func headerHasToken(r *http.Request, name, token string) bool {
	for _, v := range r.Header.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// sameOrigin accepts no Origin (a native node's web view may send none) or
// exactly the canvas host's own origin: no other page may open it.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// serveReload upgrades an authorized request and runs the socket until the
// capability dies, the session ends, the page goes or the host closes.
func (h *Host) serveReload(w http.ResponseWriter, r *http.Request, token string, b Binding) {
	if r.Method != http.MethodGet || !headerHasToken(r, "Connection", "upgrade") || !headerHasToken(r, "Upgrade", "websocket") {
		fail(w, http.StatusBadRequest, "websocket upgrade required")
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		fail(w, http.StatusUpgradeRequired, "unsupported websocket version")
		return
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		fail(w, http.StatusBadRequest, "bad websocket key")
		return
	}
	if !sameOrigin(r) {
		fail(w, http.StatusForbidden, "origin not allowed")
		return
	}
	sock := &reloadSocket{notify: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.closed || len(h.sockets) >= maxReloadSockets {
		h.mu.Unlock()
		fail(w, http.StatusServiceUnavailable, "too many live-reload sockets")
		return
	}
	h.sockets[sock] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.sockets, sock)
		h.mu.Unlock()
		h.wg.Done()
	}()

	hj, ok := w.(http.Hijacker)
	if !ok {
		fail(w, http.StatusInternalServerError, "cannot upgrade")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})
	sum := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	_ = conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
	if _, err := brw.WriteString(resp); err != nil || brw.Flush() != nil {
		return
	}

	// The reader answers pings and closes; it ends when the connection is
	// closed (below) or the peer goes.
	pongs := make(chan []byte, 1)
	readDone := make(chan error, 1)
	go func() { readDone <- readFrames(brw.Reader, pongs) }()
	defer func() {
		conn.Close()
		<-readDone
	}()

	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		var err error
		select {
		case <-sock.notify:
			err = writeFrame(conn, opText, []byte("reload"))
		case p := <-pongs:
			err = writeFrame(conn, opPong, p)
		case <-ping.C:
			if !h.caps.live(token) {
				_ = writeClose(conn, 1008, "canvas capability expired")
				return
			}
			err = writeFrame(conn, opPing, nil)
		case <-b.Done:
			_ = writeClose(conn, 1008, "node session ended")
			return
		case <-h.closing:
			_ = writeClose(conn, 1001, "canvas host stopping")
			return
		case err := <-readDone:
			readDone <- err // for the deferred wait
			if errors.Is(err, errPeerClosed) {
				_ = writeClose(conn, 1000, "")
			}
			return
		}
		if err != nil {
			return
		}
	}
}

const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

var (
	errPeerClosed = errors.New("peer closed")
	errProtocol   = errors.New("websocket protocol error")
)

func writeFrame(c net.Conn, op byte, payload []byte) error {
	if len(payload) > 125 {
		return errProtocol // only short frames are ever sent
	}
	_ = c.SetWriteDeadline(time.Now().Add(wsWriteWait))
	frame := append([]byte{0x80 | op, byte(len(payload))}, payload...)
	_, err := c.Write(frame)
	return err
}

func writeClose(c net.Conn, code uint16, reason string) error {
	p := binary.BigEndian.AppendUint16(nil, code)
	if len(reason) > 120 {
		reason = reason[:120]
	}
	return writeFrame(c, opClose, append(p, reason...))
}

// readFrames reads client frames (which must be masked and small), hands
// ping payloads to pongs and returns errPeerClosed on a close frame.
func readFrames(r *bufio.Reader, pongs chan<- []byte) error {
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		op := hdr[0] & 0x0f
		masked := hdr[1]&0x80 != 0
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if !masked || n > maxFrameRead || (op >= opClose && n > 125) {
			return errProtocol
		}
		var mask [4]byte
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return err
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return err
		}
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
		switch op {
		case opClose:
			return errPeerClosed
		case opPing:
			select {
			case pongs <- payload:
			default:
			}
		case opPong, opText, opBin, opCont:
		default:
			return errProtocol
		}
	}
}
