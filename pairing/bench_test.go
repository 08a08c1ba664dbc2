package pairing_test

import (
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/store"
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

// unbatchedStore gives every BatchPairing call a transaction and a commit of
// its own, as Check's writes had before they were grouped.
type unbatchedStore struct{ store.PairingStore }

func (u unbatchedStore) BatchPairing(fn func(store.PairingTx) error) error {
	return u.UpdatePairing(fn)
}

// BenchmarkNewDeviceConnect is a new local device's first connect from 16
// goroutines at once, on a real file: the silent approval and the token
// hello-ok hands out, per op.
//
//   - two-tx: approval, then EnsureToken, each its own fsynced transaction
//     (the connect path before IssueToken and BatchPairing);
//   - one-tx: approval and token in one transaction (IssueToken), one
//     commit per connect;
//   - one-tx-grouped: the same, with concurrent connects sharing commits
//     (BatchPairing), as the gateway runs it.
func BenchmarkNewDeviceConnect(b *testing.B) {
	for _, bc := range []struct {
		name    string
		batched bool
		issue   bool
	}{
		{"two-tx", false, false},
		{"one-tx", false, true},
		{"one-tx-grouped", true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b)
			var st store.PairingStore = e.db
			if !bc.batched {
				st = unbatchedStore{e.db}
			}
			m, err := pairing.New(st, pairing.Options{FlushInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			devs := make([]device, b.N)
			for i := range devs {
				devs[i] = newDevice(b)
			}
			var next atomic.Int64
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d := devs[next.Add(1)-1]
					ci := local(info(d, "operator", readScopes))
					ci.IssueToken = bc.issue
					dec, err := m.Check(ci)
					if err != nil || dec.Outcome != pairing.ApprovedSilently {
						b.Error(dec.Outcome, err) // Fatal only on the benchmark's goroutine
						return
					}
					if bc.issue {
						if dec.Token.Token == "" {
							b.Error("no token")
							return
						}
						continue
					}
					if _, _, minted, err := m.EnsureToken(d.id, "operator", dec.Scopes); err != nil || !minted {
						b.Error(minted, err)
						return
					}
				}
			})
		})
	}
}
