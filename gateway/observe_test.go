package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/logring"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/providers"
)

// getMetrics fetches /metrics from base (host:port) with extra headers.
func getMetrics(t *testing.T, base string, header http.Header) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if h := header.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

var (
	sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)\})? (\S+)$`)
	metaRE   = regexp.MustCompile(`^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$`)
)

// parseProm checks the text exposition format strictly enough to catch a
// malformed line, a sample before its TYPE, or a family declared twice, and
// returns "name{labels}" → value.
func parseProm(t *testing.T, body string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	typed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if m := metaRE.FindStringSubmatch(line); m != nil {
			if m[1] == "TYPE" {
				if typed[m[2]] {
					t.Fatalf("family %s declared twice", m[2])
				}
				typed[m[2]] = true
				switch m[3] {
				case "counter", "gauge":
				default:
					t.Fatalf("family %s has type %q", m[2], m[3])
				}
			}
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("malformed metrics line %q", line)
		}
		if !typed[m[1]] {
			t.Fatalf("sample %s before its TYPE", m[1])
		}
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			t.Fatalf("value in %q: %v", line, err)
		}
		out[m[1]+m[2]] = v
	}
	return out
}

func TestMetricsAccess(t *testing.T) {
	g := startGateway(t, nil)
	remoteHost := strings.TrimPrefix(g.remoteURL, "ws://")
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	code, body, hdr := getMetrics(t, g.addr, nil)
	if code != 200 {
		t.Fatalf("loopback /metrics = %d %s", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("content-type %q", ct)
	}
	parseProm(t, body)

	for _, c := range []struct {
		name   string
		base   string
		header http.Header
		want   int
	}{
		{"remote listener without token", remoteHost, nil, 401},
		{"remote listener, wrong token", remoteHost, bearer("wrong-token"), 401},
		{"remote listener, basic auth", remoteHost, http.Header{"Authorization": {"Basic " + testToken}}, 401},
		{"remote listener, gateway token", remoteHost, bearer(testToken), 200},
		{"loopback browser page", g.addr, http.Header{"Origin": {"http://" + g.addr}}, 401},
		{"loopback through a proxy", g.addr, http.Header{"X-Forwarded-For": {"203.0.113.9"}}, 401},
		{"loopback proxy with token", g.addr, http.Header{"X-Forwarded-For": {"203.0.113.9"}, "Authorization": {"Bearer " + testToken}}, 200},
		{"DNS rebinding host", g.addr, http.Header{"Host": {"evil.example:80"}}, 403},
	} {
		code, body, hdr := getMetrics(t, c.base, c.header)
		if code != c.want {
			t.Errorf("%s: %d %q, want %d", c.name, code, body, c.want)
		}
		if code == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
		if code != 200 && strings.Contains(body, "clawgate_") {
			t.Errorf("%s: refused answer leaks metrics", c.name)
		}
	}
	_, body, _ = getMetrics(t, g.addr, nil)
	if v := parseProm(t, body)["clawgate_auth_failures_total"]; v != 1 {
		t.Errorf("auth failures after one wrong bearer = %v, want 1", v)
	}

	// Wrong tokens count toward the limiter: after the lockout even the
	// right token is refused.
	for range 12 {
		getMetrics(t, remoteHost, bearer("guess"))
	}
	code, _, hdr = getMetrics(t, remoteHost, bearer(testToken))
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("right token during a lockout = %d (Retry-After %q), want 429", code, hdr.Get("Retry-After"))
	}
	// Local clients are not locked out.
	if code, _, _ := getMetrics(t, g.addr, nil); code != 200 {
		t.Fatalf("loopback after a remote lockout = %d", code)
	}
}

func TestMetricsCount(t *testing.T) {
	g := startGateway(t, nil)
	if f := connectResult(t, g.url, nil, connectParams(testToken)); f["ok"] != true {
		t.Fatalf("connect: %v", f)
	}
	if f := connectResult(t, g.url, nil, connectParams("wrong-token-wrong-token-wrong")); errDetail(f) != protocol.DetailAuthTokenMismatch {
		t.Fatalf("wrong token: %v", f)
	}
	g.dialClient(t, nil) // stays open
	// The closed connections leave the set once their reader has seen the
	// close; that happens after the client has its answer.
	waitFor(t, "closed connections gone", func() bool { return g.srv.ConnCount() == 1 })
	_, body, _ := getMetrics(t, g.addr, nil)
	m := parseProm(t, body)
	for series, want := range map[string]float64{
		`clawgate_handshakes_total{outcome="ok"}`:                                   2,
		`clawgate_handshakes_total{outcome="failed"}`:                               1,
		`clawgate_auth_failures_total`:                                              1,
		`clawgate_connections_open{listener="loopback",state="authenticated"}`:      1,
		`clawgate_slow_consumer_closes_total`:                                       0,
		`clawgate_build_info{version="test",goversion="` + runtime.Version() + `"}`: 1,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	// Three WebSockets and at least one plain HTTP request so far.
	if got := m[`clawgate_connections_accepted_total{listener="loopback"}`]; got < 4 {
		t.Errorf("accepted on loopback = %v, want >= 4", got)
	}
	if m["go_goroutines"] <= 0 {
		t.Errorf("go_goroutines missing")
	}
}

func TestLogsTail(t *testing.T) {
	ring := logring.New(1 << 20)
	g := startGateway(t, func(o *Options) {
		o.Logs = ring
		o.Logger = slog.New(ring.Handler(nil))
	})
	c := g.dialClient(t, nil)
	if !containsString(c.Hello().Features.Methods, "logs.tail") {
		t.Fatalf("logs.tail not advertised: %v", c.Hello().Features.Methods)
	}
	type tail struct {
		File   string   `json:"file"`
		Cursor int64    `json:"cursor"`
		Size   int64    `json:"size"`
		Lines  []string `json:"lines"`
		Reset  bool     `json:"reset"`
	}
	get := func(params any) tail {
		raw, err := c.Call(context.Background(), "logs.tail", params)
		if err != nil {
			t.Fatalf("logs.tail %v: %v", params, err)
		}
		var r tail
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := get(nil)
	if first.Size == 0 || first.Cursor != first.Size || !strings.HasPrefix(first.File, "memory:") {
		t.Fatalf("first tail %+v", first)
	}
	if !anyContains(first.Lines, `"message":"connected"`) {
		t.Fatalf("the ring lacks the connect record: %q", first.Lines)
	}
	// A failed connect is logged; following the cursor returns just that.
	connectResult(t, g.url, nil, connectParams("wrong-token-wrong-token-wrong"))
	next := get(map[string]any{"cursor": first.Cursor, "limit": 100, "maxBytes": 100000})
	if next.Reset || len(next.Lines) == 0 || !anyContains(next.Lines, "connect unauthorized") || anyContains(next.Lines, `"message":"connected"`) {
		t.Fatalf("follow-up tail %+v", next)
	}
	if one := get(map[string]any{"limit": 1}); len(one.Lines) != 1 {
		t.Fatalf("limit 1 returned %d lines", len(one.Lines))
	}

	for _, bad := range []map[string]any{
		{"limit": 0}, {"limit": 5001}, {"maxBytes": 1000001}, {"cursor": -1}, {"cursor": "0"}, {"follow": true},
	} {
		_, err := c.Call(context.Background(), "logs.tail", bad)
		var re *client.RemoteError
		if !errors.As(err, &re) || re.Code != protocol.ErrInvalidRequest {
			t.Errorf("logs.tail %v: %v, want INVALID_REQUEST", bad, err)
		}
	}

	// operator.read is enough (a shared-token CLI without a device).
	rc := g.dialRaw(t, nil)
	rc.challenge()
	rc.sendJSON(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": connectParams(testToken)})
	if f := rc.frame(); f["ok"] != true {
		t.Fatalf("read-only connect: %v", f)
	}
	rc.sendJSON(map[string]any{"type": "req", "id": "t1", "method": "logs.tail", "params": map[string]any{"limit": 3}})
	for {
		f := rc.frame()
		if f["type"] != "res" {
			continue
		}
		if f["ok"] != true {
			t.Fatalf("logs.tail with operator.read: %v", f)
		}
		break
	}
}

func TestLogsTailAbsentWithoutRing(t *testing.T) {
	g := startGateway(t, nil)
	c := g.dialClient(t, nil)
	if containsString(c.Hello().Features.Methods, "logs.tail") {
		t.Fatal("logs.tail advertised without a ring")
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func anyContains(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// statusHub is a providers.Hub that only reports statuses.
type statusHub struct {
	providers.Hub
	statuses []providers.Status
}

func (h statusHub) Statuses() []providers.Status       { return h.statuses }
func (h statusHub) Watch(func(providers.Event)) func() { return func() {} }

func TestMetricsProviders(t *testing.T) {
	hub := statusHub{statuses: []providers.Status{
		{Channel: "telegram", AccountID: "default", State: providers.StateConnected, Restarts: 2},
		{Channel: "slack", AccountID: "work", State: providers.StateLoggedOut, Dropped: 5, TokenSource: "/etc/clawgate/slack.token"},
	}}
	g := startGateway(t, func(o *Options) { o.Providers = hub })
	_, body, _ := getMetrics(t, g.addr, nil)
	m := parseProm(t, body)
	for series, want := range map[string]float64{
		`clawgate_provider_up{channel="telegram",account="default"}`:                      1,
		`clawgate_provider_up{channel="slack",account="work"}`:                            0,
		`clawgate_provider_state{channel="slack",account="work",state="logged-out"}`:      1,
		`clawgate_provider_state{channel="telegram",account="default",state="connected"}`: 1,
		`clawgate_provider_restarts_total{channel="telegram",account="default"}`:          2,
		`clawgate_provider_inbound_dropped_total{channel="slack",account="work"}`:         5,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if strings.Contains(body, "slack.token") {
		t.Error("metrics name a token source")
	}
}
