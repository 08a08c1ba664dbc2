package gateway

// Resource-exhaustion and transport-abuse tests: attack-list group G, each
// row with the close code or HTTP status it must get. Rows covered
// elsewhere:
//
//   - G2 pre-auth silence (close 1000 at the handshake timeout): the
//     neg-silent-no-connect transcript in transcript_test.go.
//   - G6 invalid UTF-8 before the handshake (1007): TestStrictFrames.
//   - G7 slow consumer (1008 "slow consumer", others get every event in
//     order): TestSlowConsumer.
//   - G8 per-IP pre-auth cap (503, slots released): TestPreauthCap.
//   - G10 limiter-key explosion: authn.TestLimiterG10Bounded.
//   - G11 write-RPC rate limit: no write RPC of that kind exists yet.
//
// SIGTERM under load (no acknowledged write lost) runs against the real
// binary in cmd/clawgate/load_test.go.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// wire is a WebSocket client written by hand, so tests can send what no
// well-behaved library would: bad lengths, reserved bits, oversized control
// frames, unmasked frames.
type wire struct {
	t     testing.TB
	conn  net.Conn
	br    *bufio.Reader
	resp  *http.Response
	texts []string // text frames skipped by closed
}

// dialWire opens a TCP connection from local (an IP, "" for any) and sends
// the upgrade request with extra headers. It returns the wire even when
// the answer is not 101; check resp.
func dialWire(t testing.TB, addr, local string, extra http.Header) *wire {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %q: %v", addr, local, err)
	}
	return upgradeWire(t, conn, addr, extra)
}

