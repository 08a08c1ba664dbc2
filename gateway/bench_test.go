package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/store/bolt"
)

// The handshake benchmarks and the ed25519 ceiling run in one `go test
// -bench` invocation so their ratio, not a lone absolute time, is what
// BENCHMARKS.md reports.

func benchGateway(b *testing.B) *testGateway {
	return startGateway(b, func(o *Options) { o.Logger = slog.New(slog.DiscardHandler) })
}

// signedRoundTrip is one full client session: dial, challenge, signed v3
// connect, health, close.
func signedRoundTrip(b *testing.B, url string, id *client.Identity) {
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Options{URL: url, Token: testToken, Identity: id,
		ClientID: "gateway-client", ClientMode: "backend",
		Scopes: []string{protocol.ScopeRead}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Call(ctx, "health", nil); err != nil {
		b.Fatal(err)
	}
	c.Close()
}

// BenchmarkSignedConnectHealth: sequential signed connect + health round
// trips over real loopback sockets.
func BenchmarkSignedConnectHealth(b *testing.B) {
	g := benchGateway(b)
	id, _ := client.NewIdentity()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		signedRoundTrip(b, g.url, id)
	}
	reportCeiling(b)
}

// BenchmarkSignedConnectHealthParallel: the same from GOMAXPROCS×4
// concurrent clients.
func BenchmarkSignedConnectHealthParallel(b *testing.B) {
	g := benchGateway(b)
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id, _ := client.NewIdentity()
		for pb.Next() {
			signedRoundTrip(b, g.url, id)
		}
	})
	reportCeiling(b)
}

// reportCeiling reports handshakes/s and, measured right after the loop in
// the same process, the ed25519 verify rate on every core and the ratio
// of the two (in this in-process setup the client's signing and
// WebSocket work share the cores with the gateway).
func reportCeiling(b *testing.B) {
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.StopTimer()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := []byte("v3|56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c|cli|cli|operator|operator.read,operator.write|1737264000000|shared-token|2f1c6b0e-0000-4000-8000-000000000000|linux|")
	sig := ed25519.Sign(priv, msg)
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 300*time.Millisecond {
				ed25519.Verify(pub, msg, sig)
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	ceiling := float64(n.Load()) / time.Since(start).Seconds()
	b.ReportMetric(rate, "handshakes/s")
	b.ReportMetric(ceiling, "verifies/s")
	b.ReportMetric(100*rate/ceiling, "%-of-ceiling")
}

// BenchmarkEd25519VerifyCeiling is the machine's ed25519 verify rate on
// all cores: the upper bound for signed handshakes per second.
func BenchmarkEd25519VerifyCeiling(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := []byte("v3|56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c|cli|cli|operator|operator.read,operator.write|1737264000000|shared-token|2f1c6b0e-0000-4000-8000-000000000000|linux|")
	sig := ed25519.Sign(priv, msg)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("verify failed")
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}

// BenchmarkHealthRoundTrip: request/response latency on one established
// connection.
func BenchmarkHealthRoundTrip(b *testing.B) {
	g := benchGateway(b)
	c := g.dialClient(b, nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Call(ctx, "health", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// benchPairedGateway runs a gateway with real pairing over a bbolt file.
func benchPairedGateway(b *testing.B) *testGateway {
	dir := filepath.Join(b.TempDir(), "state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "clawgate.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	pm, err := pairing.New(db, pairing.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pm.Close(); db.Close() })
	return startGateway(b, func(o *Options) { o.Logger = slog.New(slog.DiscardHandler); o.Pairing = pm })
}

// BenchmarkPairedDeviceConnect: a paired device reconnecting with its
// device token only: signature check plus token-digest lookup, then
// health.
func BenchmarkPairedDeviceConnect(b *testing.B) {
	g := benchPairedGateway(b)
	id, _ := client.NewIdentity()
	ctx := context.Background()
	first, err := client.Dial(ctx, client.Options{URL: g.url, Token: testToken, Identity: id,
		Scopes: []string{protocol.ScopeRead}})
	if err != nil {
		b.Fatal(err)
	}
	devTok := first.Hello().Auth.DeviceToken
	first.Close()
	if devTok == "" {
		b.Fatal("no device token issued")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := client.Dial(ctx, client.Options{URL: g.url, DeviceToken: devTok, Identity: id,
			Scopes: []string{protocol.ScopeRead}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Call(ctx, "health", nil); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	reportCeiling(b)
}
