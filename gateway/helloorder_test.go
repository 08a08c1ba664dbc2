package gateway

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/protocol"
)

// TestNoEventBeforeHello: the answer to connect is the first frame after
// the challenge, even while events are broadcast as
// fast as the bus takes them: a connection takes events only once its
// hello-ok is queued.
func TestNoEventBeforeHello(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	// Events as fast as the bus takes them, without the short ticks that
	// would also shorten every read deadline.
	stop := make(chan struct{})
	var noise sync.WaitGroup
	noise.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			g.srv.bus.broadcast(protocol.EventTick, protocol.TickPayload{Ts: time.Now().UnixMilli()}, nil, nil)
			time.Sleep(100 * time.Microsecond)
		}
	})
	defer noise.Wait()
	defer close(stop)
	// Connects one after another from the test goroutine (the helpers
	// stop the test on failure, which only it may do); the broadcaster
	// above races each of them.
	const rounds = 200
	n := 0
	for range rounds {
		w := g.upgraded(t, "")
		b, _ := json.Marshal(map[string]any{"type": "req", "id": "c1", "method": "connect",
			"params": connectParams(testToken)})
		w.text(string(b))
		if f := w.json(); f["type"] != "res" || f["id"] != "c1" || f["ok"] != true {
			if n++; n <= 3 {
				t.Error("first frame after connect: " + frameString(f))
			}
		}
		w.conn.Close()
	}
	if n > 0 {
		t.Fatalf("%d of %d connects saw an event before hello-ok", n, rounds)
	}
}

func frameString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
