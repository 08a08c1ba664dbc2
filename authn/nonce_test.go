package authn

import (
	"regexp"
	"testing"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewChallengeNonce(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		n, err := NewChallengeNonce()
		if err != nil {
			t.Fatal(err)
		}
		if !uuidV4.MatchString(n) {
			t.Fatalf("nonce %q is not a lowercase UUID v4", n)
		}
		if seen[n] {
			t.Fatalf("duplicate nonce %q", n)
		}
		seen[n] = true
		if ValidatePayloadField("/device/nonce", n) != nil {
			t.Fatalf("nonce %q fails the payload rules", n)
		}
	}
	// The transcripts' challenges have the same shape.
	for _, n := range []string{"03e293f1-7d9d-4ca5-a895-58d5b42292ae", "fa51167b-42c7-4ac2-b9bd-ef589a246253"} {
		if !uuidV4.MatchString(n) {
			t.Errorf("transcript nonce %q does not match", n)
		}
	}
}
