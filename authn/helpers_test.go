package authn

import (
	"crypto/ed25519"
	"os"
	"testing"
	"time"
)

// Test vector of openclaw-protocol.md §2.3.
const (
	vecPublicKey = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"
	vecDeviceID  = "56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c"
	vecSignedAt  = int64(1737264000000)
	vecNonce     = "2f1c6b0e-0000-4000-8000-000000000000"
	vecPayload   = "v3|56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c|cli|cli|operator|operator.read,operator.write|1737264000000|shared-token|2f1c6b0e-0000-4000-8000-000000000000|linux|"
	vecSignature = "0PW_JgJ67XtCQ7O9wwkU2pnFK-wbu6lSO1yeKpPv3ZIQr37oTF6UzwgmMRxfYCZ0zy96Pef2DifiD6G1ksUlCg"
)

// The device key seen in the real gateway transcripts.
const (
	transcriptPublicKey = "jRceNMCtcEkwXyqyaQy0-jJWtqG7ALWcasPGYQrxnZo"
	transcriptDeviceID  = "28f4a0ed371d63c7e1c979be5c042abb34c0f72e068044c64eb91d7cec3acaa0"
	nodePublicKey       = "_KQDjBU0Hljgvy3NuQp4Yn49lURQz8K8q2tQ7zjNGyc"
	nodeDeviceID        = "de9be9acd41e009d0cac6c2e84dfa992025510e5825fc111a7219521eb06714e"
)

// vecKey returns the §2.3 key pair (seed 00 01 … 1f).
func vecKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	return ed25519.NewKeyFromSeed(seed)
}

// vecClaims are the §2.3 vector's signed claims.
func vecClaims() SignedClaims {
	return SignedClaims{
		ClientID: "cli", ClientMode: "cli", Role: RoleOperator,
		Scopes: []string{ScopeRead, ScopeWrite}, Token: "shared-token", Platform: "linux",
	}
}

// vecProof is the §2.3 vector's device object.
func vecProof() DeviceProof {
	return DeviceProof{ID: vecDeviceID, PublicKey: vecPublicKey, Signature: vecSignature,
		SignedAt: vecSignedAt, Nonce: vecNonce}
}

// vecNow is the server clock for the vector: exactly signedAt.
var vecNow = time.UnixMilli(vecSignedAt)

// signedProof returns a proof by priv over the claims, nonce and signedAt,
// signed with the payload built by build (BuildPayloadV3 or BuildPayloadV2).
func signedProof(t testing.TB, priv ed25519.PrivateKey, c SignedClaims, nonce string, signedAt int64,
	build func(PayloadFields) string) DeviceProof {
	t.Helper()
	pub := priv.Public().(ed25519.PublicKey)
	d := DeviceProof{ID: DeviceID(pub), PublicKey: EncodePublicKey(pub), SignedAt: signedAt, Nonce: nonce}
	d.Signature = SignPayload(priv, build(payloadFields(d, c, nonce)))
	return d
}

// readFile returns a file of this package's directory as a string.
func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
