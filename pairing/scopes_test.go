package pairing

import (
	"slices"
	"testing"
)

// These cases pin the scope rules pairing shares with package authn
// (protocol §3.5); keep them in step when switching to authn's helpers.
func TestSatisfies(t *testing.T) {
	cases := []struct {
		name     string
		granted  []string
		required string
		want     bool
	}{
		{"exact", []string{"operator.read"}, "operator.read", true},
		{"admin covers any operator scope", []string{"operator.admin"}, "operator.talk.secrets", true},
		{"admin covers pairing", []string{"operator.admin"}, "operator.pairing", true},
		{"admin does not cover non-operator scopes", []string{"operator.admin"}, "node.camera", false},
		{"write covers read", []string{"operator.write"}, "operator.read", true},
		{"read does not cover write", []string{"operator.read"}, "operator.write", false},
		{"write does not cover admin", []string{"operator.write"}, "operator.admin", false},
		{"pairing does not cover admin", []string{"operator.pairing"}, "operator.admin", false},
		{"no prefix tricks", []string{"operator.read"}, "operator.read.more", false},
		{"empty grant", nil, "operator.read", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := satisfies(c.granted, c.required); got != c.want {
				t.Errorf("satisfies(%v, %q) = %v, want %v", c.granted, c.required, got, c.want)
			}
		})
	}
}

func TestNormalizeAndRoleScopes(t *testing.T) {
	cases := []struct {
		name   string
		role   string
		scopes []string
		want   []string
	}{
		{"admin implies read and write", roleOperator, []string{"operator.admin"}, []string{"operator.admin", "operator.read", "operator.write"}},
		{"write implies read", roleOperator, []string{"operator.write"}, []string{"operator.read", "operator.write"}},
		{"dedupe, trim, sort", roleOperator, []string{" operator.read", "operator.read", "", "operator.approvals"}, []string{"operator.approvals", "operator.read"}},
		{"operator keeps only operator scopes", roleOperator, []string{"operator.read", "node.camera", "x"}, []string{"operator.read"}},
		{"node drops operator scopes", roleNode, []string{"operator.admin", "node.camera"}, []string{"node.camera"}},
		{"empty is non-nil", roleOperator, nil, []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := roleScopes(c.role, c.scopes)
			if got == nil || !slices.Equal(got, c.want) {
				t.Errorf("roleScopes(%s, %v) = %#v, want %v", c.role, c.scopes, got, c.want)
			}
		})
	}
}

func TestTokenAndRequestIDShape(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		tok := newToken()
		if len(tok) != 43 || seen[tok] {
			t.Fatalf("token %d: len %d, repeated %v", i, len(tok), seen[tok])
		}
		seen[tok] = true
		id := newRequestID()
		if len(id) != 36 || id[14] != '4' || !slices.Contains([]byte("89ab"), id[19]) {
			t.Fatalf("request id %q is not a v4 UUID", id)
		}
	}
}

func TestCanonicalPublicKey(t *testing.T) {
	const want = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg" // protocol §2.3 test vector
	for _, in := range []string{want, want + "=", "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=", " " + want + " "} {
		got, err := canonicalPublicKey(in)
		if err != nil || got != want {
			t.Errorf("canonicalPublicKey(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "abc", want[:40], "-----BEGIN PUBLIC KEY-----"} {
		if _, err := canonicalPublicKey(bad); err == nil {
			t.Errorf("canonicalPublicKey(%q) accepted", bad)
		}
	}
}
