package authn

import (
	"errors"
	"strings"
	"testing"
)

func TestBuildPayloadVector(t *testing.T) {
	p := payloadFields(vecProof(), vecClaims(), vecNonce)
	if got := BuildPayloadV3(p); got != vecPayload {
		t.Fatalf("BuildPayloadV3:\n got %q\nwant %q", got, vecPayload)
	}
	if got := SignPayload(vecKey(), vecPayload); got != vecSignature {
		t.Fatalf("signature over the vector payload:\n got %s\nwant %s", got, vecSignature)
	}
}

func TestBuildPayload(t *testing.T) {
	base := PayloadFields{
		DeviceID: "id", ClientID: "cli", ClientMode: "cli", Role: "operator",
		Scopes: []string{"operator.write", "operator.read", "operator.write"}, SignedAtMs: 42,
		Token: "tok", Nonce: "n", Platform: "  MacOS ", DeviceFamily: "iPhone",
	}
	tests := []struct {
		name   string
		mutate func(*PayloadFields)
		v3, v2 string
	}{
		{
			name: "scopes kept as sent, metadata normalized",
			v3:   "v3|id|cli|cli|operator|operator.write,operator.read,operator.write|42|tok|n|macos|iphone",
			v2:   "v2|id|cli|cli|operator|operator.write,operator.read,operator.write|42|tok|n",
		},
		{
			name:   "empty scopes and token, missing metadata",
			mutate: func(p *PayloadFields) { p.Scopes, p.Token, p.Platform, p.DeviceFamily = nil, "", "", "" },
			v3:     "v3|id|cli|cli|operator||42||n||",
			v2:     "v2|id|cli|cli|operator||42||n",
		},
		{
			name:   "negative signedAt",
			mutate: func(p *PayloadFields) { p.SignedAtMs = -5 },
			v3:     "v3|id|cli|cli|operator|operator.write,operator.read,operator.write|-5|tok|n|macos|iphone",
			v2:     "v2|id|cli|cli|operator|operator.write,operator.read,operator.write|-5|tok|n",
		},
		{
			name:   "non-ASCII letters are not lowercased",
			mutate: func(p *PayloadFields) { p.Platform, p.DeviceFamily = "ÄNDROID", "İPAD" },
			v3:     "v3|id|cli|cli|operator|operator.write,operator.read,operator.write|42|tok|n|Ändroid|İpad",
			v2:     "v2|id|cli|cli|operator|operator.write,operator.read,operator.write|42|tok|n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			p.Scopes = append([]string(nil), base.Scopes...)
			if tt.mutate != nil {
				tt.mutate(&p)
			}
			if got := BuildPayloadV3(p); got != tt.v3 {
				t.Errorf("v3 = %q, want %q", got, tt.v3)
			}
			if got := BuildPayloadV2(p); got != tt.v2 {
				t.Errorf("v2 = %q, want %q", got, tt.v2)
			}
		})
	}
}

