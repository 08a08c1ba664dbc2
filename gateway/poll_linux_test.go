//go:build linux

package gateway

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/protocol"
)

func (g *testGateway) parked() int64 { return g.srv.poll.Load().parked.Load() }

// request sends one request and returns its response, skipping events.
func (w *wire) request(id, method string) map[string]any {
	w.t.Helper()
	w.text(fmt.Sprintf(`{"type":"req","id":%q,"method":%q}`, id, method))
	return w.response(id)
}

func (w *wire) response(id string) map[string]any {
	w.t.Helper()
	for {
		f := w.json()
		if f["type"] == protocol.TypeRes {
			if f["id"] != id {
				w.t.Fatalf("response %v, want id %s", f, id)
			}
			return f
		}
	}
}

// maskedFrame encodes one client frame.
func maskedFrame(b0 byte, payload []byte) []byte {
	h, key := header(b0, uint64(len(payload)), false)
	for i, b := range payload {
		h = append(h, b^key[i%4])
	}
	return h
}

// An idle authenticated connection is parked in the poller with no
// goroutine, and whatever arrives is read: a request, two requests in one
// segment (the second is in the read buffer after the first), a frame
// split over two segments, pings (answered with their payload) and pongs
// (which re-arm the deadline); after each it is parked again.
func TestPollIdleConnReads(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	w := g.authed(t, "")
	if g.srv.poll.Load() == nil {
		t.Fatal("no poller on Linux")
	}
	waitFor(t, "parked after connect", func() bool { return g.parked() == 1 })

	if f := w.request("r1", "health"); f["ok"] != true {
		t.Fatalf("health: %v", f)
	}
	waitFor(t, "parked after a request", func() bool { return g.parked() == 1 })

	two := append(maskedFrame(finBit|opText, []byte(`{"type":"req","id":"r2","method":"health"}`)),
		maskedFrame(finBit|opText, []byte(`{"type":"req","id":"r3","method":"health"}`))...)
	if _, err := w.conn.Write(two); err != nil {
		t.Fatal(err)
	}
	w.response("r2")
	w.response("r3")

	split := maskedFrame(finBit|opText, []byte(`{"type":"req","id":"r4","method":"health"}`))
	if _, err := w.conn.Write(split[:9]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the first part be read alone
	if _, err := w.conn.Write(split[9:]); err != nil {
		t.Fatal(err)
	}
	w.response("r4")
	waitFor(t, "parked after split frame", func() bool { return g.parked() == 1 })

	c := g.srv.snapshotConns()[0]
	before := c.readDeadline.Load()
	time.Sleep(2 * time.Millisecond)
	// A ping and a pong in one segment, then a request behind them.
	seg := append(maskedFrame(finBit|opPing, []byte("hello")), maskedFrame(finBit|opPong, nil)...)
	seg = append(seg, maskedFrame(finBit|opText, []byte(`{"type":"req","id":"r5","method":"health"}`))...)
	if _, err := w.conn.Write(seg); err != nil {
		t.Fatal(err)
	}
	op, p, err := w.read(5 * time.Second)
	if err != nil || op != opPong || string(p) != "hello" {
		t.Fatalf("answer to ping: op %x %q %v, want pong \"hello\"", op, p, err)
	}
	w.response("r5")
	if after := c.readDeadline.Load(); after <= before {
		t.Fatal("pong did not re-arm the read deadline")
	}
	waitFor(t, "parked after ping and pong", func() bool { return g.parked() == 1 })

	// A lone pong, as a client answering the gateway's ping sends it, is
	// taken without waiting for a data frame: the connection parks again.
	if err := w.frame(finBit|opPong, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "parked after a pong", func() bool {
		return g.parked() == 1 && c.readDeadline.Load() > before
	})
}

// A parked connection ends when the peer closes: with a close frame
// (answered), with a half close (EPOLLRDHUP) or by dropping the socket.
// It leaves the poller and the connection set.
func TestPollPeerClose(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	ws := []*wire{g.authed(t, ""), g.authed(t, ""), g.authed(t, "")}
	waitFor(t, "three parked", func() bool { return g.parked() == 3 })

	if err := ws[0].frame(finBit|opClose, binary.BigEndian.AppendUint16(nil, 1000)); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := ws[0].closed(5 * time.Second); code != 1000 {
		t.Fatalf("close frame answered with %d, want 1000", code)
	}
	waitFor(t, "closed peer gone", func() bool { return g.srv.ConnCount() == 2 && g.parked() == 2 })

	if err := ws[1].conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "half-closed peer gone", func() bool { return g.srv.ConnCount() == 1 && g.parked() == 1 })

	ws[2].conn.Close()
	waitFor(t, "dropped peer gone", func() bool { return g.srv.ConnCount() == 0 && g.parked() == 0 })
	g.srv.poll.Load().mu.Lock()
	n := len(g.srv.poll.Load().slots)
	g.srv.poll.Load().mu.Unlock()
	if n != 0 {
		t.Fatalf("%d sockets still registered in the poller", n)
	}
}

