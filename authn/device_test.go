package authn

import (
	"bufio"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/protocol"
)

func TestVerifyDeviceVector(t *testing.T) {
	got, err := VerifyDevice(vecProof(), vecClaims(), vecNonce, vecNow)
	if err != nil {
		t.Fatalf("VerifyDevice: %v", err)
	}
	if got.ID != vecDeviceID || got.Version != PayloadV3 || EncodePublicKey(got.PublicKey) != vecPublicKey {
		t.Fatalf("got %+v", got)
	}
}

// transcript is what a negative-case capture of the real gateway says.
type transcript struct {
	challenge string
	now       time.Time // when the gateway answered
	proof     DeviceProof
	claims    SignedClaims
	errCode   string // error.details.code, "" when ok
	errReason string
	errMsg    string
	closeCode int
	closeMsg  string
}

// transcriptFrame is the part of a captured frame the tests read.
type transcriptFrame struct {
	Type    string
	Event   string
	Method  string
	Payload struct{ Nonce string }
	Params  struct {
		Client struct{ ID, Mode, Platform, DeviceFamily string }
		Role   string
		Scopes []string
		Auth   struct{ Token, DeviceToken, BootstrapToken string }
		Device *struct {
			ID, PublicKey, Signature string
			SignedAt                 int64
			Nonce                    string
		}
	}
	Error *struct {
		Code, Message string
		Details       struct{ Code, Reason string }
	}
}

// readTranscript loads testdata/transcripts/<name>.jsonl.
func readTranscript(t *testing.T, name string) transcript {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "transcripts", name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tr transcript
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct {
			TS     int64
			Dir    string
			Code   int
			Reason string
			Frame  transcriptFrame
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		applyTranscriptLine(&tr, l.TS, l.Dir, l.Frame)
		if l.Dir == "close" {
			tr.closeCode, tr.closeMsg = l.Code, l.Reason
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if tr.challenge == "" || tr.proof.ID == "" || tr.now.IsZero() {
		t.Fatalf("%s: transcript incomplete: %+v", name, tr)
	}
	return tr
}

// applyTranscriptLine folds one captured frame into tr.
func applyTranscriptLine(tr *transcript, ts int64, dir string, fr transcriptFrame) {
	switch {
	case dir == "recv" && fr.Event == "connect.challenge":
		tr.challenge = fr.Payload.Nonce
	case dir == "send" && fr.Method == "connect" && fr.Params.Device != nil:
		p, d := fr.Params, fr.Params.Device
		tr.proof = DeviceProof{ID: d.ID, PublicKey: d.PublicKey, Signature: d.Signature, SignedAt: d.SignedAt, Nonce: d.Nonce}
		tr.claims = SignedClaims{
			ClientID: p.Client.ID, ClientMode: p.Client.Mode, Role: ResolveRole(p.Role), Scopes: p.Scopes,
			Token:    PickToken(p.Auth.Token, p.Auth.DeviceToken, p.Auth.BootstrapToken),
			Platform: p.Client.Platform, DeviceFamily: p.Client.DeviceFamily,
		}
	case dir == "recv" && fr.Type == "res":
		tr.now = time.UnixMilli(ts)
		if fr.Error != nil {
			tr.errCode, tr.errReason, tr.errMsg = fr.Error.Details.Code, fr.Error.Details.Reason, fr.Error.Message
		}
	}
}

// TestVerifyDeviceTranscripts replays every device case the real gateway
// was captured answering, and expects the same code, reason and message.
func TestVerifyDeviceTranscripts(t *testing.T) {
	tests := []struct {
		file string
		want *DeviceAuthError // nil: the proof verifies
	}{
		{"neg-bad-signature", ErrSignatureInvalid},
		{"neg-device-id-mismatch", ErrDeviceIDMismatch},
		{"neg-device-nonce-mismatch", ErrNonceMismatch},
		{"neg-signed-wrong-nonce", ErrSignatureInvalid},
		{"neg-stale-signedAt", ErrSignatureExpired},
		{"neg-wrong-token", nil}, // proof fine (v3, real signature); the shared token is what fails
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			tr := readTranscript(t, tt.file)
			got, err := VerifyDevice(tr.proof, tr.claims, tr.challenge, tr.now)
			if tt.want == nil {
				if err != nil || got.Version != PayloadV3 || got.ID != transcriptDeviceID {
					t.Fatalf("VerifyDevice = %+v, %v; want v3 success", got, err)
				}
				if tr.errCode != protocol.DetailAuthTokenMismatch {
					t.Fatalf("transcript error %q, want AUTH_TOKEN_MISMATCH", tr.errCode)
				}
				secret, _ := NewSharedSecret("the-real-configured-token")
				if secret.Equal(tr.claims.Token) {
					t.Fatal("wrong token accepted")
				}
				return
			}
			var dae *DeviceAuthError
			if !errors.As(err, &dae) {
				t.Fatalf("err = %v, want *DeviceAuthError", err)
			}
			if dae.Code != tr.errCode || dae.Reason != tr.errReason || dae.Message != tr.errMsg {
				t.Errorf("got {%s %s %q}, transcript {%s %s %q}",
					dae.Code, dae.Reason, dae.Message, tr.errCode, tr.errReason, tr.errMsg)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("errors.Is(err, %v) = false", tt.want)
			}
			if tr.closeCode != protocol.ClosePolicy || tr.closeMsg != dae.Message {
				t.Errorf("transcript close %d %q, want 1008 %q", tr.closeCode, tr.closeMsg, dae.Message)
			}
		})
	}
}

