package pairing_test

import (
	"testing"

	"github.com/clawgate/clawgate/pairing"
)

// BenchmarkVerifyDeviceToken is the connect read path: one bbolt read
// transaction, a JSON decode, a SHA-256 and a constant-time compare.
func BenchmarkVerifyDeviceToken(b *testing.B) {
	e := newEnv(b)
	for i := 0; i < 100; i++ { // some neighbours in the bucket
		e.pair(newDevice(b), "operator", readScopes)
	}
	d := newDevice(b)
	tok := e.pair(d, "operator", []string{"operator.write"})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := e.m.VerifyDeviceToken(d.id, "operator", tok, readScopes); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckPaired is the connect-time pairing decision for a paired
// device (read only).
func BenchmarkCheckPaired(b *testing.B) {
	e := newEnv(b)
	d := newDevice(b)
	e.pair(d, "operator", readScopes)
	ci := info(d, "operator", readScopes)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if dec, err := e.m.Check(ci); err != nil || dec.Outcome != pairing.Paired {
			b.Fatal(dec.Outcome, err)
		}
	}
}

// BenchmarkApprove is one approval on a real file: a write transaction with
// its fsyncs (the pending request is created outside the timer).
func BenchmarkApprove(b *testing.B) {
	e := newEnv(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id := e.request(newDevice(b), "operator", readScopes)
		b.StartTimer()
		if _, err := e.m.Approve(id, admin); err != nil {
			b.Fatal(err)
		}
	}
}
