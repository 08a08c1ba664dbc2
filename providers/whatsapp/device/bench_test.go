package device

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/clawgate/clawgate/providers"
)

// countSink counts deliveries and wakes the benchmark on each.
type countSink struct {
	n    atomic.Int64
	kick chan struct{}
}

func (s *countSink) Deliver(context.Context, providers.Inbound) error {
	s.n.Add(1)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

func (s *countSink) SetState(providers.State, error) {}

func (s *countSink) wait(b *testing.B, n int64) {
	for s.n.Load() < n {
		select {
		case <-s.kick:
		case <-time.After(10 * time.Second):
			b.Fatalf("delivered %d of %d", s.n.Load(), n)
		}
	}
}

// BenchmarkInboundHandler: one whatsmeow message event through the
// dispatcher, the handler, the bounded queue, the serve loop and the
// conversion to an Inbound (no network, no policy).
func BenchmarkInboundHandler(b *testing.B) {
	sink := &countSink{kick: make(chan struct{}, 1)}
	sm := newSeamSink(b, 1024, sink)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if sm.dispatch(&events.Message{Info: msgInfo(alicePN, alicePN, "B"+strconv.Itoa(i)), Message: text("bench")}) {
			sink.wait(b, int64(i)) // queue full: let it drain, then retry once
			sm.dispatch(&events.Message{Info: msgInfo(alicePN, alicePN, "B"+strconv.Itoa(i)), Message: text("bench")})
		}
	}
	sink.wait(b, int64(b.N))
}

// BenchmarkEncryptedRoundTrip: the fake's peer sends a Signal-encrypted
// message over the Noise socket; the provider decrypts and delivers it,
// then sends an encrypted reply that the peer decrypts. One iteration is
// the whole exchange, over loopback TLS.
func BenchmarkEncryptedRoundTrip(b *testing.B) {
	srv := newFake(b)
	p := newProvider(b, srv, slog.New(slog.DiscardHandler))
	link(b, p, srv)
	sink := &countSink{kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, sink) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for !p.LoginStatus().Connected {
		if time.Now().After(deadline) {
			b.Fatal("not connected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := srv.Inject(alicePhone, "Alice", "ping"); err != nil {
			b.Fatal(err)
		}
		sink.wait(b, int64(i+1))
		if _, err := p.Send(ctx, providers.Outbound{To: aliceID, Text: "pong"}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := len(srv.Sent()); n != b.N {
		b.Fatalf("the peer decrypted %d replies; want %d", n, b.N)
	}
}
