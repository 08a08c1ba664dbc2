//go:build linux

package gateway

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
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