func TestVerifyDevice(t *testing.T) {
	priv := vecKey()
	attacker := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	const nonce = "9a98df14-21b4-47e6-bf1c-825a5c0475a5"
	now := time.UnixMilli(1795733541664)
	nowMs := now.UnixMilli()
	claims := vecClaims()
	v3 := func(mut func(*SignedClaims), signedAt int64) DeviceProof {
		c := vecClaims()
		if mut != nil {
			mut(&c)
		}
		return signedProof(t, priv, c, nonce, signedAt, BuildPayloadV3)
	}
	good := v3(nil, nowMs)
	with := func(mut func(*DeviceProof)) DeviceProof { d := good; mut(&d); return d }

	tests := []struct {
		name      string
		proof     DeviceProof
		claims    *SignedClaims // nil: claims
		challenge *string       // nil: nonce
		want      error         // nil: success
		version   PayloadVersion
	}{
		{name: "v3 verifies", proof: good, version: PayloadV3},
		{name: "v2 fallback verifies", proof: signedProof(t, priv, claims, nonce, nowMs, BuildPayloadV2), version: PayloadV2},
		{name: "PEM public key", proof: with(func(d *DeviceProof) { d.PublicKey = pemSPKI(t, priv.Public().(ed25519.PublicKey)) }), version: PayloadV3},
		{name: "standard base64 signature", proof: with(func(d *DeviceProof) { d.Signature = stdB64(t, d.Signature) }), version: PayloadV3},
		{name: "nonce with surrounding space is trimmed", proof: with(func(d *DeviceProof) { d.Nonce = " " + nonce + "\n" }), version: PayloadV3},
		{name: "platform case differs but normalizes equal", proof: good,
			claims: &SignedClaims{ClientID: "cli", ClientMode: "cli", Role: RoleOperator, Scopes: claims.Scopes,
				Token: claims.Token, Platform: " LINUX "}, version: PayloadV3},
		{name: "skew +120 s accepted", proof: v3(nil, nowMs+120_000), version: PayloadV3},
		{name: "skew -120 s accepted", proof: v3(nil, nowMs-120_000), version: PayloadV3},

		{name: "A4 nonce of another connection", proof: good, challenge: ptr("790731a4-0e77-4a73-8576-4bc9d6076ccb"), want: ErrNonceMismatch},
		{name: "A4 replayed vector connect", proof: vecProof(), claims: ptr(vecClaims()),
			challenge: ptr("b4ad030c-5575-4bb8-88af-78e8d5ece702"), want: ErrSignatureExpired},
		{name: "A4 replayed connect within skew", proof: good, challenge: ptr("b4ad030c-5575-4bb8-88af-78e8d5ece702"), want: ErrNonceMismatch},
		{name: "A5 nonce missing", proof: with(func(d *DeviceProof) { d.Nonce = "" }), want: ErrNonceRequired},
		{name: "A5 nonce blank", proof: with(func(d *DeviceProof) { d.Nonce = " \t\n" }), want: ErrNonceRequired},
		{name: "A5 v1 payload (no nonce) refused", proof: with(func(d *DeviceProof) {
			d.Signature = SignPayload(priv, strings.Join([]string{"v1", d.ID, "cli", "cli", "operator",
				"operator.read,operator.write", "1795733541664", "shared-token"}, "|"))
		}), want: ErrSignatureInvalid},
		{name: "empty challenge never matches", proof: good, challenge: ptr(""), want: ErrNonceMismatch},
		{name: "A6 signedAt now+121 s", proof: v3(nil, nowMs+121_000), want: ErrSignatureExpired},
		{name: "A6 signedAt now-121 s", proof: v3(nil, nowMs-121_000), want: ErrSignatureExpired},
		{name: "A6 signedAt +120001 ms", proof: v3(nil, nowMs+120_001), want: ErrSignatureExpired},
		{name: "A6 signedAt negative", proof: v3(nil, -1), want: ErrSignatureExpired},
		{name: "A6 signedAt min int64", proof: v3(nil, math.MinInt64), want: ErrSignatureExpired},
		{name: "A6 signedAt max int64", proof: v3(nil, math.MaxInt64), want: ErrSignatureExpired},
		{name: "A6 signedAt zero", proof: v3(nil, 0), want: ErrSignatureExpired},
		{name: "A6 signedAt in seconds", proof: v3(nil, nowMs/1000), want: ErrSignatureExpired},
		{name: "A7 upper-case device id", proof: with(func(d *DeviceProof) { d.ID = strings.ToUpper(d.ID) }), want: ErrDeviceIDMismatch},
		{name: "A7 another device's id with attacker key", proof: func() DeviceProof {
			d := signedProof(t, attacker, claims, nonce, nowMs, BuildPayloadV3)
			d.ID = transcriptDeviceID
			return d
		}(), want: ErrDeviceIDMismatch},
		{name: "A7 empty device id", proof: with(func(d *DeviceProof) { d.ID = "" }), want: ErrDeviceIDMismatch},
		{name: "A8 public key 0 bytes", proof: with(func(d *DeviceProof) { d.PublicKey = "" }), want: ErrPublicKeyInvalid},
		{name: "A8 public key 31 bytes", proof: with(func(d *DeviceProof) { d.PublicKey = d.PublicKey[:41] }), want: ErrPublicKeyInvalid},
		{name: "A8 public key 33 bytes", proof: with(func(d *DeviceProof) { d.PublicKey = EncodePublicKey(make([]byte, 33)) }), want: ErrPublicKeyInvalid},
		{name: "A8 public key 64 bytes", proof: with(func(d *DeviceProof) { d.PublicKey = EncodePublicKey(ed25519.PublicKey(priv)) }), want: ErrPublicKeyInvalid},
		{name: "A8 public key not base64", proof: with(func(d *DeviceProof) { d.PublicKey = "%%%" }), want: ErrPublicKeyInvalid},
		{name: "A9 signed as node without scopes, sent as admin operator",
			proof: v3(func(c *SignedClaims) { c.Role, c.Scopes = RoleNode, []string{} }, nowMs),
			claims: &SignedClaims{ClientID: "cli", ClientMode: "cli", Role: RoleOperator,
				Scopes: []string{ScopeAdmin}, Token: claims.Token, Platform: "linux"},
			want: ErrSignatureInvalid},
		{name: "A9 scopes reordered", proof: good, claims: &SignedClaims{ClientID: "cli", ClientMode: "cli",
			Role: RoleOperator, Scopes: []string{ScopeWrite, ScopeRead}, Token: claims.Token, Platform: "linux"},
			want: ErrSignatureInvalid},
		{name: "A9 different token", proof: good, claims: &SignedClaims{ClientID: "cli", ClientMode: "cli",
			Role: RoleOperator, Scopes: claims.Scopes, Token: "other", Platform: "linux"}, want: ErrSignatureInvalid},
		{name: "A9 different platform", proof: good, claims: &SignedClaims{ClientID: "cli", ClientMode: "cli",
			Role: RoleOperator, Scopes: claims.Scopes, Token: claims.Token, Platform: "darwin"}, want: ErrSignatureInvalid},
		{name: "A10 pipe in client id", proof: good, claims: &SignedClaims{ClientID: "cli|operator", ClientMode: "cli",
			Role: RoleOperator, Token: claims.Token}, want: ErrDeviceAuthInvalid},
		{name: "signature not base64", proof: with(func(d *DeviceProof) { d.Signature = "!!" }), want: ErrSignatureInvalid},
		{name: "signature 63 bytes", proof: with(func(d *DeviceProof) { d.Signature = EncodeSignature(make([]byte, 63)) }), want: ErrSignatureInvalid},
		{name: "signature empty", proof: with(func(d *DeviceProof) { d.Signature = "" }), want: ErrSignatureInvalid},
		{name: "signature by another key", proof: with(func(d *DeviceProof) {
			d.Signature = SignPayload(attacker, BuildPayloadV3(payloadFields(*d, claims, nonce)))
		}), want: ErrSignatureInvalid},

		{name: "order: bad key before stale", proof: with(func(d *DeviceProof) { d.PublicKey, d.SignedAt = "x", 0 }), want: ErrPublicKeyInvalid},
		{name: "order: id mismatch before stale and nonce", proof: with(func(d *DeviceProof) { d.ID, d.SignedAt, d.Nonce = "x", 0, "" }), want: ErrDeviceIDMismatch},
		{name: "order: stale before nonce", proof: with(func(d *DeviceProof) { d.SignedAt, d.Nonce = 0, "" }), want: ErrSignatureExpired},
		{name: "order: nonce before signature", proof: with(func(d *DeviceProof) { d.Nonce, d.Signature = "other", "" }), want: ErrNonceMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, challenge := claims, nonce
			if tt.claims != nil {
				c = *tt.claims
			}
			if tt.challenge != nil {
				challenge = *tt.challenge
			}
			got, err := VerifyDevice(tt.proof, c, challenge, now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got.Version != tt.version || got.ID != DeviceID(got.PublicKey) {
					t.Fatalf("got %+v, want version %v", got, tt.version)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got.ID != "" || got.PublicKey != nil || got.Version != 0 {
				t.Errorf("result returned with error: %+v", got)
			}
		})
	}
}

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }

// stdB64 re-encodes a base64url string in standard base64.
func stdB64(t *testing.T, s string) string {
	t.Helper()
	sig, err := DecodeSignature(s)
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("-", "+", "_", "/").Replace(EncodeSignature(sig))
}

func TestWithinSkew(t *testing.T) {
	const skew = protocol.SignatureSkewMs
	tests := []struct {
		name          string
		signedAt, now int64
		want          bool
	}{
		{"equal", 5, 5, true},
		{"edge ahead", skew, 0, true},
		{"edge behind", 0, skew, true},
		{"past edge ahead", skew + 1, 0, false},
		{"past edge behind", 0, skew + 1, false},
		{"min vs max", math.MinInt64, math.MaxInt64, false},
		{"max vs min", math.MaxInt64, math.MinInt64, false},
		{"both max", math.MaxInt64, math.MaxInt64, true},
		{"both min", math.MinInt64, math.MinInt64, true},
		{"min vs zero", math.MinInt64, 0, false},
		{"near min", math.MinInt64 + skew, math.MinInt64, true},
		{"near max", math.MaxInt64 - skew, math.MaxInt64, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := withinSkew(tt.signedAt, tt.now, skew); got != tt.want {
				t.Errorf("withinSkew(%d, %d) = %v", tt.signedAt, tt.now, got)
			}
		})
	}
}

