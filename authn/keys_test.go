package authn

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

// vecRaw is the §2.3 public key's raw bytes.
func vecRaw(t *testing.T) []byte {
	t.Helper()
	return vecKey().Public().(ed25519.PublicKey)
}

// pemSPKI returns pub as an SPKI PEM block, as Node exports it.
func pemSPKI(t *testing.T, pub ed25519.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestDecodePublicKey(t *testing.T) {
	raw := vecRaw(t)
	b64 := func(enc *base64.Encoding, n int) string { return enc.EncodeToString(bytes.Repeat([]byte{7}, n)) }
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	good := pemSPKI(t, raw)
	tests := []struct {
		name    string
		in      string
		wantErr error
	}{
		{"base64url raw (wire form)", vecPublicKey, nil},
		{"base64url padded", base64.URLEncoding.EncodeToString(raw), nil},
		{"standard base64", base64.RawStdEncoding.EncodeToString(raw), nil},
		{"standard base64 padded", base64.StdEncoding.EncodeToString(raw), nil},
		{"PEM SPKI", good, nil},
		{"PEM SPKI with surrounding space", "\n  " + good + "\n", nil},
		{"A8 empty", "", ErrPublicKeyEncoding},
		{"A8 0 bytes padded", "==", ErrPublicKeyEncoding},
		{"A8 31 bytes", b64(base64.RawURLEncoding, 31), ErrPublicKeySize},
		{"A8 33 bytes", b64(base64.RawURLEncoding, 33), ErrPublicKeySize},
		{"A8 64 bytes", b64(base64.RawURLEncoding, 64), ErrPublicKeySize},
		{"A8 1 byte", b64(base64.RawURLEncoding, 1), ErrPublicKeySize},
		{"A8 invalid characters", "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMb!", ErrPublicKeyEncoding},
		{"A8 mixed alphabets", "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVM+g", ErrPublicKeyEncoding},
		{"A8 embedded newline", vecPublicKey[:20] + "\n" + vecPublicKey[20:], ErrPublicKeyEncoding},
		{"A8 wrong padding", vecPublicKey + "==", ErrPublicKeyEncoding},
		{"A8 non-canonical trailing bits", vecPublicKey[:42] + "h", ErrPublicKeyEncoding},
		{"A8 whitespace", " " + vecPublicKey, ErrPublicKeyEncoding},
		{"PEM garbage", "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n", ErrPublicKeyEncoding},
		{"PEM just BEGIN", "BEGIN", ErrPublicKeyEncoding},
		{"PEM wrong type", pemOf("CERTIFICATE", append(append([]byte{}, spkiPrefix...), raw...)), ErrPublicKeyEncoding},
		{"PEM wrong DER prefix", pemOf("PUBLIC KEY", append(make([]byte, 12), raw...)), ErrPublicKeyEncoding},
		{"PEM prefix only", pemOf("PUBLIC KEY", spkiPrefix), ErrPublicKeySize},
		{"PEM 33-byte key", pemOf("PUBLIC KEY", append(append(append([]byte{}, spkiPrefix...), raw...), 0)), ErrPublicKeySize},
		{"PEM trailing data", good + "junk", ErrPublicKeyEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, err := DecodePublicKey(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if pub != nil {
					t.Errorf("key returned with error")
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !bytes.Equal(pub, raw) {
				t.Errorf("key = %x, want %x", []byte(pub), raw)
			}
		})
	}
}

func TestDeviceID(t *testing.T) {
	tests := []struct{ name, key, want string }{
		{"§2.3 vector", vecPublicKey, vecDeviceID},
		{"transcript operator key", transcriptPublicKey, transcriptDeviceID},
		{"transcript node key", nodePublicKey, nodeDeviceID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, err := DecodePublicKey(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if got := DeviceID(pub); got != tt.want {
				t.Errorf("DeviceID = %s, want %s", got, tt.want)
			}
			if EncodePublicKey(pub) != tt.key {
				t.Errorf("EncodePublicKey does not round-trip %s", tt.key)
			}
			if !IsDeviceID(tt.want) {
				t.Errorf("IsDeviceID(%s) = false", tt.want)
			}
		})
	}
	// A PEM key yields the same id as its raw form.
	pub, err := DecodePublicKey(pemSPKI(t, vecRaw(t)))
	if err != nil || DeviceID(pub) != vecDeviceID {
		t.Fatalf("PEM key: id %q err %v", DeviceID(pub), err)
	}
}

func TestIsDeviceID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"lowercase hex", vecDeviceID, true},
		{"A7 uppercase hex", strings.ToUpper(vecDeviceID), false},
		{"short", vecDeviceID[:63], false},
		{"long", vecDeviceID + "0", false},
		{"non-hex", strings.Repeat("g", 64), false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsDeviceID(tt.in); got != tt.want {
				t.Errorf("IsDeviceID(%q) = %v", tt.in, got)
			}
		})
	}
}

func TestDecodeSignature(t *testing.T) {
	sig, err := base64.RawURLEncoding.DecodeString(vecSignature)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		wantErr error
	}{
		{"base64url raw (wire form)", vecSignature, nil},
		{"base64url padded", base64.URLEncoding.EncodeToString(sig), nil},
		{"standard base64", base64.RawStdEncoding.EncodeToString(sig), nil},
		{"standard base64 padded", base64.StdEncoding.EncodeToString(sig), nil},
		{"empty", "", ErrSignatureEncoding},
		{"63 bytes", base64.RawURLEncoding.EncodeToString(sig[:63]), ErrSignatureSize},
		{"65 bytes", base64.RawURLEncoding.EncodeToString(append(append([]byte{}, sig...), 0)), ErrSignatureSize},
		{"not base64", "not a signature!", ErrSignatureEncoding},
		{"newline inside", vecSignature[:10] + "\n" + vecSignature[10:], ErrSignatureEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeSignature(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, sig) {
				t.Fatalf("got %x, %v", got, err)
			}
			if EncodeSignature(got) != vecSignature {
				t.Errorf("EncodeSignature does not round-trip")
			}
		})
	}
}

func TestDecodeErrorsHaveOpPrefix(t *testing.T) {
	if _, err := DecodePublicKey("x"); err == nil || !strings.HasPrefix(err.Error(), "authn.DecodePublicKey: ") {
		t.Errorf("DecodePublicKey error = %v", err)
	}
	if _, err := DecodeSignature("x"); err == nil || !strings.HasPrefix(err.Error(), "authn.DecodeSignature: ") {
		t.Errorf("DecodeSignature error = %v", err)
	}
}
