package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/tlspin"
)

// benchConnect measures one sequential client: dial (TCP, TLS when the URL
// is wss://, with the pin checked), the signed v3 connect, one health
// call, close.
func benchConnect(b *testing.B, pair *tlspin.Pair, pin string) {
	g := startTLSGateway(b, pair, authn.PathLoopback)
	id, err := client.NewIdentity()
	if err != nil {
		b.Fatal(err)
	}
	opts := client.Options{URL: g.url, Token: testToken, Identity: id, Scopes: []string{protocol.ScopeRead}, TLSFingerprint: pin}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		c, err := client.Dial(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Call(ctx, "health", nil); err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "connects/s")
}

// BenchmarkConnectHealthPlain is the plaintext loopback baseline.
func BenchmarkConnectHealthPlain(b *testing.B) { benchConnect(b, nil, "") }

// BenchmarkConnectHealthTLSPinned adds a TLS 1.3 handshake (ECDSA P-256
// certificate) with the SPKI pin checked in VerifyConnection.
func BenchmarkConnectHealthTLSPinned(b *testing.B) {
	pair, _, _ := newPairTB(b)
	benchConnect(b, pair, pair.SPKIFingerprint().String())
}
