package authn

import (
	"crypto/ed25519"
	"strings"
	"time"

	"github.com/clawgate/clawgate/protocol"
)

// DeviceProof is the connect params' device object, as sent.
type DeviceProof struct {
	ID        string // device.id: hex SHA-256 of the public key
	PublicKey string // device.publicKey: base64url raw key (or a form DecodePublicKey takes)
	Signature string // device.signature: base64url Ed25519 signature
	SignedAt  int64  // device.signedAt: ms since the Unix epoch
	Nonce     string // device.nonce: the challenge nonce, echoed
}

// SignedClaims are the other connect-params values a device signature
// covers. Pass them exactly as received, except Role, which is the resolved
// role (ResolveRole) and Token, which is PickToken's choice.
type SignedClaims struct {
	ClientID     string   // client.id
	ClientMode   string   // client.mode
	Role         string   // resolved role
	Scopes       []string // scopes, as sent
	Token        string   // PickToken(auth.token, auth.deviceToken, auth.bootstrapToken)
	Platform     string   // client.platform, raw (normalized when signed)
	DeviceFamily string   // client.deviceFamily, raw (normalized when signed)
}

// VerifiedDevice is a device whose proof checked out.
type VerifiedDevice struct {
	ID        string            // lowercase hex device id, equal to DeviceID(PublicKey)
	PublicKey ed25519.PublicKey // 32 bytes
	Version   PayloadVersion    // which payload the signature covered
}

// ValidateClaims applies the signed-field rules (ValidatePayloadField,
// MaxTokenLen, MaxScopes, no empty or comma-bearing scope) to c. The gateway
// calls it while validating connect params, so a connect whose fields could
// make an ambiguous payload is refused before any signature work (A10).
func ValidateClaims(c SignedClaims) error {
	return payloadFields(DeviceProof{}, c, "").Validate()
}

// payloadFields assembles the payload values from the proof, the claims and
// the nonce the server issued.
func payloadFields(d DeviceProof, c SignedClaims, nonce string) PayloadFields {
	return PayloadFields{
		DeviceID:     d.ID,
		ClientID:     c.ClientID,
		ClientMode:   c.ClientMode,
		Role:         c.Role,
		Scopes:       c.Scopes,
		SignedAtMs:   d.SignedAt,
		Token:        c.Token,
		Nonce:        nonce,
		Platform:     c.Platform,
		DeviceFamily: c.DeviceFamily,
	}
}

// VerifyDevice checks a device proof the way the OpenClaw gateway does, in
// its order, against the connection's challenge nonce and the server clock
// now:
//
//  1. the public key decodes to 32 bytes (else ErrPublicKeyInvalid) and its
//     DeviceID equals d.ID (else ErrDeviceIDMismatch);
//  2. |now − d.SignedAt| ≤ protocol.SignatureSkewMs (else ErrSignatureExpired);
//  3. the trimmed d.Nonce is non-empty (else ErrNonceRequired) and equals
//     challengeNonce (else ErrNonceMismatch);
//  4. the signed fields pass ValidateClaims (else ErrDeviceAuthInvalid; the
//     gateway should have refused them earlier);
//  5. the signature verifies over the v3 payload, or else the v2 payload
//     (else ErrSignatureInvalid).
//
// Every failure is a *DeviceAuthError. It never panics on any input.
func VerifyDevice(d DeviceProof, c SignedClaims, challengeNonce string, now time.Time) (VerifiedDevice, error) {
	pub, err := DecodePublicKey(d.PublicKey)
	if err != nil {
		return VerifiedDevice{}, deviceErr(ErrPublicKeyInvalid, err)
	}
	if !hasDeviceID(pub, d.ID) {
		return VerifiedDevice{}, deviceErr(ErrDeviceIDMismatch, nil)
	}
	if !withinSkew(d.SignedAt, now.UnixMilli(), protocol.SignatureSkewMs) {
		return VerifiedDevice{}, deviceErr(ErrSignatureExpired, nil)
	}
	if err := checkNonce(d.Nonce, challengeNonce); err != nil {
		return VerifiedDevice{}, err
	}
	fields := payloadFields(d, c, challengeNonce)
	if err := fields.Validate(); err != nil {
		return VerifiedDevice{}, deviceErr(ErrDeviceAuthInvalid, err)
	}
	version, err := verifySignature(pub, d.Signature, fields)
	if err != nil {
		return VerifiedDevice{}, err
	}
	return VerifiedDevice{ID: d.ID, PublicKey: pub, Version: version}, nil
}

// withinSkew reports whether |now − signedAt| ≤ skew without overflowing for
// any int64 inputs: the difference is taken in uint64 from the larger value.
func withinSkew(signedAt, now, skew int64) bool {
	if signedAt >= now {
		return uint64(signedAt)-uint64(now) <= uint64(skew)
	}
	return uint64(now)-uint64(signedAt) <= uint64(skew)
}

// checkNonce applies step 3. An empty challenge (a caller bug) never matches.
func checkNonce(sent, challenge string) error {
	sent = strings.TrimSpace(sent)
	if sent == "" {
		return deviceErr(ErrNonceRequired, nil)
	}
	if challenge == "" || sent != challenge {
		return deviceErr(ErrNonceMismatch, nil)
	}
	return nil
}

// verifySignature decodes sig and tries the v3 payload, then the v2 payload.
func verifySignature(pub ed25519.PublicKey, sig string, fields PayloadFields) (PayloadVersion, error) {
	raw, err := DecodeSignature(sig)
	if err != nil {
		return 0, deviceErr(ErrSignatureInvalid, err)
	}
	var buf [512]byte // room for the usual payload: no allocation
	if ed25519.Verify(pub, appendPayloadV3(buf[:0], fields), raw) {
		return PayloadV3, nil
	}
	if ed25519.Verify(pub, appendPayloadV2(buf[:0], fields), raw) {
		return PayloadV2, nil
	}
	return 0, deviceErr(ErrSignatureInvalid, nil)
}