// Closes from the gateway's side (slow consumer, revoked device, shutdown
// fallback) race with bytes arriving on the parked socket. Every
// connection must end exactly once, leave the poller, and the descriptors
// the kernel hands out again must work for the next connections.
func TestPollCloseRacesReadiness(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	for i := range 60 {
		w := g.authed(t, "")
		waitFor(t, "parked", func() bool { return g.parked() == 1 })
		c := g.srv.snapshotConns()[0]
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 5 {
				b := maskedFrame(finBit|opText, fmt.Appendf(nil, `{"type":"req","id":"x%d","method":"health"}`, j))
				if _, err := w.conn.Write(b); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			switch i % 3 {
			case 0:
				c.abort(protocol.ClosePolicy, "slow consumer")
			case 1:
				c.closeAfterFlush(protocol.CloseAuthChanged, "device removed")
			default:
				c.closeSocket()
			}
		}()
		wg.Wait()
		w.closed(10 * time.Second)
		w.conn.Close()
		waitFor(t, "connection ended", func() bool { return g.srv.ConnCount() == 0 })
		if n := g.parked(); n != 0 {
			t.Fatalf("round %d: %d connections still counted parked", i, n)
		}
		g.srv.poll.Load().mu.Lock()
		n := len(g.srv.poll.Load().slots)
		g.srv.poll.Load().mu.Unlock()
		if n != 0 {
			t.Fatalf("round %d: %d sockets still registered", i, n)
		}
	}
	// The descriptors were reused by the rounds above; a fresh connection
	// still gets its answers.
	w := g.authed(t, "")
	if f := w.request("last", "health"); f["ok"] != true {
		t.Fatalf("health: %v", f)
	}
}

// 1,000 idle authenticated connections hold no goroutine each; then each
// sends a request and gets its answer, and shutdown closes all of them
// with 1012.
func TestPollThousandIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections")
	}
	const n = 1000
	g := startGateway(t, nil)
	base := runtime.NumGoroutine()
	ws := make([]*wire, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				ws[i] = g.authed(t, "")
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	waitFor(t, "all parked", func() bool { return g.parked() == n })
	// The wire clients run no goroutines: what is left is the gateway's
	// fixed set, not one per connection.
	waitFor(t, "writers done", func() bool { return runtime.NumGoroutine() < base+n/10 })
	for i, w := range ws {
		w.text(fmt.Sprintf(`{"type":"req","id":"q%d","method":"health"}`, i))
	}
	for i, w := range ws {
		if f := w.response(fmt.Sprintf("q%d", i)); f["ok"] != true {
			t.Fatalf("conn %d: %v", i, f)
		}
	}
	waitFor(t, "parked again", func() bool { return g.parked() == n })
	g.stop()
	for i, w := range ws {
		if code, _, _ := w.closed(10 * time.Second); code != protocol.CloseServiceRestart {
			t.Fatalf("conn %d: close %d, want 1012", i, code)
		}
	}
}

