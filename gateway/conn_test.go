package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/protocol"
)

// closeAfterFlush sends what was queued before the close frame even when
// the reader ends before the writer has run. A failed handshake whose read
// deadline has already passed ends its drain at once, and on a loaded
// machine the writer that enqueue started may not have been scheduled by
// then: it used to find the connection's context canceled and drop the
// queued error response, so the peer got the close alone
// (TestTranscriptReplay saw it). The test holds that writer back and
// releases it after the reader's end, the order the scheduler can pick.
func TestCloseAfterFlushOutlivesReader(t *testing.T) {
	g := startGateway(t, nil)
	accepted := make(chan *websocket.Conn, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil); err == nil {
			accepted <- ws
		}
	}))
	defer hs.Close()
	peer, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	ws := <-accepted
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{srv: g.srv, ws: ws, id: newUUID(), log: g.srv.log, ctx: ctx, cancel: cancel}
	c.poll.fd = -1 // never parked
	c.reading.Add(1)

	// A writer counts as started (signal's bookkeeping) but has not run.
	c.mu.Lock()
	c.writing = true
	c.writers.Add(1)
	c.mu.Unlock()
	const res = `{"type":"res","id":"r1","ok":false}`
	if !c.enqueue([]byte(res)) {
		t.Fatal("enqueue refused")
	}
	c.closeAfterFlush(protocol.ClosePolicy, "device signature invalid")
	// The writer runs only once the reader's end has canceled the
	// connection's context.
	go func() {
		defer c.writers.Done()
		<-ctx.Done()
		c.writeLoop()
	}()
	c.end("")

	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	mt, data, err := peer.ReadMessage()
	if err != nil || mt != websocket.TextMessage || string(data) != res {
		t.Fatalf("first frame: type %d %q err %v; want the queued response before the close", mt, data, err)
	}
	_, _, err = peer.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.ClosePolicy || ce.Text != "device signature invalid" {
		t.Fatalf("after the response: %v, want close 1008", err)
	}
}
