package authn

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/, taken from the real
// gateway transcripts and the §2.3 vector.

func FuzzDecodePublicKey(f *testing.F) {
	f.Add(vecPublicKey)
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := DecodePublicKey(s)
		if err != nil {
			if pub != nil {
				t.Fatal("key returned with an error")
			}
			return
		}
		if len(pub) != ed25519.PublicKeySize {
			t.Fatalf("decoded %d bytes", len(pub))
		}
		back, err := DecodePublicKey(EncodePublicKey(pub))
		if err != nil || !bytes.Equal(back, pub) {
			t.Fatalf("round trip failed: %v", err)
		}
		if !IsDeviceID(DeviceID(pub)) {
			t.Fatal("DeviceID is not 64 lowercase hex")
		}
	})
}

func FuzzDecodeSignature(f *testing.F) {
	f.Add(vecSignature)
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := DecodeSignature(s)
		if err != nil {
			return
		}
		if len(sig) != ed25519.SignatureSize {
			t.Fatalf("decoded %d bytes", len(sig))
		}
		back, err := DecodeSignature(EncodeSignature(sig))
		if err != nil || !bytes.Equal(back, sig) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

// splitScopes turns the fuzzer's newline-separated scopes into a slice ("" is
// no scopes).
func splitScopes(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// parsePayload splits a built payload back into fields: the inverse of
// BuildPayloadV3/V2 for fields that pass Validate.
func parsePayload(s string) (PayloadFields, PayloadVersion, error) {
	parts := strings.Split(s, "|")
	var v PayloadVersion
	switch {
	case len(parts) == 11 && parts[0] == "v3":
		v = PayloadV3
	case len(parts) == 9 && parts[0] == "v2":
		v = PayloadV2
	default:
		return PayloadFields{}, 0, errors.New("not a v2/v3 payload")
	}
	signedAt, err := strconv.ParseInt(parts[6], 10, 64)
	if err != nil {
		return PayloadFields{}, 0, err
	}
	p := PayloadFields{DeviceID: parts[1], ClientID: parts[2], ClientMode: parts[3], Role: parts[4],
		Scopes: splitNonEmpty(parts[5]), SignedAtMs: signedAt, Token: parts[7], Nonce: parts[8]}
	if v == PayloadV3 {
		p.Platform, p.DeviceFamily = parts[9], parts[10]
	}
	return p, v, nil
}

// splitNonEmpty splits a scopes field on ','; "" is no scopes.
func splitNonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// samePayload compares parsed fields with the built ones.
func samePayload(got, want PayloadFields) bool {
	return got.DeviceID == want.DeviceID && got.ClientID == want.ClientID && got.ClientMode == want.ClientMode &&
		got.Role == want.Role && slices.Equal(got.Scopes, want.Scopes) && got.SignedAtMs == want.SignedAtMs &&
		got.Token == want.Token && got.Nonce == want.Nonce && got.Platform == want.Platform &&
		got.DeviceFamily == want.DeviceFamily
}

// joinRef is the payload as the protocol spells it out, for any fields.
func joinRef(version string, p PayloadFields, extra ...string) string {
	f := []string{version, p.DeviceID, p.ClientID, p.ClientMode, p.Role, strings.Join(p.Scopes, ","),
		strconv.FormatInt(p.SignedAtMs, 10), p.Token, p.Nonce}
	return strings.Join(append(f, extra...), "|")
}

func FuzzBuildPayload(f *testing.F) {
	f.Add("id", "c", "m", "r", "a\nb", int64(-5), "t", "n", " Linux\xff ", "\tiPhone ")
	f.Add(vecDeviceID, "cli", "cli", "operator", "operator.read\noperator.write", vecSignedAt,
		"shared-token", vecNonce, "linux", "")
	f.Fuzz(func(t *testing.T, deviceID, clientID, clientMode, role, scopes string, signedAt int64,
		token, nonce, platform, deviceFamily string) {
		p := PayloadFields{DeviceID: deviceID, ClientID: clientID, ClientMode: clientMode, Role: role,
			Scopes: splitScopes(scopes), SignedAtMs: signedAt, Token: token, Nonce: nonce,
			Platform: platform, DeviceFamily: deviceFamily}
		v3, v2 := BuildPayloadV3(p), BuildPayloadV2(p)
		if want := joinRef("v3", p, NormalizeMetadata(platform), NormalizeMetadata(deviceFamily)); v3 != want {
			t.Fatalf("v3 = %q, want %q", v3, want)
		}
		if want := joinRef("v2", p); v2 != want {
			t.Fatalf("v2 = %q, want %q", v2, want)
		}
		if p.Validate() != nil {
			return
		}
		want := p
		want.Platform, want.DeviceFamily = NormalizeMetadata(platform), NormalizeMetadata(deviceFamily)
		got, v, err := parsePayload(v3)
		if err != nil || v != PayloadV3 || !samePayload(got, want) {
			t.Fatalf("v3 round trip: %q → %+v (%v)", v3, got, err)
		}
		want.Platform, want.DeviceFamily = "", ""
		got, v, err = parsePayload(v2)
		if err != nil || v != PayloadV2 || !samePayload(got, want) {
			t.Fatalf("v2 round trip: %q → %+v (%v)", v2, got, err)
		}
		if n := NormalizeMetadata(platform); NormalizeMetadata(n) != n || strings.ContainsAny(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("NormalizeMetadata(%q) = %q", platform, n)
		}
	})
}

// deviceCodes is every code VerifyDevice may return.
var deviceCodes = []*DeviceAuthError{ErrDeviceAuthInvalid, ErrDeviceIDMismatch, ErrSignatureExpired,
	ErrNonceRequired, ErrNonceMismatch, ErrSignatureInvalid, ErrPublicKeyInvalid}

func FuzzVerifyDevice(f *testing.F) {
	f.Add(vecDeviceID, vecPublicKey, vecSignature, vecSignedAt, vecNonce, vecNonce, vecSignedAt,
		"cli", "cli", "operator", "operator.read\noperator.write", "shared-token", "linux", "")
	f.Fuzz(func(t *testing.T, id, pub, sig string, signedAt int64, nonce, challenge string, nowMs int64,
		clientID, clientMode, role, scopes, token, platform, deviceFamily string) {
		d := DeviceProof{ID: id, PublicKey: pub, Signature: sig, SignedAt: signedAt, Nonce: nonce}
		c := SignedClaims{ClientID: clientID, ClientMode: clientMode, Role: role, Scopes: splitScopes(scopes),
			Token: token, Platform: platform, DeviceFamily: deviceFamily}
		got, err := VerifyDevice(d, c, challenge, time.UnixMilli(nowMs))
		if err != nil {
			var dae *DeviceAuthError
			if !errors.As(err, &dae) || !slices.ContainsFunc(deviceCodes, func(e *DeviceAuthError) bool { return errors.Is(dae, e) }) {
				t.Fatalf("unexpected error %T %v", err, err)
			}
			return
		}
		checkVerified(t, got, d, c, challenge)
	})
}

// checkVerified re-derives a successful VerifyDevice result independently.
func checkVerified(t *testing.T, got VerifiedDevice, d DeviceProof, c SignedClaims, challenge string) {
	t.Helper()
	if got.ID != d.ID || DeviceID(got.PublicKey) != d.ID || strings.TrimSpace(d.Nonce) != challenge {
		t.Fatalf("accepted a proof that does not bind: %+v", got)
	}
	raw, err := DecodeSignature(d.Signature)
	if err != nil {
		t.Fatalf("accepted an undecodable signature: %v", err)
	}
	p := payloadFields(d, c, challenge)
	if p.Validate() != nil {
		t.Fatal("accepted invalid payload fields")
	}
	build := BuildPayloadV3
	if got.Version == PayloadV2 {
		build = BuildPayloadV2
	}
	if !ed25519.Verify(got.PublicKey, []byte(build(p)), raw) {
		t.Fatalf("reported %v but the signature does not verify over it", got.Version)
	}
}