// upgradeWire sends the upgrade request for host with extra headers on
// conn, as dialWire does.
func upgradeWire(t testing.TB, conn net.Conn, host string, extra http.Header) *wire {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n", host)
	for k, vs := range extra {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatalf("write upgrade: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read upgrade response: %v", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return &wire{t: t, conn: conn, br: br, resp: resp}
}

const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xa
	finBit  = 0x80
	rsv1Bit = 0x40
	rsv2Bit = 0x20
)

// header encodes a client frame header claiming length n, masked unless
// unmasked is set. It returns the header and the mask key.
func header(b0 byte, n uint64, unmasked bool) ([]byte, [4]byte) {
	var key [4]byte
	_, _ = rand.Read(key[:])
	mask := byte(0x80)
	if unmasked {
		mask = 0
	}
	h := []byte{b0}
	switch {
	case n < 126:
		h = append(h, mask|byte(n))
	case n <= 0xffff:
		h = append(h, mask|126, byte(n>>8), byte(n))
	default:
		h = append(h, mask|127)
		h = binary.BigEndian.AppendUint64(h, n)
	}
	if !unmasked {
		h = append(h, key[:]...)
	}
	return h, key
}

// frame writes one whole client frame (b0 = FIN/RSV bits | opcode). Write
// errors are returned: the gateway may already have closed.
func (w *wire) frame(b0 byte, payload []byte) error {
	h, key := header(b0, uint64(len(payload)), false)
	buf := make([]byte, 0, len(h)+len(payload))
	buf = append(buf, h...)
	for i, b := range payload {
		buf = append(buf, b^key[i%4])
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := w.conn.Write(buf)
	return err
}

func (w *wire) text(s string) {
	w.t.Helper()
	if err := w.frame(finBit|opText, []byte(s)); err != nil {
		w.t.Fatalf("write text: %v", err)
	}
}

// read reads one server frame.
func (w *wire) read(within time.Duration) (op byte, payload []byte, err error) {
	_ = w.conn.SetReadDeadline(time.Now().Add(within))
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if h[1]&0x80 != 0 || n > 64<<20 {
		return 0, nil, fmt.Errorf("bad server frame header % x len %d", h, n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(w.br, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

// json reads frames until a text frame and decodes it.
func (w *wire) json() map[string]any {
	w.t.Helper()
	return w.jsonWithin(5 * time.Second)
}

// jsonWithin is json with a per-frame read bound of within.
func (w *wire) jsonWithin(within time.Duration) map[string]any {
	w.t.Helper()
	for {
		op, p, err := w.read(within)
		if err != nil {
			w.t.Fatalf("read frame: %v", err)
		}
		if op == opClose {
			w.t.Fatalf("closed while waiting for a text frame: %s", closeString(p))
		}
		if op != opText {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			w.t.Fatalf("not JSON: %.200q", p)
		}
		return m
	}
}

// closed reads until the gateway's close frame and returns its code and
// reason; a socket that ends without one reads as 1006. pongs counts the
// pong frames seen on the way.
func (w *wire) closed(within time.Duration) (code int, reason string, pongs int) {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for {
		op, p, err := w.read(time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				w.t.Fatalf("no close within %v", within)
			}
			return websocket.CloseAbnormalClosure, err.Error(), pongs
		}
		switch op {
		case opPong:
			pongs++
		case opText:
			w.texts = append(w.texts, string(p))
		case opClose:
			if len(p) < 2 {
				return websocket.CloseNoStatusReceived, "", pongs
			}
			return int(binary.BigEndian.Uint16(p)), string(p[2:]), pongs
		}
	}
}

func closeString(p []byte) string {
	if len(p) < 2 {
		return "close without code"
	}
	return fmt.Sprintf("close %d %q", binary.BigEndian.Uint16(p), p[2:])
}

// upgraded dials and requires 101, then reads the challenge.
func (g *testGateway) upgraded(t testing.TB, local string) *wire {
	t.Helper()
	w := dialWire(t, g.addr, local, nil)
	if w.resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade from %q: HTTP %d", local, w.resp.StatusCode)
	}
	if f := w.json(); f["event"] != protocol.EventChallenge {
		t.Fatalf("first frame %v", f)
	}
	return w
}

// authed is upgraded plus a shared-token connect.
func (g *testGateway) authed(t testing.TB, local string) *wire {
	t.Helper()
	w := g.upgraded(t, local)
	b, _ := json.Marshal(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": connectParams(testToken)})
	w.text(string(b))
	if f := w.json(); f["ok"] != true {
		t.Fatalf("connect: %v", f)
	}
	return w
}

// canBind reports whether this host lets a socket use local as its
// source address (Linux routes all of 127/8 over lo).
func canBind(local string) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(local, "0"))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func requireSources(t *testing.T, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		if !canBind(a) {
			t.Skipf("cannot use %s as a source address on this host", a)
		}
	}
}

// G1: slowloris. Sockets that send their headers a byte at a time are
// dropped at the server's ReadHeaderTimeout (5 s), never upgraded, and the
// accept loop keeps serving real clients meanwhile.
func TestResilienceSlowloris(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	const n = 50
	var wg sync.WaitGroup
	type result struct {
		err     error
		elapsed time.Duration
	}
	results := make(chan result, n)
	stop := make(chan struct{})
	for i := 0; i < n; i++ {
		conn, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		start := time.Now()
		wg.Add(2)
		go func() { // the slow writer
			defer wg.Done()
			msg := "GET / HTTP/1.1\r\nHost: " + g.addr + "\r\nUpgrade: websocket\r\nX-Slow: " + strings.Repeat("a", 200)
			for j := 0; j < len(msg); j++ {
				if _, err := conn.Write([]byte{msg[j]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
			}
		}()
		go func() { // waits for the server to give up
			defer wg.Done()
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			// net/http gives up at the header timeout: it closes, at
			// most after a 400 with "Connection: close"; never a 101.
			b, err := io.ReadAll(conn)
			if err == nil && len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 400 ") {
				err = fmt.Errorf("server answered %q", b)
			}
			results <- result{err, time.Since(start)}
		}()
	}
	// While those hang, a real client connects and calls.
	c := g.dialClient(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, "health", nil); err != nil {
		t.Fatalf("health during slowloris: %v", err)
	}
	for i := 0; i < n; i++ {
		r := <-results
		var ne net.Error
		if errors.As(r.err, &ne) && ne.Timeout() {
			t.Fatalf("slow socket still open after %v", r.elapsed)
		}
		if r.err != nil && !isReset(r.err) {
			t.Fatalf("slow socket: %v", r.err)
		}
		if r.elapsed < 4*time.Second {
			t.Fatalf("slow socket dropped after %v, before the 5 s header timeout", r.elapsed)
		}
	}
	close(stop)
	wg.Wait()
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// G2 after the handshake: a peer that stops reading (so never answers the
// gateway's pings) is dropped after two tick intervals plus slack, while a
// reading peer, whose pongs re-arm the deadline, stays.
func TestResilienceSilentAfterAuth(t *testing.T) {
	t.Parallel()
	// Ticks short enough for a quick test, long enough that the reading
	// client's pong (its reader woken by the poller) is taken within the
	// half-tick slack on a starved machine.
	const tick = 300 * time.Millisecond
	g := startGateway(t, func(o *Options) { o.TickInterval = tick })
	var ticks atomic.Int64
	live := g.dialClient(t, func(o *client.Options) {
		o.OnEvent = func(e client.Event) {
			if e.Name == protocol.EventTick {
				ticks.Add(1)
			}
		}
	})
	// The clock starts before the handshake: the server last heard from the
	// silent peer no earlier than this, so it may not drop it sooner than
	// two ticks after it (a handshake slowed by a loaded machine must not
	// shorten the measured interval).
	start := time.Now()
	silent := g.authed(t, "")
	deadline := time.Now().Add(10 * time.Second)
	for g.srv.ConnCount() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("silent peer still connected after %v", time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if el := time.Since(start); el < 2*tick {
		t.Fatalf("silent peer dropped after %v, before 2 ticks", el)
	}
	// It read nothing, so what it finds is ticks and then the end of the
	// socket (1006: the deadline has ended reading, no close handshake).
	if code, _, _ := silent.closed(5 * time.Second); code != websocket.CloseAbnormalClosure {
		t.Fatalf("silent peer: close %d, want the socket dropped (1006)", code)
	}
	// The reading client outlives many deadlines.
	time.Sleep(10 * tick)
	select {
	case <-live.Done():
		t.Fatalf("reading client was dropped after %v: %v", time.Since(start), live.Err())
	default:
	}
	if n := ticks.Load(); n < 5 {
		t.Fatalf("reading client got %d ticks in %v", n, time.Since(start))
	}
	if g.srv.ConnCount() != 1 {
		t.Fatalf("connections = %d, want the reading client only", g.srv.ConnCount())
	}
}

// G3: permessage-deflate is offered and refused: the 101 carries no
// extension, and a compressed frame (RSV1) is a protocol error (1002),
// never inflated.
func TestResilienceCompressionRefused(t *testing.T) {
	t.Parallel()
	// 4 MiB of zeros deflate to about 4 KiB: a frame that would inflate a
	// thousandfold. (The row's 64 MiB bomb takes too long to build under
	// -race; it would be refused the same way, uninflated.)
	var bomb bytes.Buffer
	fw, _ := flate.NewWriter(&bomb, flate.BestCompression)
	_, _ = fw.Write(make([]byte, 4<<20))
	_ = fw.Close()
	if bomb.Len() > 8<<10 {
		t.Fatalf("bomb is %d bytes on the wire", bomb.Len())
	}
	g := startGateway(t, nil)
	w := dialWire(t, g.addr, "", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate; client_max_window_bits"}})
	if w.resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("HTTP %d", w.resp.StatusCode)
	}
	if ext := w.resp.Header.Values("Sec-Websocket-Extensions"); len(ext) > 0 {
		t.Fatalf("101 negotiated extensions %q", ext)
	}
	w.json() // challenge
	_ = w.frame(finBit|rsv1Bit|opText, bomb.Bytes())
	if code, reason, _ := w.closed(5 * time.Second); code != websocket.CloseProtocolError {
		t.Fatalf("compressed frame: close %d %q, want 1002", code, reason)
	}
	// A gorilla client that asks for compression gets a plain session.
	d := websocket.Dialer{EnableCompression: true}
	ws, resp, err := d.Dial(g.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if ext := resp.Header.Get("Sec-Websocket-Extensions"); ext != "" {
		t.Fatalf("extension %q negotiated", ext)
	}
}

// G4, G5 (fragments), G13: frames over the limits are closed with 1009
// without the gateway reading or allocating the claimed size; a length
// with the top bit set is a protocol error.
func TestResilienceFrameLimits(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	wantClose := func(t *testing.T, w *wire, want int) {
		t.Helper()
		if code, reason, _ := w.closed(5 * time.Second); code != want {
			t.Fatalf("close %d %q, want %d", code, reason, want)
		}
	}
	t.Run("preauth 64KiB is read", func(t *testing.T) {
		w := g.upgraded(t, "")
		_ = w.frame(finBit|opText, bytes.Repeat([]byte("x"), protocol.MaxPreauthPayload))
		wantClose(t, w, websocket.CloseNormalClosure) // not JSON: the real gateway's plain 1000
	})
	t.Run("preauth 64KiB+1", func(t *testing.T) {
		w := g.upgraded(t, "")
		_ = w.frame(finBit|opText, bytes.Repeat([]byte("x"), protocol.MaxPreauthPayload+1))
		wantClose(t, w, websocket.CloseMessageTooBig)
	})
	t.Run("preauth fragments add up past 64KiB", func(t *testing.T) {
		w := g.upgraded(t, "")
		_ = w.frame(opText, bytes.Repeat([]byte("x"), 40<<10))
		_ = w.frame(finBit|opCont, bytes.Repeat([]byte("x"), 40<<10))
		wantClose(t, w, websocket.CloseMessageTooBig)
	})
	t.Run("preauth 70000 one-byte continuations", func(t *testing.T) {
		w := g.upgraded(t, "")
		_ = w.frame(opText, []byte("{"))
		var buf bytes.Buffer
		for i := 0; i < 70000; i++ {
			h, key := header(opCont, 1, false)
			buf.Write(h)
			buf.WriteByte(' ' ^ key[0])
		}
		go func() { _, _ = w.conn.Write(buf.Bytes()) }()
		wantClose(t, w, websocket.CloseMessageTooBig)
	})
	t.Run("preauth header claims 2^63-1 then stalls", func(t *testing.T) {
		w := g.upgraded(t, "")
		h, _ := header(finBit|opText, 1<<63-1, false)
		_, _ = w.conn.Write(h)
		wantClose(t, w, websocket.CloseMessageTooBig)
	})
	t.Run("length with the top bit set", func(t *testing.T) {
		w := g.upgraded(t, "")
		h, _ := header(finBit|opText, 1<<63|5, false)
		_, _ = w.conn.Write(h)
		wantClose(t, w, websocket.CloseProtocolError)
	})
	t.Run("postauth header claims 25MiB+1", func(t *testing.T) {
		w := g.authed(t, "")
		h, _ := header(finBit|opText, protocol.MaxPayload+1, false)
		_, _ = w.conn.Write(h)
		wantClose(t, w, websocket.CloseMessageTooBig)
	})
	t.Run("postauth fragments past 25MiB, nothing applied", func(t *testing.T) {
		w := g.authed(t, "")
		req := `{"type":"req","id":"big","method":"health","params":{"pad":"`
		_ = w.frame(opText, []byte(req))
		_ = w.frame(opCont, bytes.Repeat([]byte("x"), protocol.MaxPayload-len(req)))
		_ = w.frame(finBit|opCont, []byte(`"}}`))
		code, reason, _ := w.closed(20 * time.Second)
		if code != websocket.CloseMessageTooBig {
			t.Fatalf("close %d %q, want 1009", code, reason)
		}
		for _, f := range w.texts {
			if strings.Contains(f, `"big"`) {
				t.Fatalf("the oversized request was answered: %.200s", f)
			}
		}
	})
	t.Run("postauth 1MiB frame is answered, socket stays", func(t *testing.T) {
		// Reading, unmasking, parsing and validating 1 MiB takes seconds
		// under the race detector on a loaded machine, next to the
		// parallel tests' 25 MiB frames. The bound only turns a gateway
		// that never answers into a failure instead of a hang.
		const answerWithin = time.Minute
		w := g.authed(t, "")
		w.text(`{"type":"req","id":"m","method":"health","params":{"pad":"` + strings.Repeat("x", 1<<20) + `"}}`)
		for {
			f := w.jsonWithin(answerWithin)
			if f["type"] == "res" {
				if f["id"] != "m" {
					t.Fatalf("response %v", f)
				}
				break
			}
		}
		w.text(`{"type":"req","id":"h","method":"health"}`)
		for {
			if f := w.jsonWithin(answerWithin); f["type"] == "res" {
				if f["id"] != "h" || f["ok"] != true {
					t.Fatalf("health after the big frame: %v", f)
				}
				break
			}
		}
	})
}

// G5: RFC 6455 violations in control frames and frame headers are closed
// with 1002, before and after the handshake.
func TestResilienceProtocolViolations(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	cases := []struct {
		name string
		send func(w *wire)
	}{
		{"ping over 125 bytes", func(w *wire) { _ = w.frame(finBit|opPing, make([]byte, 126)) }},
		{"fragmented ping", func(w *wire) { _ = w.frame(opPing, []byte("x")) }},
		{"close over 125 bytes", func(w *wire) { _ = w.frame(finBit|opClose, make([]byte, 200)) }},
		{"reserved opcode", func(w *wire) { _ = w.frame(finBit|0x3, []byte("x")) }},
		{"RSV2", func(w *wire) { _ = w.frame(finBit|rsv2Bit|opText, []byte("{}")) }},
		{"continuation without start", func(w *wire) { _ = w.frame(finBit|opCont, []byte("x")) }},
		{"text inside a fragmented message", func(w *wire) {
			_ = w.frame(opText, []byte("{"))
			_ = w.frame(finBit|opText, []byte("}"))
		}},
		{"unmasked client frame", func(w *wire) {
			h, _ := header(finBit|opText, 2, true)
			_, _ = w.conn.Write(append(h, "{}"...))
		}},
	}
	for _, tc := range cases {
		for _, authed := range []bool{false, true} {
			name := tc.name + " preauth"
			if authed {
				name = tc.name + " postauth"
			}
			t.Run(name, func(t *testing.T) {
				var w *wire
				if authed {
					w = g.authed(t, "")
				} else {
					w = g.upgraded(t, "")
				}
				tc.send(w)
				if code, reason, _ := w.closed(5 * time.Second); code != websocket.CloseProtocolError {
					t.Fatalf("close %d %q, want 1002", code, reason)
				}
			})
		}
	}
}

// G5: a ping flood is closed with 1008 after at most maxPingsPerSecond
// pongs; a client pinging at a sane rate gets every pong.
func TestResiliencePingFlood(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	t.Run("flood", func(t *testing.T) {
		w := g.authed(t, "")
		var buf bytes.Buffer
		for i := 0; i < 10000; i++ {
			h, key := header(finBit|opPing, 4, false)
			buf.Write(h)
			for j, b := range []byte("ping") {
				buf.WriteByte(b ^ key[j])
			}
		}
		go func() { _, _ = w.conn.Write(buf.Bytes()) }()
		code, reason, pongs := w.closed(10 * time.Second)
		if code != protocol.ClosePolicy || reason != "too many pings" {
			t.Fatalf("close %d %q, want 1008 too many pings", code, reason)
		}
		if pongs > maxPingsPerSecond*2 {
			t.Fatalf("%d pongs answered before the close", pongs)
		}
	})
	t.Run("sane rate", func(t *testing.T) {
		w := g.authed(t, "")
		for i := 0; i < 20; i++ {
			if err := w.frame(finBit|opPing, []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		for got < 20 {
			op, p, err := w.read(5 * time.Second)
			if err != nil {
				t.Fatalf("after %d pongs: %v", got, err)
			}
			switch op {
			case opClose:
				t.Fatalf("closed: %s", closeString(p))
			case opPong:
				if string(p) != strconv.Itoa(got) {
					t.Fatalf("pong %q, want %d", p, got)
				}
				got++
			}
		}
	})
}

// G6 after the handshake: invalid UTF-8 in a text frame closes with 1007.
func TestResilienceInvalidUTF8PostAuth(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	w := g.authed(t, "")
	_ = w.frame(finBit|opText, []byte("{\"type\":\"req\",\"id\":\"1\",\"method\":\"health\xff\"}"))
	if code, reason, _ := w.closed(5 * time.Second); code != websocket.CloseInvalidFramePayloadData {
		t.Fatalf("close %d %q, want 1007", code, reason)
	}
}

// G8: the per-IP pre-auth budget of one address does not touch another
// address, and the global connection cap answers 503 before the upgrade
// while existing sessions keep working.
func TestResilienceConnectionCaps(t *testing.T) {
	requireSources(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	t.Parallel()
	t.Run("per-IP", func(t *testing.T) {
		g := startGateway(t, func(o *Options) { o.MaxPreauthPerIP = 4 })
		for i := 0; i < 4; i++ {
			g.upgraded(t, "127.0.0.2")
		}
		if w := dialWire(t, g.addr, "127.0.0.2", nil); w.resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("5th pre-auth socket from 127.0.0.2: HTTP %d, want 503", w.resp.StatusCode)
		} else if w.resp.Header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		for i := 0; i < 4; i++ {
			g.authed(t, "127.0.0.3")
		}
		g.upgraded(t, "127.0.0.3")
	})
	t.Run("global", func(t *testing.T) {
		g := startGateway(t, func(o *Options) { o.MaxConns = 4 })
		var held []*wire
		for i, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"} {
			_ = i
			held = append(held, g.authed(t, ip))
		}
		w := dialWire(t, g.addr, "127.0.0.3", nil)
		if w.resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("connection over the global cap: HTTP %d, want 503", w.resp.StatusCode)
		}
		for i, h := range held {
			h.text(fmt.Sprintf(`{"type":"req","id":"h%d","method":"health"}`, i))
			for {
				if f := h.json(); f["type"] == "res" {
					if f["ok"] != true {
						t.Fatalf("existing session %d: %v", i, f)
					}
					break
				}
			}
		}
		_ = held[0].frame(finBit|opClose, []byte{0x03, 0xe8})
		held[0].closed(5 * time.Second)
		deadline := time.Now().Add(5 * time.Second)
		for g.srv.ConnCount() >= 4 {
			if time.Now().After(deadline) {
				t.Fatal("closed session not released")
			}
			time.Sleep(5 * time.Millisecond)
		}
		g.authed(t, "127.0.0.4")
	})
}

// G9: broadcasts and RPC replies share one writer per socket: under -race,
// concurrent calls on several clients while several goroutines broadcast
// never race, every call is answered, and every client's event seq arrives
// in order with no gap.
func TestResilienceConcurrentWriters(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	const clients, calls, events = 4, 200, 1000
	type seen struct {
		mu   sync.Mutex
		seqs []uint64
	}
	all := make([]*seen, clients)
	cs := make([]*client.Client, clients)
	for i := range cs {
		s := &seen{}
		all[i] = s
		cs[i] = g.dialClient(t, func(o *client.Options) {
			o.OnEvent = func(e client.Event) {
				if e.Name == "resilience.test" && e.Seq != nil {
					s.mu.Lock()
					s.seqs = append(s.seqs, *e.Seq)
					s.mu.Unlock()
				}
			}
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients*calls)
	// Four broadcasters at once, like the tick loop, the presence loop
	// and methods: each connection's seq must still arrive in order.
	for b := 0; b < 4; b++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < events/4; i++ {
				g.srv.bus.broadcast("resilience.test", map[string]int{"i": i}, nil, nil)
			}
		}()
	}
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < calls; j++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Call(ctx, "health", nil)
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("call: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for i, s := range all {
		for {
			s.mu.Lock()
			n := len(s.seqs)
			s.mu.Unlock()
			if n >= events || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		s.mu.Lock()
		if len(s.seqs) != events {
			t.Fatalf("client %d got %d of %d events", i, len(s.seqs), events)
		}
		for k := 1; k < len(s.seqs); k++ {
			if s.seqs[k] != s.seqs[k-1]+1 {
				t.Fatalf("client %d: seq %d after %d", i, s.seqs[k], s.seqs[k-1])
			}
		}
		s.mu.Unlock()
	}
}

// G12: many connect/disconnect cycles of every kind (authenticated, pre-
// auth hang-up, refused token, bare TCP) from many source addresses leave
// goroutines, file descriptors, the connection set, the pre-auth budget
// map, presence and the limiter where they started. CLAWGATE_CHURN_CYCLES
// raises the count (100000 for the full soak).
func TestResilienceChurn(t *testing.T) {
	cycles := 2000
	if v := os.Getenv("CLAWGATE_CHURN_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("CLAWGATE_CHURN_CYCLES=%q", v)
		}
		cycles = n
	}
	var sources []string
	for i := 2; i < 34; i++ {
		if ip := fmt.Sprintf("127.0.0.%d", i); canBind(ip) {
			sources = append(sources, ip)
		}
	}
	if len(sources) == 0 {
		sources = []string{"127.0.0.1"}
	}
	g := startGateway(t, func(o *Options) { o.MaxPreauthPerIP = 1 << 20 })
	// Warm up every path once so lazily started goroutines are counted
	// in the baseline.
	g.dialClient(t, nil).Close()
	waitFor(t, "warm-up connection to end", func() bool { return g.srv.ConnCount() == 0 })
	ignore := goleak.IgnoreCurrent()
	baseFDs := countFDs()
	baseGoroutines := runtime.NumGoroutine()
	baseLimiter := g.srv.opts.Limiter.Len()

	var next atomic.Int64
	var failures atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		if failures.Add(1) == 1 {
			firstErr.Store(err)
		}
	}
	dialer := func(src string) *websocket.Dialer {
		return &websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			return d.DialContext(ctx, network, addr)
		}}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= cycles {
					return
				}
				src := sources[i%len(sources)]
				switch i % 4 {
				case 0: // full session
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					c, err := client.Dial(ctx, client.Options{URL: g.url, Token: testToken, Dialer: dialer(src)})
					cancel()
					if err != nil {
						fail(err)
						continue
					}
					c.Close()
				case 1: // upgrade, read the challenge, hang up
					ws, _, err := dialer(src).Dial(g.url, nil)
					if err != nil {
						fail(err)
						continue
					}
					_, _, _ = ws.ReadMessage()
					ws.Close()
				case 2: // refused token
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err := client.Dial(ctx, client.Options{URL: g.url, Token: "wrong-token", Dialer: dialer(src)})
					cancel()
					var re *client.RemoteError
					if !errors.As(err, &re) {
						fail(fmt.Errorf("wrong token: %v", err))
					}
				case 3: // TCP only
					d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
					conn, err := d.Dial("tcp", g.addr)
					if err != nil {
						fail(err)
						continue
					}
					conn.Close()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d cycles from %d source addresses in %v", cycles, len(sources), time.Since(start).Round(time.Millisecond))
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d cycles failed; first: %v", n, cycles, firstErr.Load())
	}
	waitFor(t, "connections to drain", func() bool { return g.srv.ConnCount() == 0 })
	waitFor(t, "pre-auth budget map to empty", func() bool {
		g.srv.mu.RLock()
		defer g.srv.mu.RUnlock()
		return len(g.srv.preauth) == 0
	})
	g.srv.bus.mu.Lock()
	presence := len(g.srv.bus.presence)
	g.srv.bus.mu.Unlock()
	if presence != 0 {
		t.Errorf("presence table holds %d entries after every client left", presence)
	}
	// Refused tokens from loopback may leave one failure bucket per
	// source address, never one per attempt.
	if n := g.srv.opts.Limiter.Len(); n > baseLimiter+len(sources) {
		t.Errorf("limiter holds %d buckets after %d cycles from %d addresses (baseline %d)", n, cycles, len(sources), baseLimiter)
	}
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("goroutines left after churn (baseline %d, now %d): %v", baseGoroutines, runtime.NumGoroutine(), err)
	}
	if baseFDs >= 0 {
		waitFor(t, "file descriptors to return to baseline", func() bool { return countFDs() <= baseFDs })
	}
}

// countFDs counts this process's open file descriptors, or -1 where /proc
// is missing.
func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEncodeEventMatchesMarshal: the hand-built event frame of the fan-out
// path is byte for byte what json.Marshal of protocol.Event gives.
func TestEncodeEventMatchesMarshal(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	payloads := []json.RawMessage{nil, []byte("null"), []byte(`{}`), mustJSON(map[string]any{"a": "<b>&", "ü": []int{1, 2}}),
		mustJSON(protocol.PresencePayload{Presence: []protocol.PresenceEntry{{Host: "h\u2028", Text: "x\"y"}}})}
	names := []string{protocol.EventTick, protocol.EventPresence, "device.pair.requested", "a:b_c-d", "bad<name>", "ünï", `q"uote`, ""}
	seqs := []*uint64{nil, u(0), u(1), u(1<<64 - 1)}
	svs := []*protocol.StateVersion{nil, {}, {Presence: 7, Health: 1 << 40}}
	n := 0
	for _, name := range names {
		for _, p := range payloads {
			for _, seq := range seqs {
				for _, sv := range svs {
					ev := protocol.Event{Type: protocol.TypeEvent, Event: name, Seq: seq, StateVersion: sv}
					if len(p) > 0 {
						ev.Payload = p
					}
					want, err := json.Marshal(ev)
					if err != nil {
						t.Fatal(err)
					}
					if got := encodeEvent(name, p, seq, sv); !bytes.Equal(got, want) {
						t.Fatalf("encodeEvent(%q, %s, %v, %v)\n got %s\nwant %s", name, p, seq, sv, got, want)
					}
					n++
				}
			}
		}
	}
	t.Logf("%d combinations match", n)
}

// BenchmarkEncodeEvent: the per-recipient cost of a presence broadcast.
func BenchmarkEncodeEvent(b *testing.B) {
	entries := make([]protocol.PresenceEntry, 3)
	for i := range entries {
		entries[i] = protocol.PresenceEntry{Host: "host", IP: "127.0.0.1", Version: "1", Platform: "linux", Mode: "ui", Reason: "connect",
			Text: "host (127.0.0.1) · app 1 · mode ui · reason connect", Roles: []string{"operator"}, Scopes: []string{"operator.read"}}
	}
	raw := mustJSON(protocol.PresencePayload{Presence: entries})
	sv := &protocol.StateVersion{Presence: 3, Health: 1}
	seq := uint64(12345)
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = encodeEvent(protocol.EventPresence, raw, &seq, sv)
		}
	})
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, _ = json.Marshal(protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventPresence, Payload: raw, Seq: &seq, StateVersion: sv})
		}
	})
}
