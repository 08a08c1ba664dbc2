package logring

import (
	"io"
	"log/slog"
	"testing"
)

// BenchmarkHandler: one Info record with four attributes into the ring.
func BenchmarkHandler(b *testing.B) {
	r := New(2 << 20)
	log := slog.New(r.Handler(nil)).With("component", "gateway")
	b.ReportAllocs()
	for b.Loop() {
		log.Info("connected", "conn", "3fbab927", "remote", "127.0.0.1:44104", "role", "operator", "auth", "token")
	}
}

// BenchmarkTee: the same record to a JSON stdout handler and the ring,
// against the stdout handler alone (the ring's added cost per record).
func BenchmarkTee(b *testing.B) {
	for _, tee := range []bool{false, true} {
		name := "stdout-only"
		if tee {
			name = "stdout+ring"
		}
		b.Run(name, func(b *testing.B) {
			var h slog.Handler = slog.NewJSONHandler(io.Discard, nil)
			if tee {
				h = slog.NewMultiHandler(h, New(2<<20).Handler(nil))
			}
			log := slog.New(h)
			b.ReportAllocs()
			for b.Loop() {
				log.Info("connected", "conn", "3fbab927", "remote", "127.0.0.1:44104", "role", "operator", "auth", "token")
			}
		})
	}
}

// BenchmarkTail: a logs.tail of the default 500 lines from a full ring.
func BenchmarkTail(b *testing.B) {
	r := New(2 << 20)
	log := slog.New(r.Handler(nil))
	for range 20000 {
		log.Info("connected", "conn", "3fbab927", "remote", "127.0.0.1:44104", "role", "operator")
	}
	b.ReportAllocs()
	for b.Loop() {
		if res := r.Tail(Query{}); len(res.Lines) != DefaultLimit {
			b.Fatalf("%d lines", len(res.Lines))
		}
	}
}
