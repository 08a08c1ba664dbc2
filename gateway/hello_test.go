package gateway

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/clawgate/clawgate/protocol"
)

// TestHelloFrameMatchesMarshal: the spliced hello-ok frame is byte for byte
// json.Marshal of the response, over combinations of every optional part
// and strings that need escaping.
func TestHelloFrameMatchesMarshal(t *testing.T) {
	n := 0
	for _, id := range []string{"1", "1:34f9714a-49e7-4ee5-8132-d2f2618e8cf2", `<a href="x">&'</a>`, "é\u2028\x01"} {
		for _, admin := range []bool{false, true} {
			for _, token := range []string{"", "tok-<&>"} {
				for _, canvas := range []int{0, 1, 2} {
					for _, presence := range []int{0, 1, 3} {
						h := protocol.HelloOK{
							Type: "hello-ok", Protocol: 3 + canvas%2,
							Server:   protocol.ServerInfo{Version: "v<1>", BootID: "boot", ConnID: "conn-" + id},
							Features: protocol.Features{Methods: []string{"health", "a<b"}, Events: []string{}},
							Snapshot: protocol.Snapshot{Presence: []protocol.PresenceEntry{}, Health: map[string]any{"ok": true, "x": []int{1}},
								StateVersion: protocol.StateVersion{Presence: 3, Health: 4}, UptimeMs: 12345},
							Auth:   protocol.HelloAuth{Role: "operator", Scopes: []string{}, DeviceToken: token},
							Policy: protocol.Policy{MaxPayload: 1, MaxBufferedBytes: 2, TickIntervalMs: 3},
						}
						for i := range presence {
							h.Snapshot.Presence = append(h.Snapshot.Presence, protocol.PresenceEntry{Host: fmt.Sprint("h", i), Ts: int64(i), Roles: []string{"operator"}})
						}
						if token != "" {
							h.Auth.IssuedAtMs = 99
						}
						if admin {
							h.Auth.Scopes = []string{protocol.ScopeAdmin}
							h.Snapshot.StateDir, h.Snapshot.ConfigPath, h.Snapshot.AuthMode = "/s", "/c&", "token"
						}
						switch canvas {
						case 1:
							h.CanvasHostURL = "http://127.0.0.1/__canvas?a=<b>"
						case 2:
							h.PluginSurfaceURLs = map[string]string{"canvas": "http://x/&", "b": "y"}
						}
						want, err := json.Marshal(protocol.OKResponse(id, h))
						if err != nil {
							t.Fatal(err)
						}
						got, err := helloFrame(id, &h, mustJSON(h.Features))
						if err != nil {
							t.Fatal(err)
						}
						if string(got) != string(want) {
							t.Fatalf("differs:\n got %s\nwant %s", got, want)
						}
						n++
					}
				}
			}
		}
	}
	if n != 144 {
		t.Fatalf("%d combinations", n)
	}
}

// TestFeaturesJSON: the cached features object lists what methodNames and
// implementedEvents say, and follows a method added later.
func TestFeaturesJSON(t *testing.T) {
	g := startGateway(t, nil)
	s := g.srv
	want := mustJSON(protocol.Features{Methods: s.methodNames(), Events: s.implementedEvents()})
	if got := s.featuresJSON(); string(got) != string(want) {
		t.Fatalf("features %s, want %s", got, want)
	}
	first := s.featuresJSON()
	if second := s.featuresJSON(); &second[0] != &first[0] {
		t.Fatal("features re-encoded without a change")
	}
	s.handle("zz.test", false, nil)
	var f protocol.Features
	if err := json.Unmarshal(s.featuresJSON(), &f); err != nil {
		t.Fatal(err)
	}
	if f.Methods[len(f.Methods)-1] != "zz.test" {
		t.Fatalf("added method not listed: %v", f.Methods)
	}
}

// BenchmarkHelloOK compares the hello-ok frame as it was built before
// (method names sorted and everything marshaled per connection) with the
// spliced frame and its cached features.
func BenchmarkHelloOK(b *testing.B) {
	g := startGateway(b, nil)
	s := g.srv
	c := &Conn{srv: s, id: newUUID()}
	sess := &Session{Protocol: protocol.Version, Role: protocol.RoleOperator, Scopes: []string{protocol.ScopeAdmin}}
	a := &connectAttempt{reqID: "1:34f9714a-49e7-4ee5-8132-d2f2618e8cf2", token: "tok", issuedAt: 1}
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h := s.hello(c, sess, a)
			h.Features = protocol.Features{Methods: s.methodNames(), Events: s.implementedEvents()}
			if _, err := json.Marshal(protocol.OKResponse(a.reqID, h)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("spliced", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h := s.hello(c, sess, a)
			if _, err := helloFrame(a.reqID, &h, s.featuresJSON()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzAppendJSONString: hello-ok's string encoder writes exactly what
// encoding/json writes, for any string.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `<a href="x">&'</a>`, "é\u2028\u2029\x01\x7f\b\f\n\r\t\\\"", "\xff\xfe a", "\U0001F600"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("%q: got %s, want %s", s, got[1:], want)
		}
	})
}