func TestDeviceAuthErrorShape(t *testing.T) {
	tests := []struct {
		err                   *DeviceAuthError
		code, reason, message string
	}{
		{ErrDeviceIDMismatch, protocol.DetailDeviceIDMismatch, "device-id-mismatch", "device identity mismatch"},
		{ErrSignatureExpired, protocol.DetailDeviceSignatureExpired, "device-signature-stale", "device signature expired"},
		{ErrNonceRequired, protocol.DetailDeviceNonceRequired, "device-nonce-missing", "device nonce required"},
		{ErrNonceMismatch, protocol.DetailDeviceNonceMismatch, "device-nonce-mismatch", "device nonce mismatch"},
		{ErrSignatureInvalid, protocol.DetailDeviceSignatureInvalid, "device-signature", "device signature invalid"},
		{ErrPublicKeyInvalid, protocol.DetailDevicePublicKeyInvalid, "device-public-key", "device public key invalid"},
		{ErrDeviceAuthInvalid, protocol.DetailDeviceAuthInvalid, "device-auth-invalid", "device auth invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			if tt.err.Code != tt.code || tt.err.Reason != tt.reason || tt.err.Message != tt.message {
				t.Fatalf("got %+v", tt.err)
			}
			cause := errors.New("cause")
			e := deviceErr(tt.err, cause)
			if e == tt.err || !errors.Is(e, tt.err) || !errors.Is(e, cause) {
				t.Fatalf("copy/Is/Unwrap broken: %v", e)
			}
			e.Message = "mutated"
			if tt.err.Message != tt.message {
				t.Fatal("mutating a returned error changed the sentinel")
			}
			if !strings.HasPrefix(e.Error(), "authn.VerifyDevice: ") {
				t.Errorf("Error() = %q", e.Error())
			}
		})
	}
	if errors.Is(ErrNonceMismatch, ErrNonceRequired) {
		t.Error("different codes compare equal")
	}
}

// TestDeviceAuthErrorWire checks the gateway's answer built from the error
// matches the real gateway's frame byte for byte.
func TestDeviceAuthErrorWire(t *testing.T) {
	tr := readTranscript(t, "neg-device-nonce-mismatch")
	_, err := VerifyDevice(tr.proof, tr.claims, tr.challenge, tr.now)
	var dae *DeviceAuthError
	if !errors.As(err, &dae) {
		t.Fatal(err)
	}
	type details struct {
		Code   string `json:"code"`
		Reason string `json:"reason"`
	}
	type shape struct {
		Code    string  `json:"code"`
		Message string  `json:"message"`
		Details details `json:"details"`
	}
	got, _ := json.Marshal(shape{protocol.ErrInvalidRequest, dae.Message, details{dae.Code, dae.Reason}})
	want := `{"code":"INVALID_REQUEST","message":"device nonce mismatch","details":{"code":"DEVICE_AUTH_NONCE_MISMATCH","reason":"device-nonce-mismatch"}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