// Ticks reach an idle connection without a goroutine: the ping and the
// tick go out in one write from the tick loop, and the peer's pong is
// taken by the poller, which re-arms the read deadline. The connection
// outlives several read deadlines on pongs alone, every tick arrives
// with the next seq, and no writer is started. A reader may be, when a
// stall of the loaded test machine delays a pong past the read deadline
// (the poller then wakes the connection), but not one per pong.
func TestPollTickNeedsNoGoroutine(t *testing.T) {
	t.Parallel()
	const tick = 100 * time.Millisecond
	g := startGateway(t, func(o *Options) { o.TickInterval = tick })
	w := g.authed(t, "")
	waitFor(t, "parked", func() bool { return g.parked() == 1 })
	c := g.srv.snapshotConns()[0]
	writers, readers := g.srv.metrics.writerStarts.Load(), g.srv.metrics.readerStarts.Load()

	// 3 s is more than ten read deadlines (2.5 ticks each).
	var lastSeq float64
	ticks, pings := 0, 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		op, p, err := w.read(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d ticks: %v", ticks, err)
		}
		switch op {
		case opPing:
			pings++
			if err := w.frame(finBit|opPong, p); err != nil {
				t.Fatal(err)
			}
		case opText:
			var f map[string]any
			if err := json.Unmarshal(p, &f); err != nil {
				t.Fatalf("not JSON: %.200q", p)
			}
			seq, _ := f["seq"].(float64)
			if lastSeq != 0 && seq != lastSeq+1 {
				t.Fatalf("%v seq %v after %v", f["event"], seq, lastSeq)
			}
			lastSeq = seq
			if f["event"] == protocol.EventTick {
				ticks++
			}
		case opClose:
			t.Fatalf("closed after %d ticks: %s", ticks, closeString(p))
		}
	}
	if ticks < 10 || pings < ticks-1 {
		t.Fatalf("%d ticks and %d pings in 3 s at a %v tick", ticks, pings, tick)
	}
	waitFor(t, "parked", func() bool { return g.parked() == 1 })
	if n := g.srv.metrics.writerStarts.Load() - writers; n != 0 {
		t.Errorf("%d writer goroutines started for %d ticks", n, ticks)
	}
	if n := g.srv.metrics.readerStarts.Load() - readers; n > int64(pings/4) {
		t.Errorf("%d reader goroutines started for %d pongs", n, pings)
	}
	if g.srv.ConnCount() != 1 || c.isClosing() {
		t.Fatal("connection ended on pongs alone")
	}
}

// A peer that stops reading fills its socket: a direct write then leaves
// a frame half written (or not at all), and the writer finishes it before
// anything queued after it. When the peer reads again, every frame
// arrives whole and in seq order.
func TestDirectWriteFullSocket(t *testing.T) {
	t.Parallel()
	g := startGateway(t, func(o *Options) { o.MaxBufferedBytes = 4 << 20 })
	w := g.authed(t, "")
	waitFor(t, "parked", func() bool { return g.parked() == 1 })
	c := g.srv.snapshotConns()[0]
	writers := g.srv.metrics.writerStarts.Load()

	payload := mustJSON(map[string]string{"pad": strings.Repeat("x", 9000)})
	sent, partial := 0, false
	for g.srv.metrics.writerStarts.Load() == writers {
		c.mu.Lock()
		direct := !c.writing && c.pending == nil
		c.mu.Unlock()
		if !direct {
			break
		}
		if !c.enqueueEvent("test.fill", payload, nil) {
			t.Fatalf("enqueue refused after %d frames", sent)
		}
		sent++
		c.mu.Lock()
		partial = partial || c.pending != nil
		c.mu.Unlock()
		if sent > 100000 {
			t.Fatal("socket never filled")
		}
	}
	// Frames queued behind the writer go out after the held-back one.
	for range 20 {
		if !c.enqueueEvent("test.fill", payload, nil) {
			t.Fatal("enqueue refused behind the writer")
		}
		sent++
	}
	t.Logf("socket full after %d frames (partial write: %v)", sent-20, partial)
	for i := 1; i <= sent; i++ {
		f := w.jsonWithin(10 * time.Second)
		if f["event"] != "test.fill" || f["seq"] != float64(i) {
			t.Fatalf("frame %d: event %v seq %v", i, f["event"], f["seq"])
		}
	}
	if f := w.request("after", "health"); f["ok"] != true {
		t.Fatalf("health after the backlog: %v", f)
	}
}