func TestNormalizeMetadata(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"ascii upper", "Linux", "linux"},
		{"trimmed", " \tDarwin\n", "darwin"},
		{"digits and punctuation kept", "iPhone15,2", "iphone15,2"},
		{"non-ASCII untouched", "ÉCRAN", "Écran"},
		{"Kelvin sign not folded", "\u212A", "\u212A"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NormalizeMetadata(tt.in); got != tt.want {
				t.Errorf("NormalizeMetadata(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestPickToken(t *testing.T) {
	tests := []struct{ name, token, device, bootstrap, want string }{
		{"none", "", "", "", ""},
		{"token wins", "t", "d", "b", "t"},
		{"device token next", "", "d", "b", "d"},
		{"bootstrap last", "", "", "b", "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PickToken(tt.token, tt.device, tt.bootstrap); got != tt.want {
				t.Errorf("PickToken = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidatePayloadField(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		wantErr bool
	}{
		{"empty", "", false},
		{"uuid", "2f1c6b0e-0000-4000-8000-000000000000", false},
		{"unicode text", "Étienne's iPhone", false},
		{"max length", strings.Repeat("a", MaxPayloadFieldLen), false},
		{"A10 pipe", "cli|operator", true},
		{"A10 newline", "cli\noperator", true},
		{"A10 carriage return", "cli\r", true},
		{"A10 NUL", "cli\x00", true},
		{"tab", "a\tb", true},
		{"DEL", "a\x7f", true},
		{"C1 control", "a\u0085", true},
		{"line separator", "a\u2028b", true},
		{"invalid UTF-8", "a\xffb", true},
		{"too long", strings.Repeat("a", MaxPayloadFieldLen+1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidatePayloadField("/client/id", tt.value)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrInvalidPayloadField) {
				t.Errorf("errors.Is(err, ErrInvalidPayloadField) = false for %v", err)
			}
			var fe *PayloadFieldError
			if !errors.As(err, &fe) || fe.Field != "/client/id" {
				t.Errorf("want *PayloadFieldError for /client/id, got %#v", err)
			}
		})
	}
}

// TestValidateClaimsA10 covers every signed field: a delimiter, control
// character or oversize value anywhere refuses the connect, naming the field
// but never echoing its value.
func TestValidateClaimsA10(t *testing.T) {
	const secret = "s3cret|token"
	tests := []struct {
		name      string
		mutate    func(*SignedClaims)
		wantField string
	}{
		{"valid", func(*SignedClaims) {}, ""},
		{"valid node without scopes", func(c *SignedClaims) { c.Role, c.Scopes = RoleNode, []string{} }, ""},
		{"clientId with pipe", func(c *SignedClaims) { c.ClientID = "cli|operator" }, "/client/id"},
		{"clientMode with newline", func(c *SignedClaims) { c.ClientMode = "cli\n" }, "/client/mode"},
		{"role with NUL", func(c *SignedClaims) { c.Role = "operator\x00" }, "/role"},
		{"scope with pipe", func(c *SignedClaims) { c.Scopes = []string{"operator.read|x"} }, "/scopes/0"},
		{"scope with comma", func(c *SignedClaims) { c.Scopes = []string{"operator.read", "a,b"} }, "/scopes/1"},
		{"empty scope", func(c *SignedClaims) { c.Scopes = []string{"operator.read", ""} }, "/scopes/1"},
		{"too many scopes", func(c *SignedClaims) { c.Scopes = make([]string, MaxScopes+1) }, "/scopes"},
		{"token with pipe", func(c *SignedClaims) { c.Token = secret }, "/auth/token"},
		{"token too long", func(c *SignedClaims) { c.Token = strings.Repeat("t", MaxTokenLen+1) }, "/auth/token"},
		{"long token within limit", func(c *SignedClaims) { c.Token = strings.Repeat("t", MaxTokenLen) }, ""},
		{"platform with pipe", func(c *SignedClaims) { c.Platform = "linux|" }, "/client/platform"},
		{"deviceFamily with newline", func(c *SignedClaims) { c.DeviceFamily = "Mac\n" }, "/client/deviceFamily"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := vecClaims()
			tt.mutate(&c)
			err := ValidateClaims(c)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var fe *PayloadFieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("err = %v, want a field error for %s", err, tt.wantField)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error text leaks the value: %v", err)
			}
		})
	}
}

// TestPayloadInjective shows the A10 collision the rules prevent: without
// them, different claims join to the same payload text.
func TestPayloadInjective(t *testing.T) {
	a := PayloadFields{ClientID: "cli|operator", ClientMode: "x", Role: "y"}
	b := PayloadFields{ClientID: "cli", ClientMode: "operator|x", Role: "y"}
	if BuildPayloadV2(a) != BuildPayloadV2(b) {
		t.Fatal("expected the unvalidated payloads to collide")
	}
	if a.Validate() == nil || b.Validate() == nil {
		t.Fatal("Validate accepted a colliding field")
	}
	s1 := PayloadFields{Scopes: []string{"a,b"}}
	s2 := PayloadFields{Scopes: []string{"a", "b"}}
	if BuildPayloadV2(s1) != BuildPayloadV2(s2) || s1.Validate() == nil || s2.Validate() != nil {
		t.Fatal("scope-comma collision not caught by Validate")
	}
}

func TestPayloadVersionString(t *testing.T) {
	if PayloadV3.String() != "v3" || PayloadV2.String() != "v2" {
		t.Fatalf("got %s %s", PayloadV3, PayloadV2)
	}
}
