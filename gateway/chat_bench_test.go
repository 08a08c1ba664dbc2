package gateway

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/agent"
)

// BenchmarkChatDeltaFanout1000 measures how long a chat delta takes from
// the backend's emit to 1,000 watching operator connections: a backend
// streams one chunk every 200 ms (slower than the 150 ms throttle, so each
// chunk goes out at once), each chunk carrying its emit time, and every
// watcher records receipt minus emit time. One iteration is one run of 20
// deltas (20,000 deliveries). Reports p50/p99/max in ms.
//
//	go test -run '^$' -bench ChatDeltaFanout -benchtime 3x ./gateway/
func BenchmarkChatDeltaFanout1000(b *testing.B) {
	const watchers, chunks = 1000, 20
	fb := &fakeBackend{stream: func(ctx context.Context, _ agent.Request, emit func(string)) (agent.Result, error) {
		for i := 0; i < chunks; i++ {
			emit(strconv.FormatInt(time.Now().UnixNano(), 10) + ";")
			select {
			case <-ctx.Done():
				return agent.Result{}, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		return agent.Result{StopReason: "stop"}, nil
	}}
	g := startGateway(b, func(o *Options) { o.Agent.Backend = fb })

	var mu sync.Mutex
	var lat []time.Duration
	finals := make(chan struct{}, watchers)
	var wg sync.WaitGroup
	conns := make([]*websocket.Conn, 0, watchers)
	for i := 0; i < watchers; i++ {
		rc := dialRawURL(b, g.url, nil)
		rc.challenge()
		p := connectParams(testToken)
		p["scopes"] = []string{"operator.read"}
		rc.sendJSON(map[string]any{"type": "req", "id": "c", "method": "connect", "params": p})
		if f := rc.frame(); f["ok"] != true {
			b.Fatalf("connect %d: %v", i, f)
		}
		conns = append(conns, rc.ws)
	}
	marker := []byte(`"deltaText":"`)
	for _, ws := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() { mu.Lock(); lat = append(lat, mine...); mu.Unlock() }()
			_ = ws.SetReadDeadline(time.Time{}) // the handshake helper set one
			for {
				_, data, err := ws.ReadMessage()
				if err != nil {
					return
				}
				now := time.Now()
				if !bytes.Contains(data, []byte(`"event":"chat"`)) {
					continue
				}
				if bytes.Contains(data, []byte(`"state":"final"`)) {
					finals <- struct{}{}
					continue
				}
				i := bytes.Index(data, marker)
				if i < 0 {
					continue
				}
				rest := data[i+len(marker):]
				for _, part := range bytes.Split(rest[:bytes.IndexByte(rest, '"')], []byte(";")) {
					if ns, err := strconv.ParseInt(string(part), 10, 64); err == nil {
						mine = append(mine, now.Sub(time.Unix(0, ns)))
					}
				}
			}
		}()
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		c := g.dialClient(b, nil)
		if _, err := c.Call(context.Background(), "chat.send", map[string]any{
			"sessionKey": "bench", "message": "go", "idempotencyKey": fmt.Sprint("bench-", n)}); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < watchers; i++ {
			select {
			case <-finals:
			case <-time.After(60 * time.Second):
				b.Fatalf("only %d watchers saw the final", i)
			}
		}
		c.Close()
	}
	b.StopTimer()
	for _, ws := range conns {
		ws.Close()
	}
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no deltas measured")
	}
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
	b.ReportMetric(float64(len(lat))/float64(b.N), "deliveries/op")
}
