package authn

import (
	"crypto/ed25519"
	"testing"
	"time"
)

// BenchmarkVerifyDevice is a full VerifyDevice of a v3 proof: key decode,
// device id, skew and nonce checks, field validation, signature decode and
// Ed25519 verify. Compare with BenchmarkEd25519Verify for the overhead.
func BenchmarkVerifyDevice(b *testing.B) {
	d, c := vecProof(), vecClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyDevice(d, c, vecNonce, vecNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Verify is the raw ed25519.Verify over the same payload.
func BenchmarkEd25519Verify(b *testing.B) {
	pub := vecKey().Public().(ed25519.PublicKey)
	sig, err := DecodeSignature(vecSignature)
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte(vecPayload)
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkVerifyDeviceV2 verifies a v2 proof: the v3 attempt fails first,
// so this is the worst case of two Ed25519 verifications.
func BenchmarkVerifyDeviceV2(b *testing.B) {
	c := vecClaims()
	d := signedProof(b, vecKey(), c, vecNonce, vecSignedAt, BuildPayloadV2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyDevice(d, c, vecNonce, vecNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLimiter is one Check plus one Fail, the cost of a wrong token,
// over 20,000 rotating IPs against the default 10,000-entry cap, so eviction
// is exercised.
func BenchmarkLimiter(b *testing.B) {
	l := NewLimiter(DefaultLimits())
	keys := make([]LimitKey, 20_000)
	for i := range keys {
		keys[i] = ipKey(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i%len(keys)]
		now := t0.Add(time.Duration(i) * time.Millisecond)
		l.Check(k, now)
		l.Fail(k, now)
		i++
	}
}

// BenchmarkLimiterParallel is BenchmarkLimiter under contention.
func BenchmarkLimiterParallel(b *testing.B) {
	l := NewLimiter(DefaultLimits())
	keys := make([]LimitKey, 1000)
	for i := range keys {
		keys[i] = ipKey(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := keys[i%len(keys)]
			l.Check(k, t0)
			l.Fail(k, t0)
			i++
		}
	})
}

// BenchmarkSharedSecretEqual is the constant-time token compare.
func BenchmarkSharedSecretEqual(b *testing.B) {
	s, _ := NewSharedSecret(testSecret)
	b.ReportAllocs()
	for b.Loop() {
		s.Equal("definitely-wrong-token")
	}
}