// A direct write cut short by a full socket leaves its rest to the writer;
// a pong the reader owes the peer in the meantime must not land inside
// that frame. The test holds c.mu after the cut, as if the writer had not
// run yet, while the reader answers a ping; then the peer reads again.
func TestDirectWriteCutThenPong(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	w := g.authed(t, "")
	waitFor(t, "parked", func() bool { return g.parked() == 1 })
	c := g.srv.snapshotConns()[0]
	frame := encodeEvent("test.fill", mustJSON(map[string]string{"pad": strings.Repeat("x", 9000)}), nil, nil)
	sent := 0
	for {
		c.mu.Lock()
		r := c.writeDirect(false, frame)
		sent++
		if r == directPartial {
			break // c.mu stays held: the writer has not run yet
		}
		c.mu.Unlock()
		if r != directDone {
			t.Fatalf("direct write %d: %v", sent, r)
		}
	}
	pong := make(chan error, 1)
	go func() { pong <- c.onPing("p") }() // the reader answers a peer's ping
	time.Sleep(50 * time.Millisecond)
	go func() {
		time.Sleep(100 * time.Millisecond)
		c.mu.Unlock()
		c.signal()
	}()
	for got := 0; got < sent; {
		op, p, err := w.read(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d frames: %v", got, sent, err)
		}
		if op == opPong {
			continue
		}
		var m map[string]any
		if op != opText || json.Unmarshal(p, &m) != nil {
			t.Fatalf("frame %d of %d (cut: the last): op %d, not a whole JSON text frame: ...%q", got+1, sent, op, p[max(0, len(p)-40):])
		}
		if m["event"] == "test.fill" {
			got++
		}
	}
	if err := <-pong; err != nil {
		t.Fatalf("onPing: %v", err)
	}
}

// A client may send frames with its upgrade request, before the 101: a
// token connect and requests behind it. net/http has buffered them; the
// connection reads them first, and must not park (leaving a request
// unread until the peer sends more) while some are still waiting there
// rather than in the connection's read buffer. Which request ends up
// where depends on the frames' sizes, so a range of sizes is tried.
func TestPipelinedWithUpgrade(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	for pad := 150; pad < 190; pad++ {
		conn, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		params := connectParams(testToken)
		params["client"].(map[string]any)["displayName"] = strings.Repeat("n", pad)
		connect, _ := json.Marshal(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": params})
		req := fmt.Appendf(nil, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", g.addr)
		req = append(req, maskedFrame(finBit|opText, connect)...)
		for _, id := range []string{"h1", "h2"} {
			req = append(req, maskedFrame(finBit|opText, fmt.Appendf(nil, `{"type":"req","id":%q,"method":"health"}`, id))...)
		}
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("pad %d: upgrade: %v %v", pad, resp, err)
		}
		w := &wire{t: t, conn: conn, br: br, resp: resp}
		for _, id := range []string{"c1", "h1", "h2"} {
			if f := w.response(id); f["ok"] != true {
				t.Fatalf("pad %d: %s: %v", pad, id, f)
			}
		}
		conn.Close()
	}
}
