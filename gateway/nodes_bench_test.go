package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// benchNode connects an approved node whose handler answers every
// invocation at once (a trivial command: the payload echoes nothing).
func benchNode(b *testing.B, g *nodeGateway, admin *client.Client) string {
	b.Helper()
	id, _ := client.NewIdentity()
	reqs := make(chan json.RawMessage, 1024)
	opts := client.Options{URL: g.url, Token: testToken, Identity: id, ClientID: "node-host", ClientMode: "node",
		Role: protocol.RoleNode, Platform: "linux", DeviceFamily: "Linux", Commands: []string{"system.which"},
		OnEvent: func(e client.Event) {
			if e.Name == protocol.EventNodeInvokeRequest {
				reqs <- e.Payload
			}
		}}
	nc, err := client.Dial(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	// Answer from a few goroutines, as a node host would.
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for raw := range reqs {
				var p struct{ ID string }
				_ = json.Unmarshal(raw, &p)
				_, _ = nc.Call(context.Background(), "node.invoke.result",
					map[string]any{"id": p.ID, "nodeId": id.DeviceID, "ok": true, "payloadJSON": `{"bins":{}}`})
			}
		}()
	}
	b.Cleanup(func() { close(reqs); wg.Wait() })
	g.approveNode(b, admin, id.DeviceID)
	return id.DeviceID
}

// latencies collects per-invoke round-trip times.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	slices.Sort(l.d)
	if len(l.d) == 0 {
		return
	}
	q := func(p float64) float64 { return float64(l.d[int(p*float64(len(l.d)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(float64(len(l.d))/b.Elapsed().Seconds(), "invokes/s")
}

func benchNodeGateway(b *testing.B) (*nodeGateway, *client.Client, string) {
	g := startNodeGateway(b, func(o *Options) { o.Logger = slog.New(slog.DiscardHandler) })
	admin := g.dialClient(b, func(o *client.Options) { o.Scopes = []string{protocol.ScopeAdmin} })
	return g, admin, benchNode(b, g, admin)
}

// BenchmarkNodeInvoke: sequential node.invoke round trips (operator →
// gateway → node.invoke.request → node → node.invoke.result → gateway →
// operator) over real loopback sockets, with a trivial command.
func BenchmarkNodeInvoke(b *testing.B) {
	_, admin, nodeID := benchNodeGateway(b)
	var lat latencies
	ctx := context.Background()
	params := map[string]any{"nodeId": nodeID, "command": "system.which", "params": map[string]any{"bins": []string{}},
		"idempotencyKey": "bench"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := admin.Call(ctx, "node.invoke", params); err != nil {
			b.Fatal(err)
		}
		lat.add(time.Since(t0))
	}
	b.StopTimer()
	lat.report(b)
}

// BenchmarkNodeInvokeParallel: the same with 8×GOMAXPROCS invocations in
// flight from one operator connection to one node.
func BenchmarkNodeInvokeParallel(b *testing.B) {
	_, admin, nodeID := benchNodeGateway(b)
	var lat latencies
	params := map[string]any{"nodeId": nodeID, "command": "system.which", "params": map[string]any{"bins": []string{}},
		"idempotencyKey": "bench"}
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			t0 := time.Now()
			if _, err := admin.Call(ctx, "node.invoke", params); err != nil {
				b.Error(err)
				return
			}
			lat.add(time.Since(t0))
		}
	})
	b.StopTimer()
	lat.report(b)
}
