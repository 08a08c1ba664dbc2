package gateway

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// A peer that stops reading while the gateway has far more queued for it
// than the kernel buffers hold pins its own writer in a write until
// writeTimeout, and nobody else: the healthy clients keep getting a tick
// per tick interval (and the pings that keep them connected) all that
// time. The clock of the assertion is the stuck write itself: each healthy
// client must see stuckTicks ticks while that write is still pending, that
// is before the stuck connection leaves the server. stuckTicks intervals
// are under a third of writeTimeout; a tick loop that writes to the stuck
// peer itself gets at most two ticks out in that window.
func TestStuckPeerDelaysNoTicks(t *testing.T) {
	t.Parallel()
	const (
		tick       = 500 * time.Millisecond
		stuckTicks = 6 // 3 s of ticks, against writeTimeout (10 s)
		healthy    = 3
		frame      = 1 << 20
		// More than the loopback socket pair can buffer (wmem max 4 MiB,
		// rmem max 32 MiB by default) for a receiver that never reads.
		stuckBytes = 40 << 20
	)
	g := startGateway(t, func(o *Options) {
		o.TickInterval = tick
		o.MaxBufferedBytes = stuckBytes + 8<<20 // stuck by the socket, not closed as slow
	})
	var mu sync.Mutex
	ticks := make([]int, healthy)
	lastSeq := make([]uint64, healthy)
	healthyIDs := map[string]bool{}
	clients := make([]*client.Client, healthy)
	for i := range healthy {
		clients[i] = g.dialClient(t, func(o *client.Options) {
			o.OnEvent = func(e client.Event) {
				mu.Lock()
				defer mu.Unlock()
				if e.Seq != nil {
					if lastSeq[i] != 0 && *e.Seq != lastSeq[i]+1 {
						t.Errorf("client %d: seq %d after %d", i, *e.Seq, lastSeq[i])
					}
					lastSeq[i] = *e.Seq
				}
				if e.Name == protocol.EventTick {
					ticks[i]++
				}
			}
		})
		healthyIDs[clients[i].Hello().Server.ConnID] = true
	}
	// The stuck peer connects, then reads nothing. (A tick can come before
	// the connect response: the session is visible to broadcasts a moment
	// before hello-ok is queued.)
	stuckWire := g.upgraded(t, "")
	b, _ := json.Marshal(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": connectParams(testToken)})
	stuckWire.text(string(b))
	for {
		f := stuckWire.json()
		if f["type"] == protocol.TypeEvent {
			continue
		}
		if f["ok"] != true {
			t.Fatalf("connect: %v", f)
		}
		break
	}
	// It keeps sending, though: unsolicited pongs keep its read deadline
	// (two and a half ticks) from ending the connection, so only the
	// write timeout does.
	stopPongs := make(chan struct{})
	pongsDone := make(chan struct{})
	go func() {
		defer close(pongsDone)
		for {
			select {
			case <-stopPongs:
				return
			case <-time.After(tick / 4):
			}
			_ = stuckWire.frame(finBit|opPong, nil)
		}
	}()
	var stuck *Conn
	for _, c := range g.srv.snapshotConns() {
		if !healthyIDs[c.ID()] {
			stuck = c
		}
	}
	if stuck == nil || len(g.srv.snapshotConns()) != healthy+1 {
		t.Fatalf("cannot tell the stuck connection among %d", len(g.srv.snapshotConns()))
	}
	// One frame, encoded once and queued again and again (the writer only
	// reads it), so filling costs no CPU a loaded machine lacks.
	fill := encodeEvent("test.fill", mustJSON(map[string]string{"pad": strings.Repeat("x", frame)}), nil, nil)
	for range stuckBytes / frame {
		if !stuck.enqueue(fill) {
			t.Fatal("stuck connection closed while filling")
		}
	}
	// From here the stuck writer blocks as soon as the socket buffers are
	// full, and stays blocked until writeTimeout.
	mu.Lock()
	base := append([]int(nil), ticks...)
	mu.Unlock()
	stuckLive := func() bool {
		for _, c := range g.srv.snapshotConns() {
			if c == stuck {
				return true
			}
		}
		return false
	}
	for {
		mu.Lock()
		least := ticks[0] - base[0]
		for i := range healthy {
			least = min(least, ticks[i]-base[i])
		}
		mu.Unlock()
		if least >= stuckTicks {
			break
		}
		if !stuckLive() {
			t.Fatalf("the stuck write ended (writeTimeout %v) before every healthy client saw %d ticks: fewest %d (tick %v)",
				writeTimeout, stuckTicks, least, tick)
		}
		for i, c := range clients {
			select {
			case <-c.Done():
				t.Fatalf("healthy client %d dropped while a peer was stuck: %v", i, c.Err())
			default:
			}
		}
		time.Sleep(tick / 4)
	}
	// Closing the stuck socket ends its writer at once instead of at the
	// write timeout.
	close(stopPongs)
	<-pongsDone
	_ = stuckWire.conn.Close()
}

// A presence version goes out in one event only. A change made while the
// presence loop gathers a window lands in that window's event and leaves
// a kick behind; the window that kick opens has nothing new to say and
// must stay silent, not repeat the version (TestPresenceAndSeq saw that
// under load).
func TestPresenceVersionSentOnce(t *testing.T) {
	g := startGateway(t, nil)
	b := &g.srv.bus
	var mu sync.Mutex
	var pvs []uint64
	g.dialClient(t, func(o *client.Options) {
		o.ClientMode = "ui"
		o.ClientID = "openclaw-tui"
		o.OnEvent = func(e client.Event) {
			if e.Name == protocol.EventPresence && e.StateVersion != nil {
				mu.Lock()
				pvs = append(pvs, e.StateVersion.Presence)
				mu.Unlock()
			}
		}
	})
	seen := func(v uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(pvs) > 0 && pvs[len(pvs)-1] == v
	}
	waitFor := func(v uint64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !seen(v); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("presence version %d never arrived; got %v", v, pvs)
			}
		}
	}
	// The watcher's own join is announced (after its hello-ok); nothing
	// else changes presence in this test.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(pvs)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher's join was never announced")
		}
	}
	b.mu.Lock()
	joined := b.version.Presence
	b.mu.Unlock()
	waitFor(joined)
	// Windows that close with nothing new, then one change flushed twice
	// (as the loop and a leftover kick would).
	b.flushPresence()
	b.flushPresence()
	b.mu.Lock()
	b.version.Presence++
	changed := b.version.Presence
	b.mu.Unlock()
	b.flushPresence()
	b.flushPresence()
	waitFor(changed)
	// Each connection's frames are queued in broadcast order, so all the
	// events the flushes above queued have arrived by now.
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(pvs); i++ {
		if pvs[i] <= pvs[i-1] {
			t.Fatalf("presence versions %v: %d repeated or went back", pvs, pvs[i])
		}
	}
	if n := len(pvs); n < 2 || pvs[n-2] != joined {
		t.Fatalf("presence versions %v, want ... %d %d", pvs, joined, changed)
	}
}
