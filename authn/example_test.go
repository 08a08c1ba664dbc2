package authn_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/clawgate/clawgate/authn"
)

// A client signs the v3 payload for the challenge; the gateway verifies it.
func ExampleVerifyDevice() {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)

	challenge := "2f1c6b0e-0000-4000-8000-000000000000"
	signedAt := time.UnixMilli(1737264000000)
	claims := authn.SignedClaims{ClientID: "cli", ClientMode: "cli", Role: authn.RoleOperator,
		Scopes: []string{authn.ScopeRead, authn.ScopeWrite}, Token: "shared-token", Platform: "linux"}

	proof := authn.DeviceProof{ID: authn.DeviceID(pub), PublicKey: authn.EncodePublicKey(pub),
		SignedAt: signedAt.UnixMilli(), Nonce: challenge}
	proof.Signature = authn.SignPayload(priv, authn.BuildPayloadV3(authn.PayloadFields{
		DeviceID: proof.ID, ClientID: claims.ClientID, ClientMode: claims.ClientMode, Role: claims.Role,
		Scopes: claims.Scopes, SignedAtMs: proof.SignedAt, Token: claims.Token, Nonce: challenge,
		Platform: claims.Platform}))

	dev, err := authn.VerifyDevice(proof, claims, challenge, signedAt.Add(time.Second))
	fmt.Println(dev.Version, dev.ID[:8], err)

	// The same proof replayed on another connection.
	_, err = authn.VerifyDevice(proof, claims, "another-challenge", signedAt.Add(time.Second))
	var dae *authn.DeviceAuthError
	if errors.As(err, &dae) {
		fmt.Println(dae.Code, dae.Reason, dae.Message)
	}
	// Output:
	// v3 56475aa7 <nil>
	// DEVICE_AUTH_NONCE_MISMATCH device-nonce-mismatch device nonce mismatch
}

// The order in which the gateway consults the limiter for one attempt.
func ExampleLimiter() {
	l := authn.NewLimiter(authn.DefaultLimits())
	var arrival authn.Arrival // from the listener; the zero value is an unknown remote peer
	key := authn.NewLimitKey(authn.LimitSharedSecret, arrival)
	now := time.Unix(1795733541, 0)
	for i := 0; i < 10; i++ {
		l.Fail(key, now) // ten wrong tokens
	}
	retry, locked := l.Check(key, now.Add(time.Second)) // the 11th attempt
	fmt.Println(locked, retry)
	// Output: true 4m59s
}
