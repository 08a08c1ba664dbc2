package gateway

import (
	"net/http"
	"testing"

	"github.com/clawgate/clawgate/protocol"
)

// TestAuthRateLimit covers attack rows A14, A15, A17, A18 and F4.
func TestAuthRateLimit(t *testing.T) {
	withBogusDeviceToken := func(p map[string]any) map[string]any {
		p["auth"].(map[string]any)["deviceToken"] = "bogus-device-token"
		return p
	}
	cases := []struct {
		name   string
		remote bool
		header http.Header
		mutate func(map[string]any) map[string]any
	}{
		{name: "remote peer (A14)", remote: true},
		{name: "remote peer with bogus device token (A15)", remote: true, mutate: withBogusDeviceToken},
		{name: "browser page on loopback (F4)", header: http.Header{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, nil)
			url := g.url
			if tc.remote {
				url = g.remoteURL
			}
			header := tc.header
			if header != nil {
				header = http.Header{"Origin": {"http://" + g.addr}}
			}
			params := func(tok string) map[string]any {
				p := connectParams(tok)
				if header != nil {
					p["client"] = map[string]any{"id": "webchat", "version": "1", "platform": "web", "mode": "webchat"}
				}
				if tc.mutate != nil {
					p = tc.mutate(p)
				}
				return p
			}
			for i := 1; i <= 10; i++ {
				if d := errDetail(connectResult(t, url, header, params("wrong-token"))); d != protocol.DetailAuthTokenMismatch {
					t.Fatalf("attempt %d: %s, want AUTH_TOKEN_MISMATCH", i, d)
				}
			}
			f := connectResult(t, url, header, params("wrong-token"))
			if errDetail(f) != protocol.DetailAuthRateLimited {
				t.Fatalf("11th attempt: %v", f)
			}
			e := f["error"].(map[string]any)
			if e["retryable"] != true || e["retryAfterMs"].(float64) < 299000 || e["retryAfterMs"].(float64) > 300000 {
				t.Fatalf("rate limit error %v", e)
			}
			// A18: the right token during the lockout is refused as well.
			if d := errDetail(connectResult(t, url, header, params(testToken))); d != protocol.DetailAuthRateLimited {
				t.Fatalf("correct token during lockout: %s", d)
			}
			// The loopback CLI is unaffected.
			if f := connectResult(t, g.url, nil, connectParams(testToken)); f["ok"] != true {
				t.Fatalf("loopback CLI locked out too: %v", f)
			}
		})
	}
	t.Run("missing credentials are not counted (A17)", func(t *testing.T) {
		g := startGateway(t, nil)
		for i := 0; i < 50; i++ {
			p := connectParams("")
			delete(p, "auth")
			if d := errDetail(connectResult(t, g.remoteURL, nil, p)); d != protocol.DetailAuthTokenMissing {
				t.Fatalf("attempt %d: %s, want AUTH_TOKEN_MISSING", i, d)
			}
		}
		if f := connectResult(t, g.remoteURL, nil, connectParams(testToken)); f["ok"] != true {
			t.Fatalf("correct token after 50 empty attempts: %v", f)
		}
	})
	t.Run("direct loopback CLI is exempt", func(t *testing.T) {
		g := startGateway(t, nil)
		for i := 0; i < 15; i++ {
			if d := errDetail(connectResult(t, g.url, nil, connectParams("wrong-token"))); d != protocol.DetailAuthTokenMismatch {
				t.Fatalf("attempt %d: %s", i, d)
			}
		}
		if f := connectResult(t, g.url, nil, connectParams(testToken)); f["ok"] != true {
			t.Fatalf("loopback CLI: %v", f)
		}
	})
}
