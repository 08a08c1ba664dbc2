package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/store/bolt"
)

// Pairing through the wire: attack rows A11, A13, A23, B1–B5, B7, B8, B11,
// B12, C1–C3 and C5, against a real pairing.Manager over a real bbolt file.

// startPairedGateway runs a gateway whose pairing state lives in a fresh
// bbolt file under the test's temp dir.
func startPairedGateway(t *testing.T, mod func(*Options)) (*testGateway, *pairing.Manager) {
	t.Helper()
	return startPairedGatewayWith(t, pairing.Options{}, mod)
}

// startPairedGatewayWith is startPairedGateway with pairing options (a
// clock, caps).
func startPairedGatewayWith(t *testing.T, popts pairing.Options, mod func(*Options)) (*testGateway, *pairing.Manager) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "clawgate.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := pairing.New(db, popts)
	if err != nil {
		_ = db.Close()
		t.Fatal(err)
	}
	// Registered before startGateway, so it runs after the gateway stopped.
	t.Cleanup(func() {
		if err := pm.Close(); err != nil {
			t.Errorf("pairing.Close: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("bolt.Close: %v", err)
		}
	})
	g := startGateway(t, func(o *Options) {
		o.Pairing = pm
		if mod != nil {
			mod(o)
		}
	})
	return g, pm
}

// ---------------------------------------------------------------------------
// Signed raw connects.

// signedSpec describes one raw signed connect.
type signedSpec struct {
	id          *client.Identity
	clientID    string // default "cli"
	mode        string // default "cli"
	platform    string // default "linux"
	role        string // "" sends no role (operator)
	scopes      []string
	token       string
	deviceToken string
	header      http.Header
	// forge, when set, rewrites the device block after signing.
	forge func(dev map[string]any)
}

func newIdentity(t testing.TB) *client.Identity {
	t.Helper()
	id, err := client.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// params builds signed connect params for the challenge nonce and ts.
func (s signedSpec) params(nonce string, ts int64) map[string]any {
	clientID, mode, platform := s.clientID, s.mode, s.platform
	if clientID == "" {
		clientID = "cli"
	}
	if mode == "" {
		mode = "cli"
	}
	if platform == "" {
		platform = "linux"
	}
	scopes := s.scopes
	if scopes == nil {
		scopes = []string{}
	}
	p := map[string]any{
		"minProtocol": protocol.Version, "maxProtocol": protocol.Version,
		"client": map[string]any{"id": clientID, "version": "1.0", "platform": platform, "mode": mode},
		"scopes": scopes,
	}
	if s.role != "" {
		p["role"] = s.role
	}
	if s.token != "" || s.deviceToken != "" {
		auth := map[string]any{}
		if s.token != "" {
			auth["token"] = s.token
		}
		if s.deviceToken != "" {
			auth["deviceToken"] = s.deviceToken
		}
		p["auth"] = auth
	}
	if s.id != nil {
		payload := authn.BuildPayloadV3(authn.PayloadFields{
			DeviceID: s.id.DeviceID, ClientID: clientID, ClientMode: mode,
			Role: authn.ResolveRole(s.role), Scopes: scopes, SignedAtMs: ts,
			Token: authn.PickToken(s.token, s.deviceToken, ""), Nonce: nonce,
			Platform: platform,
		})
		dev := map[string]any{
			"id": s.id.DeviceID, "publicKey": s.id.PublicKey(),
			"signature": authn.SignPayload(s.id.Private, payload), "signedAt": ts, "nonce": nonce,
		}
		if s.forge != nil {
			s.forge(dev)
		}
		p["device"] = dev
	}
	return p
}

// signedConnect dials url, answers the challenge with s and returns the
// socket and the connect response.
func signedConnect(t testing.TB, url string, s signedSpec) (*rawConn, map[string]any) {
	t.Helper()
	rc := dialRawURL(t, url, s.header)
	nonce, ts := rc.challenge()
	rc.sendJSON(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": s.params(nonce, ts)})
	return rc, rc.frame()
}

// wantConnectErr asserts a refused connect: the exact error code, message
// and details.code, then the close code and reason that follow it.
func wantConnectErr(t testing.TB, rc *rawConn, f map[string]any, code, msg, detail string, closeCode int, closeReason string) map[string]any {
	t.Helper()
	if f["type"] != "res" || f["id"] != "c1" || f["ok"] != false {
		t.Fatalf("want a failed connect response, got %v", f)
	}
	e, _ := f["error"].(map[string]any)
	if e["code"] != code || e["message"] != msg || errDetail(f) != detail {
		t.Fatalf("connect error = %v %q %q, want %s %q %q", e["code"], e["message"], errDetail(f), code, msg, detail)
	}
	cc, reason, frames := rc.closeCode(3 * time.Second)
	if cc != closeCode || reason != closeReason || len(frames) != 0 {
		t.Fatalf("close = %d %q (+%d frames), want %d %q", cc, reason, len(frames), closeCode, closeReason)
	}
	d, _ := e["details"].(map[string]any)
	return d
}

// wantPairingRequired asserts NOT_PAIRED "pairing required" with reason and
// a requestId, closed 1008 "pairing required"; it returns the requestId.
func wantPairingRequired(t testing.TB, rc *rawConn, f map[string]any, reason string) string {
	t.Helper()
	d := wantConnectErr(t, rc, f, protocol.ErrNotPaired, "pairing required", protocol.DetailPairingRequired,
		protocol.ClosePolicy, "pairing required")
	if d["reason"] != reason {
		t.Fatalf("details.reason = %v, want %s (details %v)", d["reason"], reason, d)
	}
	rid, _ := d["requestId"].(string)
	if !uuidRE.MatchString(rid) {
		t.Fatalf("details.requestId = %q, want a uuid", rid)
	}
	return rid
}

var (
	uuidRE  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
)

// wantHello asserts a successful connect and returns its payload.
func wantHello(t testing.TB, f map[string]any) map[string]any {
	t.Helper()
	if f["type"] != "res" || f["ok"] != true {
		t.Fatalf("want hello-ok, got %v", f)
	}
	p := f["payload"].(map[string]any)
	if p["type"] != "hello-ok" {
		t.Fatalf("payload is not hello-ok: %v", p)
	}
	return p
}

// helloAuth returns hello-ok.auth's deviceToken and scopes.
func helloAuth(p map[string]any) (string, []string) {
	a, _ := p["auth"].(map[string]any)
	tok, _ := a["deviceToken"].(string)
	var scopes []string
	for _, s := range a["scopes"].([]any) {
		scopes = append(scopes, s.(string))
	}
	return tok, scopes
}

// ---------------------------------------------------------------------------
// Go client helpers.

// dialOpts connects with the Go client; a refusal is returned.
func dialOpts(t testing.TB, opts client.Options) (*client.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, opts)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// localDevice connects a new (or the given) identity on loopback with the
// shared token and scopes; a new local device is approved silently.
func localDevice(t testing.TB, g *testGateway, id *client.Identity, scopes []string, ev *eventLog) *client.Client {
	t.Helper()
	if id == nil {
		id = newIdentity(t)
	}
	return g.dialClient(t, func(o *client.Options) {
		o.Identity = id
		o.Scopes = scopes
		if ev != nil {
			o.OnEvent = ev.add
		}
	})
}

var adminScopes = []string{protocol.ScopeAdmin}

func call(t testing.TB, c *client.Client, method string, params any) map[string]any {
	t.Helper()
	raw, err := c.Call(context.Background(), method, params)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s result %s: %v", method, raw, err)
	}
	return m
}

// wantCallErr asserts a refused call: code, message and details.code.
func wantCallErr(t testing.TB, c *client.Client, method string, params any, code, msg, detail string) {
	t.Helper()
	_, err := c.Call(context.Background(), method, params)
	var re *client.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("%s: want remote error %s %q, got %v", method, code, msg, err)
	}
	if re.Code != code || re.Message != msg || re.DetailCode() != detail {
		t.Fatalf("%s: got %s %q %q, want %s %q %q", method, re.Code, re.Message, re.DetailCode(), code, msg, detail)
	}
}

// wantClosed waits for the gateway to close c and checks code and reason.
func wantClosed(t testing.TB, c *client.Client, within time.Duration, code int, reason string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(within):
		t.Fatalf("socket still open after %v, want close %d %q", within, code, reason)
	}
	var ce *client.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != code || ce.Reason != reason {
		t.Fatalf("close = %v, want %d %q", c.Err(), code, reason)
	}
}

// wantOpen checks that c still answers.
func wantOpen(t testing.TB, c *client.Client) {
	t.Helper()
	if _, err := c.Call(context.Background(), "health", nil); err != nil {
		t.Fatalf("connection should still be open: %v", err)
	}
}

// eventLog records the events one client receives.
type eventLog struct {
	mu  sync.Mutex
	evs []client.Event
}

func (l *eventLog) add(e client.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

// matching returns the payloads of events named name for which match
// (nil: any) holds.
func (l *eventLog) matching(name string, match func(map[string]any) bool) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, e := range l.evs {
		if e.Name != name {
			continue
		}
		var p map[string]any
		_ = json.Unmarshal(e.Payload, &p)
		if match == nil || match(p) {
			out = append(out, p)
		}
	}
	return out
}

// prefixed returns the names of received events starting with prefix.
func (l *eventLog) prefixed(prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.evs {
		if strings.HasPrefix(e.Name, prefix) {
			out = append(out, e.Name)
		}
	}
	return out
}

// waitFor polls until an event named name matching match has arrived.
func (l *eventLog) waitFor(t testing.TB, name string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if got := l.matching(name, match); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event arrived", name)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func byRequest(rid string) func(map[string]any) bool {
	return func(p map[string]any) bool { return p["requestId"] == rid }
}

func byDevice(id string) func(map[string]any) bool {
	return func(p map[string]any) bool { return p["deviceId"] == id }
}

// ---------------------------------------------------------------------------
// State helpers.

func listing(t testing.TB, pm *pairing.Manager) pairing.Listing {
	t.Helper()
	l, err := pm.List()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// wantUnchanged asserts the stored pairing state equals before.
func wantUnchanged(t testing.TB, pm *pairing.Manager, before pairing.Listing) {
	t.Helper()
	if after := listing(t, pm); !reflect.DeepEqual(before, after) {
		t.Fatalf("pairing state changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

func pendingFor(l pairing.Listing, deviceID string) []pairing.PendingRequest {
	var out []pairing.PendingRequest
	for _, p := range l.Pending {
		if p.DeviceID == deviceID {
			out = append(out, p)
		}
	}
	return out
}

func pairedDevice(l pairing.Listing, deviceID string) (pairing.PairedDevice, int) {
	var d pairing.PairedDevice
	n := 0
	for _, p := range l.Paired {
		if p.DeviceID == deviceID {
			d = p
			n++
		}
	}
	return d, n
}

// requestRemote makes id ask for pairing from a remote peer with the right
// shared token and returns the requestId.
func requestRemote(t testing.TB, g *testGateway, s signedSpec) string {
	t.Helper()
	if s.token == "" && s.deviceToken == "" {
		s.token = testToken
	}
	rc, f := signedConnect(t, g.remoteURL, s)
	return wantPairingRequired(t, rc, f, "not-paired")
}

// pairRemote pairs id from the remote listener through an admin approval
// and returns the connected client and its device token.
func pairRemote(t testing.TB, g *testGateway, admin *client.Client, id *client.Identity, scopes []string) (*client.Client, string) {
	t.Helper()
	rid := requestRemote(t, g, signedSpec{id: id, scopes: scopes})
	call(t, admin, "device.pair.approve", map[string]any{"requestId": rid})
	c, err := dialOpts(t, client.Options{URL: g.remoteURL, Token: testToken, Identity: id, Scopes: scopes})
	if err != nil {
		t.Fatalf("approved remote device refused: %v", err)
	}
	tok := c.Hello().Auth.DeviceToken
	if !tokenRE.MatchString(tok) {
		t.Fatalf("approved remote device got device token %q", tok)
	}
	return c, tok
}

// ---------------------------------------------------------------------------
// 1. Local silent approval, device token, resolved event.

func TestPairingLocalSilentApproval(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	watch := &eventLog{}
	watcher := localDevice(t, g, nil, []string{protocol.ScopePairing}, watch)
	if got := watcher.Hello().Auth.Scopes; !slices.Equal(got, []string{protocol.ScopePairing}) {
		t.Fatalf("watcher scopes = %v", got)
	}

	id := newIdentity(t)
	c := localDevice(t, g, id, []string{protocol.ScopeRead, protocol.ScopeWrite}, nil)
	auth := c.Hello().Auth
	if !tokenRE.MatchString(auth.DeviceToken) || auth.IssuedAtMs == 0 {
		t.Fatalf("hello-ok.auth.deviceToken = %q (issuedAtMs %d), want a 43-char base64url token", auth.DeviceToken, auth.IssuedAtMs)
	}
	if auth.Role != protocol.RoleOperator || !slices.Equal(auth.Scopes, []string{protocol.ScopeRead, protocol.ScopeWrite}) {
		t.Fatalf("hello-ok.auth = %+v", auth)
	}

	ev := watch.waitFor(t, protocol.EventDevicePairResolved, byDevice(id.DeviceID))
	if ev["decision"] != "approved" || !uuidRE.MatchString(ev["requestId"].(string)) || ev["ts"].(float64) <= 0 {
		t.Fatalf("device.pair.resolved = %v", ev)
	}
	if got := watch.matching(protocol.EventDevicePairRequested, byDevice(id.DeviceID)); len(got) != 0 {
		t.Fatalf("silent approval broadcast device.pair.requested: %v", got)
	}

	l := listing(t, pm)
	d, n := pairedDevice(l, id.DeviceID)
	if n != 1 || !slices.Equal(d.Roles, []string{"operator"}) || len(d.Tokens) != 1 ||
		!slices.Equal(d.ApprovedScopes, []string{protocol.ScopeRead, protocol.ScopeWrite}) {
		t.Fatalf("paired record = %+v (%d)", d, n)
	}
	if len(pendingFor(l, id.DeviceID)) != 0 {
		t.Fatalf("silent approval left a pending request: %+v", l.Pending)
	}

	t.Run("device token only", func(t *testing.T) {
		c2, err := dialOpts(t, client.Options{URL: g.url, DeviceToken: auth.DeviceToken, Identity: id,
			Scopes: []string{protocol.ScopeRead}})
		if err != nil {
			t.Fatalf("reconnect with the device token: %v", err)
		}
		if a := c2.Hello().Auth; a.DeviceToken != "" || !slices.Equal(a.Scopes, []string{protocol.ScopeRead}) {
			t.Fatalf("reconnect hello-ok.auth = %+v (a covered token must not be re-issued)", a)
		}
		if _, err := c2.Call(context.Background(), "status", nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("device token beyond its scopes", func(t *testing.T) {
		before := listing(t, pm)
		rc, f := signedConnect(t, g.url, signedSpec{id: id, deviceToken: auth.DeviceToken,
			scopes: []string{protocol.ScopeAdmin}})
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest,
			"unauthorized: device token scope mismatch (re-pair or approve scope upgrade)",
			protocol.DetailAuthScopeMismatch, protocol.ClosePolicy,
			"unauthorized: device token scope mismatch (re-pair or approve scope upgrade)")
		wantUnchanged(t, pm, before)
	})
	t.Run("wrong device token", func(t *testing.T) {
		before := listing(t, pm)
		wrong := "A" + auth.DeviceToken[1:]
		if wrong == auth.DeviceToken { // one token in 64 starts with A
			wrong = "B" + auth.DeviceToken[1:]
		}
		rc, f := signedConnect(t, g.url, signedSpec{id: id, deviceToken: wrong,
			scopes: []string{protocol.ScopeRead}})
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest,
			"unauthorized: device token mismatch (rotate/reissue device token)",
			protocol.DetailAuthDeviceTokenMismatch, protocol.ClosePolicy,
			"unauthorized: device token mismatch (rotate/reissue device token)")
		wantUnchanged(t, pm, before)
	})
}

// ---------------------------------------------------------------------------
// 2. Remote device: pending, event, list, approve, token.

func TestPairingRemoteApproval(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	watch := &eventLog{}
	admin := localDevice(t, g, nil, adminScopes, watch)

	id := newIdentity(t)
	scopes := []string{protocol.ScopeRead}
	rc, f := signedConnect(t, g.remoteURL, signedSpec{id: id, token: testToken, scopes: scopes})
	rid := wantPairingRequired(t, rc, f, "not-paired")

	ev := watch.waitFor(t, protocol.EventDevicePairRequested, byRequest(rid))
	if ev["deviceId"] != id.DeviceID || ev["publicKey"] != id.PublicKey() || ev["silent"] != false ||
		ev["role"] != "operator" || ev["remoteIp"] != "127.0.0.1" || ev["platform"] != "linux" ||
		ev["clientId"] != "cli" || ev["clientMode"] != "cli" || ev["ts"].(float64) <= 0 {
		t.Fatalf("device.pair.requested = %v", ev)
	}
	if got, _ := json.Marshal(ev["scopes"]); string(got) != `["operator.read"]` {
		t.Fatalf("requested scopes = %s", got)
	}

	// A retry before approval keeps the request: same id, no new event.
	rc, f = signedConnect(t, g.remoteURL, signedSpec{id: id, token: testToken, scopes: scopes})
	if again := wantPairingRequired(t, rc, f, "not-paired"); again != rid {
		t.Fatalf("retry got requestId %s, want %s", again, rid)
	}

	list := call(t, admin, "device.pair.list", map[string]any{})
	pend := list["pending"].([]any)
	if len(pend) != 1 || pend[0].(map[string]any)["requestId"] != rid || pend[0].(map[string]any)["deviceId"] != id.DeviceID {
		t.Fatalf("device.pair.list pending = %v", pend)
	}
	if _, n := pairedDevice(listing(t, pm), id.DeviceID); n != 0 {
		t.Fatal("device paired before approval")
	}
	if got := watch.matching(protocol.EventDevicePairRequested, byDevice(id.DeviceID)); len(got) != 1 {
		t.Fatalf("%d device.pair.requested events, want 1", len(got))
	}

	res := call(t, admin, "device.pair.approve", map[string]any{"requestId": rid})
	if res["requestId"] != rid || res["device"].(map[string]any)["deviceId"] != id.DeviceID {
		t.Fatalf("device.pair.approve = %v", res)
	}
	if _, leaked := res["device"].(map[string]any)["approvedScopes"]; leaked {
		t.Fatalf("approve result carries approvedScopes: %v", res)
	}
	ev = watch.waitFor(t, protocol.EventDevicePairResolved, byRequest(rid))
	if ev["decision"] != "approved" || ev["deviceId"] != id.DeviceID {
		t.Fatalf("device.pair.resolved = %v", ev)
	}

	rc, f = signedConnect(t, g.remoteURL, signedSpec{id: id, token: testToken, scopes: scopes})
	tok, got := helloAuth(wantHello(t, f))
	if !tokenRE.MatchString(tok) || !slices.Equal(got, scopes) {
		t.Fatalf("approved remote connect: token %q scopes %v", tok, got)
	}
	rc.ws.Close()

	c, err := dialOpts(t, client.Options{URL: g.remoteURL, DeviceToken: tok, Identity: id, Scopes: scopes})
	if err != nil {
		t.Fatalf("remote reconnect with the device token only: %v", err)
	}
	if _, err := c.Call(context.Background(), "status", nil); err != nil {
		t.Fatal(err)
	}
	wantCallErr(t, c, "device.pair.list", nil, protocol.ErrForbidden, "missing scope: operator.pairing", protocol.DetailMissingScope)
}

// ---------------------------------------------------------------------------
// 3 and 4. B1, B2: loopback is not enough for silent approval.

func TestPairingNoSilentApprovalForBrowserOrProxy(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	watch := &eventLog{}
	localDevice(t, g, nil, adminScopes, watch)
	cases := []struct {
		name   string
		header http.Header
		client string
		mode   string
	}{
		{name: "B2 browser origin webchat", header: http.Header{"Origin": {"http://" + g.addr}}, client: "webchat", mode: "webchat"},
		{name: "B2 browser origin cli", header: http.Header{"Origin": {"http://" + g.addr}}},
		{name: "B1 X-Forwarded-For", header: http.Header{"X-Forwarded-For": {"203.0.113.7"}}},
		{name: "B1 X-Real-IP", header: http.Header{"X-Real-IP": {"203.0.113.7"}}},
		{name: "B1 Forwarded", header: http.Header{"Forwarded": {"for=203.0.113.7"}}},
		{name: "B1 X-Forwarded-Proto", header: http.Header{"X-Forwarded-Proto": {"https"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := newIdentity(t)
			rc, f := signedConnect(t, g.url, signedSpec{id: id, token: testToken, header: tc.header,
				clientID: tc.client, mode: tc.mode, platform: "web", scopes: []string{protocol.ScopeRead}})
			rid := wantPairingRequired(t, rc, f, "not-paired")
			l := listing(t, pm)
			if p := pendingFor(l, id.DeviceID); len(p) != 1 || p[0].RequestID != rid || p[0].Silent {
				t.Fatalf("pending = %+v", p)
			}
			if _, n := pairedDevice(l, id.DeviceID); n != 0 {
				t.Fatal("device was paired without approval")
			}
			watch.waitFor(t, protocol.EventDevicePairRequested, byRequest(rid))
		})
	}
}

// ---------------------------------------------------------------------------
// 5. B3: no silent upgrade, even on loopback.

func TestPairingUpgradeNeedsApproval(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	cases := []struct {
		name     string
		spec     signedSpec
		reason   string
		isRepair bool
	}{
		{name: "scope upgrade to admin", spec: signedSpec{scopes: []string{protocol.ScopeRead, protocol.ScopeAdmin}}, reason: "scope-upgrade"},
		{name: "scope upgrade to pairing", spec: signedSpec{scopes: []string{protocol.ScopePairing}}, reason: "scope-upgrade"},
		{name: "role upgrade to node", spec: signedSpec{role: "node", mode: "node", clientID: "node-host"}, reason: "role-upgrade"},
		{name: "metadata upgrade", spec: signedSpec{platform: "darwin", scopes: []string{protocol.ScopeRead}}, reason: "metadata-upgrade"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := newIdentity(t)
			c := localDevice(t, g, id, []string{protocol.ScopeRead}, nil)
			before := listing(t, pm)
			d0, _ := pairedDevice(before, id.DeviceID)

			s := tc.spec
			s.id, s.token = id, testToken
			rc, f := signedConnect(t, g.url, s)
			rid := wantPairingRequired(t, rc, f, tc.reason)

			after := listing(t, pm)
			if d1, n := pairedDevice(after, id.DeviceID); n != 1 || !reflect.DeepEqual(d0, d1) {
				t.Fatalf("approval changed:\nbefore %+v\nafter  %+v", d0, d1)
			}
			if !reflect.DeepEqual(before.Paired, after.Paired) {
				t.Fatal("paired devices changed")
			}
			p := pendingFor(after, id.DeviceID)
			if len(p) != 1 || p[0].RequestID != rid || p[0].Silent || !p[0].IsRepair {
				t.Fatalf("pending = %+v", p)
			}
			// The old approval still works, unchanged.
			wantOpen(t, c)
			c2 := localDevice(t, g, id, []string{protocol.ScopeRead}, nil)
			if got := c2.Hello().Auth.Scopes; !slices.Equal(got, []string{protocol.ScopeRead}) {
				t.Fatalf("scopes after refused upgrade = %v", got)
			}
			wantCallErr(t, c2, "device.pair.list", nil, protocol.ErrForbidden, "missing scope: operator.pairing", protocol.DetailMissingScope)
		})
	}
}

// ---------------------------------------------------------------------------
// 6. B4 / A7: a paired device id with another key.

func TestPairingForeignKeyForPairedID(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	victim := newIdentity(t)
	localDevice(t, g, victim, adminScopes, nil)
	attacker := newIdentity(t)
	cases := []struct {
		name   string
		forge  func(dev map[string]any)
		detail string
		msg    string
		url    string
	}{
		{
			name:   "attacker key, victim id, local",
			forge:  func(dev map[string]any) { dev["id"] = victim.DeviceID },
			detail: protocol.DetailDeviceIDMismatch, msg: "device identity mismatch",
		},
		{
			name:   "attacker key, victim id, remote",
			forge:  func(dev map[string]any) { dev["id"] = victim.DeviceID },
			detail: protocol.DetailDeviceIDMismatch, msg: "device identity mismatch", url: g.remoteURL,
		},
		{
			name:   "victim key, attacker signature",
			forge:  func(dev map[string]any) { dev["id"], dev["publicKey"] = victim.DeviceID, victim.PublicKey() },
			detail: protocol.DetailDeviceSignatureInvalid, msg: "device signature invalid",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if url == "" {
				url = g.url
			}
			before := listing(t, pm)
			// The attacker signs a payload naming the victim's id with its
			// own key, so only the id ↔ key binding can stop it.
			forged := &client.Identity{Private: attacker.Private, Public: attacker.Public, DeviceID: victim.DeviceID}
			rc, f := signedConnect(t, url, signedSpec{id: forged, token: testToken, scopes: adminScopes,
				forge: func(dev map[string]any) {
					dev["publicKey"] = attacker.PublicKey()
					tc.forge(dev)
				}})
			d := wantConnectErr(t, rc, f, protocol.ErrInvalidRequest, tc.msg, tc.detail, protocol.ClosePolicy, tc.msg)
			if d["requestId"] != nil {
				t.Fatalf("a pending request was created: %v", d)
			}
			wantUnchanged(t, pm, before)
		})
	}
}

// ---------------------------------------------------------------------------
// 7. B5 / B6 / C2: an operator.pairing caller grants nothing it lacks.

func TestPairingApproverMustCoverRequest(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	pairerID := newIdentity(t)
	pairer := localDevice(t, g, pairerID, []string{protocol.ScopePairing}, nil)
	if got := pairer.Hello().Auth.Scopes; !slices.Equal(got, []string{protocol.ScopePairing}) {
		t.Fatalf("pairer scopes = %v", got)
	}
	cases := []struct {
		name string
		spec signedSpec
		msg  string // "" = the approval succeeds
	}{
		{name: "admin request", spec: signedSpec{scopes: []string{protocol.ScopeAdmin}}, msg: "missing scope: operator.admin"},
		{name: "admin among others", spec: signedSpec{scopes: []string{protocol.ScopePairing, protocol.ScopeAdmin}}, msg: "missing scope: operator.admin"},
		{name: "read request", spec: signedSpec{scopes: []string{protocol.ScopeRead}}, msg: "missing scope: operator.read"},
		{name: "node role (B6)", spec: signedSpec{role: "node", mode: "node", clientID: "node-host"}, msg: "missing scope: operator.admin"},
		{name: "pairing request", spec: signedSpec{scopes: []string{protocol.ScopePairing}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			s.id = newIdentity(t)
			rid := requestRemote(t, g, s)
			before := listing(t, pm)
			if tc.msg == "" {
				call(t, pairer, "device.pair.approve", map[string]any{"requestId": rid})
				if _, n := pairedDevice(listing(t, pm), s.id.DeviceID); n != 1 {
					t.Fatal("covered request not approved")
				}
				return
			}
			wantCallErr(t, pairer, "device.pair.approve", map[string]any{"requestId": rid}, protocol.ErrInvalidRequest, tc.msg, "")
			wantUnchanged(t, pm, before)
			if p := pendingFor(before, s.id.DeviceID); len(p) != 1 || p[0].RequestID != rid {
				t.Fatalf("request not pending: %+v", p)
			}
			// The device is still refused.
			s.token = testToken
			rc, f := signedConnect(t, g.remoteURL, s)
			if again := wantPairingRequired(t, rc, f, "not-paired"); again != rid {
				t.Fatalf("requestId changed to %s", again)
			}
		})
	}
	t.Run("C2 rotate own token beyond own scopes", func(t *testing.T) {
		before := listing(t, pm)
		wantCallErr(t, pairer, "device.token.rotate",
			map[string]any{"deviceId": pairerID.DeviceID, "role": "operator", "scopes": []string{protocol.ScopeAdmin}},
			protocol.ErrInvalidRequest, "device token rotation denied", "")
		wantCallErr(t, pairer, "device.token.rotate",
			map[string]any{"deviceId": pairerID.DeviceID, "role": "operator", "scopes": []string{protocol.ScopeRead}},
			protocol.ErrInvalidRequest, "device token rotation denied", "")
		wantCallErr(t, pairer, "device.token.rotate",
			map[string]any{"deviceId": pairerID.DeviceID, "role": "node"},
			protocol.ErrInvalidRequest, "device token rotation denied", "")
		wantUnchanged(t, pm, before)
		wantOpen(t, pairer)
	})
}

// ---------------------------------------------------------------------------
// 8. B8: approving what is not pending issues nothing.

func TestPairingApproveNotPending(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	g, pm := startPairedGatewayWith(t, pairing.Options{Now: clock}, nil)
	watch := &eventLog{}
	admin := localDevice(t, g, nil, adminScopes, watch)
	notFound := func(t *testing.T, method, rid string) {
		t.Helper()
		wantCallErr(t, admin, method, map[string]any{"requestId": rid}, protocol.ErrInvalidRequest, "unknown or expired id", "")
	}

	t.Run("unknown id", func(t *testing.T) {
		before := listing(t, pm)
		notFound(t, "device.pair.approve", "00000000-0000-4000-8000-000000000000")
		notFound(t, "device.pair.reject", "00000000-0000-4000-8000-000000000000")
		wantUnchanged(t, pm, before)
	})
	t.Run("rejected id", func(t *testing.T) {
		id := newIdentity(t)
		rid := requestRemote(t, g, signedSpec{id: id, scopes: []string{protocol.ScopeRead}})
		res := call(t, admin, "device.pair.reject", map[string]any{"requestId": rid})
		if res["requestId"] != rid || res["deviceId"] != id.DeviceID {
			t.Fatalf("reject = %v", res)
		}
		ev := watch.waitFor(t, protocol.EventDevicePairResolved, byRequest(rid))
		if ev["decision"] != "rejected" {
			t.Fatalf("resolved = %v", ev)
		}
		before := listing(t, pm)
		notFound(t, "device.pair.approve", rid)
		notFound(t, "device.pair.reject", rid)
		wantUnchanged(t, pm, before)
		if _, n := pairedDevice(before, id.DeviceID); n != 0 || len(pendingFor(before, id.DeviceID)) != 0 {
			t.Fatal("rejected device has state")
		}
		if got := watch.matching(protocol.EventDevicePairResolved, byRequest(rid)); len(got) != 1 {
			t.Fatalf("%d resolved events for the request", len(got))
		}
		// It is still refused, under a new request.
		if again := requestRemote(t, g, signedSpec{id: id, scopes: []string{protocol.ScopeRead}}); again == rid {
			t.Fatal("rejected requestId reused")
		}
	})
	t.Run("approved id", func(t *testing.T) {
		id := newIdentity(t)
		rid := requestRemote(t, g, signedSpec{id: id, scopes: []string{protocol.ScopeRead}})
		call(t, admin, "device.pair.approve", map[string]any{"requestId": rid})
		before := listing(t, pm)
		notFound(t, "device.pair.approve", rid)
		wantUnchanged(t, pm, before)
		if d, _ := pairedDevice(before, id.DeviceID); len(d.Tokens) != 1 {
			t.Fatalf("tokens = %+v", d.Tokens)
		}
	})
	t.Run("expired id", func(t *testing.T) {
		id := newIdentity(t)
		rid := requestRemote(t, g, signedSpec{id: id, scopes: []string{protocol.ScopeRead}})
		advance(pairing.DefaultPendingTTL + time.Second)
		before := listing(t, pm)
		if len(pendingFor(before, id.DeviceID)) != 0 {
			t.Fatal("expired request still listed")
		}
		notFound(t, "device.pair.approve", rid)
		wantUnchanged(t, pm, before)
		if _, n := pairedDevice(before, id.DeviceID); n != 0 {
			t.Fatal("expired request paired the device")
		}
	})
}

// ---------------------------------------------------------------------------
// 9. B11 / C3: removal and revocation end sessions and tokens.

func TestPairingRemoveAndRevokeDisconnect(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	admin := localDevice(t, g, nil, adminScopes, nil)
	bystander := localDevice(t, g, nil, []string{protocol.ScopeRead}, nil)
	scopes := []string{protocol.ScopeRead}

	t.Run("remove remote device", func(t *testing.T) {
		id := newIdentity(t)
		c1, tok := pairRemote(t, g, admin, id, scopes)
		c2, err := dialOpts(t, client.Options{URL: g.remoteURL, DeviceToken: tok, Identity: id, Scopes: scopes})
		if err != nil {
			t.Fatal(err)
		}
		res := call(t, admin, "device.pair.remove", map[string]any{"deviceId": id.DeviceID})
		if res["deviceId"] != id.DeviceID {
			t.Fatalf("remove = %v", res)
		}
		wantClosed(t, c1, 2*time.Second, protocol.CloseAuthChanged, "device removed")
		wantClosed(t, c2, 2*time.Second, protocol.CloseAuthChanged, "device removed")
		wantOpen(t, admin)
		wantOpen(t, bystander)
		if _, n := pairedDevice(listing(t, pm), id.DeviceID); n != 0 {
			t.Fatal("device still paired")
		}

		rc, f := signedConnect(t, g.remoteURL, signedSpec{id: id, deviceToken: tok, scopes: scopes})
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest,
			"unauthorized: device token mismatch (rotate/reissue device token)", protocol.DetailAuthDeviceTokenMismatch,
			protocol.ClosePolicy, "unauthorized: device token mismatch (rotate/reissue device token)")
		rc, f = signedConnect(t, g.url, signedSpec{id: id, deviceToken: tok, scopes: scopes})
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest,
			"unauthorized: device token mismatch (rotate/reissue device token)", protocol.DetailAuthDeviceTokenMismatch,
			protocol.ClosePolicy, "unauthorized: device token mismatch (rotate/reissue device token)")
		// The old token as auth.token (the fallback) fails too.
		rc, f = signedConnect(t, g.remoteURL, signedSpec{id: id, token: tok, scopes: scopes})
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest,
			"unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)",
			protocol.DetailAuthTokenMismatch, protocol.ClosePolicy,
			"unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)")
		// The shared token from a remote peer needs a new approval.
		requestRemote(t, g, signedSpec{id: id, scopes: scopes})
	})

	t.Run("revoke token", func(t *testing.T) {
		id := newIdentity(t)
		c := localDevice(t, g, id, scopes, nil)
		tok := c.Hello().Auth.DeviceToken
		res := call(t, admin, "device.token.revoke", map[string]any{"deviceId": id.DeviceID, "role": "operator"})
		if res["deviceId"] != id.DeviceID || res["role"] != "operator" || res["revokedAtMs"].(float64) <= 0 {
			t.Fatalf("revoke = %v", res)
		}
		start := time.Now()
		wantClosed(t, c, 2*time.Second, protocol.CloseAuthChanged, "device removed")
		t.Logf("closed %v after revoke", time.Since(start))
		wantOpen(t, bystander)

		rc, f := signedConnect(t, g.url, signedSpec{id: id, deviceToken: tok, scopes: scopes})
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest,
			"unauthorized: device token mismatch (rotate/reissue device token)", protocol.DetailAuthDeviceTokenMismatch,
			protocol.ClosePolicy, "unauthorized: device token mismatch (rotate/reissue device token)")
		// Even on loopback the shared token does not silently restore the
		// revoked role.
		rc, f = signedConnect(t, g.url, signedSpec{id: id, token: testToken, scopes: scopes})
		wantPairingRequired(t, rc, f, "role-upgrade")
	})

	t.Run("remove local device", func(t *testing.T) {
		id := newIdentity(t)
		c := localDevice(t, g, id, scopes, nil)
		tok := c.Hello().Auth.DeviceToken
		start := time.Now()
		call(t, admin, "device.pair.remove", map[string]any{"deviceId": id.DeviceID})
		wantClosed(t, c, 2*time.Second, protocol.CloseAuthChanged, "device removed")
		if d := time.Since(start); d > time.Second {
			t.Errorf("close took %v", d)
		}
		rc, f := signedConnect(t, g.url, signedSpec{id: id, deviceToken: tok, scopes: scopes})
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest,
			"unauthorized: device token mismatch (rotate/reissue device token)", protocol.DetailAuthDeviceTokenMismatch,
			protocol.ClosePolicy, "unauthorized: device token mismatch (rotate/reissue device token)")
	})

	t.Run("remove unknown device", func(t *testing.T) {
		before := listing(t, pm)
		wantCallErr(t, admin, "device.pair.remove", map[string]any{"deviceId": newIdentity(t).DeviceID},
			protocol.ErrInvalidRequest, "unknown or expired id", "")
		wantUnchanged(t, pm, before)
	})
}

// ---------------------------------------------------------------------------
// 10. C1: token management is self-scoped for non-admins.

func TestPairingTokenSelfScoped(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	admin := localDevice(t, g, nil, adminScopes, nil)
	victimID := newIdentity(t)
	victim := localDevice(t, g, victimID, []string{protocol.ScopeRead}, nil)
	selfID := newIdentity(t)
	self := localDevice(t, g, selfID, []string{protocol.ScopePairing}, nil)
	selfTok := self.Hello().Auth.DeviceToken
	parent := t // owns connections that outlive a subtest

	t.Run("other device refused", func(t *testing.T) {
		before := listing(t, pm)
		wantCallErr(t, self, "device.token.rotate", map[string]any{"deviceId": victimID.DeviceID, "role": "operator"},
			protocol.ErrInvalidRequest, "device token rotation denied", "")
		wantCallErr(t, self, "device.token.rotate",
			map[string]any{"deviceId": victimID.DeviceID, "role": "operator", "scopes": []string{protocol.ScopeRead}},
			protocol.ErrInvalidRequest, "device token rotation denied", "")
		wantCallErr(t, self, "device.token.revoke", map[string]any{"deviceId": victimID.DeviceID, "role": "operator"},
			protocol.ErrForbidden, "forbidden: only the device itself or an admin may do this", "")
		wantCallErr(t, self, "device.pair.remove", map[string]any{"deviceId": victimID.DeviceID},
			protocol.ErrForbidden, "forbidden: only the device itself or an admin may do this", "")
		wantUnchanged(t, pm, before)
		wantOpen(t, victim)
		wantOpen(t, self)
	})

	t.Run("read-only device has no token methods", func(t *testing.T) {
		before := listing(t, pm)
		wantCallErr(t, victim, "device.token.rotate", map[string]any{"deviceId": victimID.DeviceID, "role": "operator"},
			protocol.ErrForbidden, "missing scope: operator.pairing", protocol.DetailMissingScope)
		wantUnchanged(t, pm, before)
	})

	t.Run("own token rotates in-band", func(t *testing.T) {
		raw, err := self.Call(context.Background(), "device.token.rotate", map[string]any{"deviceId": selfID.DeviceID, "role": "operator"})
		if err != nil {
			t.Fatal(err)
		}
		var res map[string]any
		_ = json.Unmarshal(raw, &res)
		tok, _ := res["token"].(string)
		if res["deviceId"] != selfID.DeviceID || res["role"] != "operator" || res["tokenDelivery"] != "in-band" ||
			!tokenRE.MatchString(tok) || tok == selfTok || res["rotatedAtMs"].(float64) <= 0 {
			t.Fatalf("rotate = %s", raw)
		}
		if got, _ := json.Marshal(res["scopes"]); string(got) != `["operator.pairing"]` {
			t.Fatalf("rotated scopes = %s", got)
		}
		// Its own socket is closed once it has the answer.
		wantClosed(t, self, 2*time.Second, protocol.CloseAuthChanged, "device removed")
		wantOpen(t, victim)

		rc, f := signedConnect(t, g.url, signedSpec{id: selfID, deviceToken: selfTok, scopes: []string{protocol.ScopePairing}})
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest,
			"unauthorized: device token mismatch (rotate/reissue device token)", protocol.DetailAuthDeviceTokenMismatch,
			protocol.ClosePolicy, "unauthorized: device token mismatch (rotate/reissue device token)")
		c, err := dialOpts(parent, client.Options{URL: g.url, DeviceToken: tok, Identity: selfID, Scopes: []string{protocol.ScopePairing}})
		if err != nil {
			t.Fatalf("connect with the rotated token: %v", err)
		}
		self = c
	})

	t.Run("admin rotation withholds the token", func(t *testing.T) {
		victimTok := victim.Hello().Auth.DeviceToken
		res := call(t, admin, "device.token.rotate", map[string]any{"deviceId": victimID.DeviceID, "role": "operator"})
		if _, has := res["token"]; has || res["tokenDelivery"] != "withheld-cross-device" || res["deviceId"] != victimID.DeviceID {
			t.Fatalf("cross-device rotate = %v", res)
		}
		wantClosed(t, victim, 2*time.Second, protocol.CloseAuthChanged, "device removed")
		wantOpen(t, admin)
		wantOpen(t, self)
		rc, f := signedConnect(t, g.url, signedSpec{id: victimID, deviceToken: victimTok, scopes: []string{protocol.ScopeRead}})
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest,
			"unauthorized: device token mismatch (rotate/reissue device token)", protocol.DetailAuthDeviceTokenMismatch,
			protocol.ClosePolicy, "unauthorized: device token mismatch (rotate/reissue device token)")
	})

	t.Run("own token revoke", func(t *testing.T) {
		res := call(t, self, "device.token.revoke", map[string]any{"deviceId": selfID.DeviceID, "role": "operator"})
		if res["deviceId"] != selfID.DeviceID || res["revokedAtMs"].(float64) <= 0 {
			t.Fatalf("revoke = %v", res)
		}
		wantClosed(t, self, 2*time.Second, protocol.CloseAuthChanged, "device removed")
	})
}

// ---------------------------------------------------------------------------
// 11. C5: a device token is bound to its device and role.

func TestPairingDeviceTokenBoundToDevice(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	ownerID := newIdentity(t)
	owner := localDevice(t, g, ownerID, []string{protocol.ScopeRead}, nil)
	tok := owner.Hello().Auth.DeviceToken
	other := newIdentity(t)
	pairedOther := newIdentity(t)
	localDevice(t, g, pairedOther, []string{protocol.ScopeRead}, nil)

	const mismatch = "unauthorized: device token mismatch (rotate/reissue device token)"
	cases := []struct {
		name string
		url  string
		spec signedSpec
	}{
		{name: "unpaired identity, local", spec: signedSpec{id: other, deviceToken: tok, scopes: []string{protocol.ScopeRead}}},
		{name: "unpaired identity, remote", url: g.remoteURL, spec: signedSpec{id: other, deviceToken: tok, scopes: []string{protocol.ScopeRead}}},
		{name: "paired identity", spec: signedSpec{id: pairedOther, deviceToken: tok, scopes: []string{protocol.ScopeRead}}},
		{name: "owner, other role", spec: signedSpec{id: ownerID, deviceToken: tok, role: "node", mode: "node", clientID: "node-host"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if url == "" {
				url = g.url
			}
			before := listing(t, pm)
			rc, f := signedConnect(t, url, tc.spec)
			wantConnectErr(t, rc, f, protocol.ErrInvalidRequest, mismatch, protocol.DetailAuthDeviceTokenMismatch,
				protocol.ClosePolicy, mismatch)
			wantUnchanged(t, pm, before)
		})
	}
	t.Run("as auth.token for another identity", func(t *testing.T) {
		before := listing(t, pm)
		rc, f := signedConnect(t, g.remoteURL, signedSpec{id: other, token: tok, scopes: []string{protocol.ScopeRead}})
		msg := "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)"
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest, msg, protocol.DetailAuthTokenMismatch, protocol.ClosePolicy, msg)
		wantUnchanged(t, pm, before)
	})
	t.Run("device-less", func(t *testing.T) {
		p := connectParams("")
		p["auth"] = map[string]any{"deviceToken": tok}
		rc := dialRawURL(t, g.url, nil)
		rc.challenge()
		rc.sendJSON(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": p})
		msg := "unauthorized: gateway token missing (use this gateway's gateway.auth.token or pair the device)"
		wantConnectErr(t, rc, rc.frame(), protocol.ErrInvalidRequest, msg, protocol.DetailAuthTokenMissing, protocol.ClosePolicy, msg)
	})
	wantOpen(t, owner)
}

// ---------------------------------------------------------------------------
// 12. A11: connect is single use.

func TestPairingSecondConnect(t *testing.T) {
	g, _ := startPairedGateway(t, nil)
	adminID := newIdentity(t)
	localDevice(t, g, adminID, adminScopes, nil)

	cases := []struct {
		name   string
		spec   signedSpec
		code   string
		msg    string
		detail string
		admin  bool
	}{
		{name: "read-only device", spec: signedSpec{id: newIdentity(t), scopes: []string{protocol.ScopeRead}},
			code: protocol.ErrForbidden, msg: "missing scope: operator.admin", detail: protocol.DetailMissingScope},
		{name: "device-less shared token", spec: signedSpec{scopes: []string{protocol.ScopeRead}},
			code: protocol.ErrForbidden, msg: "missing scope: operator.admin", detail: protocol.DetailMissingScope},
		{name: "admin device", spec: signedSpec{id: adminID, scopes: adminScopes},
			code: protocol.ErrInvalidRequest, msg: "connect is only valid as the first request", admin: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			s.token = testToken
			rc := dialRawURL(t, g.url, nil)
			nonce, ts := rc.challenge()
			rc.sendJSON(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": s.params(nonce, ts)})
			_, scopes := helloAuth(wantHello(t, rc.frame()))

			// The second connect asks for admin, signed again by an admin
			// device over the same nonce.
			second := signedSpec{id: adminID, token: testToken, scopes: adminScopes}
			rc.sendJSON(map[string]any{"type": "req", "id": "c2", "method": "connect", "params": second.params(nonce, ts)})
			f := nextRes(t, rc, "c2")
			wantResErr(t, f, tc.code, tc.msg, tc.detail)

			// The session is what the first connect established.
			rc.sendJSON(map[string]any{"type": "req", "id": "s1", "method": "status"})
			if f := nextRes(t, rc, "s1"); f["ok"] != true {
				t.Fatalf("status after second connect: %v", f)
			}
			rc.sendJSON(map[string]any{"type": "req", "id": "a1", "method": "device.pair.list", "params": map[string]any{}})
			f = nextRes(t, rc, "a1")
			if tc.admin {
				if f["ok"] != true {
					t.Fatalf("admin lost device.pair.list: %v", f)
				}
				return
			}
			wantResErr(t, f, protocol.ErrForbidden, "missing scope: operator.pairing", protocol.DetailMissingScope)
			rc.sendJSON(map[string]any{"type": "req", "id": "a2", "method": "config.apply", "params": map[string]any{}})
			wantResErr(t, nextRes(t, rc, "a2"), protocol.ErrForbidden, "missing scope: operator.admin", protocol.DetailMissingScope)
			if slices.Contains(scopes, protocol.ScopeAdmin) {
				t.Fatalf("first session had admin: %v", scopes)
			}
		})
	}
}

// nextRes reads frames until the response with id, skipping events.
func nextRes(t testing.TB, rc *rawConn, id string) map[string]any {
	t.Helper()
	for {
		f := rc.frame()
		if f["type"] == "res" && f["id"] == id {
			return f
		}
		if f["type"] != "event" {
			t.Fatalf("unexpected frame waiting for %s: %v", id, f)
		}
	}
}

func wantResErr(t testing.TB, f map[string]any, code, msg, detail string) {
	t.Helper()
	e, _ := f["error"].(map[string]any)
	if f["ok"] != false || e["code"] != code || e["message"] != msg || errDetail(f) != detail {
		t.Fatalf("got %v, want %s %q %q", f, code, msg, detail)
	}
}

// ---------------------------------------------------------------------------
// 13. A13: the backend client id grants nothing without a device.

func TestPairingBackendClaimWithoutDevice(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	cases := []struct {
		name   string
		url    string
		header http.Header
	}{
		{name: "loopback"},
		{name: "loopback with X-Forwarded-For", header: http.Header{"X-Forwarded-For": {"127.0.0.1"}}},
		{name: "loopback with browser origin", header: http.Header{"Origin": {"http://" + g.addr}}},
		{name: "remote", url: g.remoteURL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if url == "" {
				url = g.url
			}
			before := listing(t, pm)
			p := connectParams(testToken)
			p["client"] = map[string]any{"id": "gateway-client", "version": "1.0", "platform": "linux", "mode": "backend"}
			p["scopes"] = []string{protocol.ScopeAdmin, protocol.ScopePairing, protocol.ScopeRead, protocol.ScopeWrite, protocol.ScopeApprovals}
			rc := dialRawURL(t, url, tc.header)
			rc.challenge()
			rc.sendJSON(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": p})
			hello := wantHello(t, rc.frame())
			tok, scopes := helloAuth(hello)
			if tok != "" || !slices.Equal(scopes, []string{protocol.ScopeRead, protocol.ScopeWrite}) {
				t.Fatalf("backend claim got token %q scopes %v", tok, scopes)
			}
			if snap := hello["snapshot"].(map[string]any); snap["stateDir"] != nil || snap["authMode"] != nil {
				t.Fatalf("non-admin snapshot leaks admin fields: %v", snap)
			}
			for i, m := range []struct{ method, scope string }{
				{"device.pair.list", protocol.ScopePairing},
				{"device.pair.approve", protocol.ScopePairing},
				{"config.apply", protocol.ScopeAdmin},
				{"connect", protocol.ScopeAdmin},
			} {
				id := "r" + string(rune('0'+i))
				rc.sendJSON(map[string]any{"type": "req", "id": id, "method": m.method, "params": map[string]any{}})
				f := nextRes(t, rc, id)
				wantResErr(t, f, protocol.ErrForbidden, "missing scope: "+m.scope, protocol.DetailMissingScope)
				d := f["error"].(map[string]any)["details"].(map[string]any)
				if d["missingScope"] != m.scope {
					t.Fatalf("details = %v", d)
				}
			}
			wantUnchanged(t, pm, before)
		})
	}
	t.Run("remote backend with a device needs pairing", func(t *testing.T) {
		rc, f := signedConnect(t, g.remoteURL, signedSpec{id: newIdentity(t), token: testToken,
			clientID: "gateway-client", mode: "backend", scopes: adminScopes})
		wantPairingRequired(t, rc, f, "not-paired")
	})
}

// ---------------------------------------------------------------------------
// 14. A23: nothing runs before connect.

func TestPairingFirstFrameMustBeConnect(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	for _, method := range []string{"config.apply", "config.patch", "update.run", "device.pair.approve", "device.pair.list"} {
		t.Run(method, func(t *testing.T) {
			before := listing(t, pm)
			rc := g.dialRaw(t, nil)
			rc.challenge()
			rc.sendJSON(map[string]any{"type": "req", "id": "x1", "method": method,
				"params": map[string]any{"raw": "{}", "requestId": "00000000-0000-4000-8000-000000000000"}})
			f := rc.frame()
			if f["type"] != "res" || f["id"] != "x1" {
				t.Fatalf("frame = %v", f)
			}
			wantResErr(t, f, protocol.ErrInvalidRequest, "invalid handshake: first request must be connect", "")
			cc, reason, rest := rc.closeCode(3 * time.Second)
			if cc != protocol.ClosePolicy || reason != "invalid handshake: first request must be connect" || len(rest) != 0 {
				t.Fatalf("close = %d %q %v", cc, reason, rest)
			}
			wantUnchanged(t, pm, before)
		})
	}
}

// ---------------------------------------------------------------------------
// 15. B7: concurrent approvals and concurrent requests.

func TestPairingConcurrentApprove(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	watch := &eventLog{}
	adminID := newIdentity(t)
	localDevice(t, g, adminID, adminScopes, watch)
	const n = 50
	admins := make([]*client.Client, n)
	for i := range admins {
		admins[i] = localDevice(t, g, adminID, adminScopes, nil)
	}
	id := newIdentity(t)
	rid := requestRemote(t, g, signedSpec{id: id, scopes: []string{protocol.ScopeRead}})

	var ok atomic.Int32
	errs := make(chan error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range admins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := c.Call(context.Background(), "device.pair.approve", map[string]any{"requestId": rid})
			if err == nil {
				ok.Add(1)
				return
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	if ok.Load() != 1 {
		t.Fatalf("%d approvals succeeded, want exactly 1", ok.Load())
	}
	for err := range errs {
		var re *client.RemoteError
		if !errors.As(err, &re) || re.Code != protocol.ErrInvalidRequest || re.Message != "unknown or expired id" {
			t.Fatalf("losing approval: %v", err)
		}
	}
	l := listing(t, pm)
	d, count := pairedDevice(l, id.DeviceID)
	if count != 1 || len(d.Tokens) != 1 || len(pendingFor(l, id.DeviceID)) != 0 {
		t.Fatalf("paired %d times, tokens %+v, pending %+v", count, d.Tokens, l.Pending)
	}
	if len(l.Paired) != 2 { // the admin and the approved device
		t.Fatalf("paired devices = %d, want 2", len(l.Paired))
	}
	watch.waitFor(t, protocol.EventDevicePairResolved, byRequest(rid))
	wantOpen(t, admins[0]) // every resolved event was queued before this answer
	if got := watch.matching(protocol.EventDevicePairResolved, byRequest(rid)); len(got) != 1 {
		t.Fatalf("%d resolved events, want 1", len(got))
	}
	c, err := dialOpts(t, client.Options{URL: g.remoteURL, Token: testToken, Identity: id, Scopes: []string{protocol.ScopeRead}})
	if err != nil || !tokenRE.MatchString(c.Hello().Auth.DeviceToken) {
		t.Fatalf("approved device: %v", err)
	}
}

func TestPairingConcurrentRequestsCapped(t *testing.T) {
	g, pm := startPairedGateway(t, func(o *Options) { o.MaxPreauthPerIP = 128 })
	const n = 50
	type result struct {
		f           map[string]any
		cc          int
		closeReason string
	}
	results := make(chan result, n)
	ids := make([]*client.Identity, n)
	for i := range ids {
		ids[i] = newIdentity(t)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f, cc, reason, err := tryConnect(g.remoteURL, signedSpec{id: id, token: testToken, scopes: []string{protocol.ScopeRead}})
			if err != nil {
				f = map[string]any{"transport error": err.Error()}
			}
			results <- result{f: f, cc: cc, closeReason: reason}
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	pairingRequired, tooMany := 0, 0
	for r := range results {
		switch {
		case errDetail(r.f) == protocol.DetailPairingRequired && r.cc == protocol.ClosePolicy && r.closeReason == "pairing required":
			pairingRequired++
		case r.f["error"] != nil && r.f["error"].(map[string]any)["code"] == protocol.ErrUnavailable:
			e := r.f["error"].(map[string]any)
			if e["message"] != "too many pending pairing requests; approve or reject some first" || e["retryable"] != true ||
				e["retryAfterMs"] != float64(60000) || r.cc != protocol.ClosePolicy {
				t.Fatalf("cap answer = %v close %d %q", r.f, r.cc, r.closeReason)
			}
			tooMany++
		default:
			t.Fatalf("unexpected answer %v close %d %q", r.f, r.cc, r.closeReason)
		}
	}
	l := listing(t, pm)
	if pairingRequired != pairing.DefaultMaxPendingPerClient || tooMany != n-pairing.DefaultMaxPendingPerClient ||
		len(l.Pending) != pairing.DefaultMaxPendingPerClient || len(l.Paired) != 0 {
		t.Fatalf("pairing required %d, capped %d, pending %d, paired %d", pairingRequired, tooMany, len(l.Pending), len(l.Paired))
	}
}

// tryConnect is signedConnect for goroutines: no testing.T, errors
// returned. It also reads the close that follows a refusal.
func tryConnect(url string, s signedSpec) (map[string]any, int, string, error) {
	ws, _, err := websocket.DefaultDialer.Dial(url, s.header)
	if err != nil {
		return nil, 0, "", err
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ch struct {
		Event   string `json:"event"`
		Payload struct {
			Nonce string `json:"nonce"`
			Ts    int64  `json:"ts"`
		} `json:"payload"`
	}
	if err := ws.ReadJSON(&ch); err != nil || ch.Event != protocol.EventChallenge {
		return nil, 0, "", fmt.Errorf("challenge: %v %v", ch, err)
	}
	if err := ws.WriteJSON(map[string]any{"type": "req", "id": "c1", "method": "connect",
		"params": s.params(ch.Payload.Nonce, ch.Payload.Ts)}); err != nil {
		return nil, 0, "", err
	}
	var f map[string]any
	if err := ws.ReadJSON(&f); err != nil {
		return nil, 0, "", err
	}
	if f["ok"] == true {
		return f, 0, "", nil
	}
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		return f, 0, "", fmt.Errorf("want a close after the refusal, got %v", err)
	}
	return f, ce.Code, ce.Text, nil
}

// ---------------------------------------------------------------------------
// 16. B12: pairing events reach pairing-scoped operators only.

func TestPairingEventsScoped(t *testing.T) {
	g, _ := startPairedGateway(t, nil)
	pairingLog, adminLog, readLog, devicelessLog := &eventLog{}, &eventLog{}, &eventLog{}, &eventLog{}
	localDevice(t, g, nil, []string{protocol.ScopePairing}, pairingLog)
	admin := localDevice(t, g, nil, adminScopes, adminLog)
	reader := localDevice(t, g, nil, []string{protocol.ScopeRead, protocol.ScopeWrite}, readLog)
	deviceless := g.dialClient(t, func(o *client.Options) {
		o.Identity = nil
		o.Scopes = []string{protocol.ScopeRead, protocol.ScopeWrite}
		o.OnEvent = devicelessLog.add
	})
	watchers := []*eventLog{pairingLog, adminLog}

	// A silent local approval.
	localID := newIdentity(t)
	localDevice(t, g, localID, []string{protocol.ScopeRead}, nil)
	for _, w := range watchers {
		if ev := w.waitFor(t, protocol.EventDevicePairResolved, byDevice(localID.DeviceID)); ev["decision"] != "approved" {
			t.Fatalf("silent approval event = %v", ev)
		}
	}
	// A new request, then its approval.
	remoteID := newIdentity(t)
	rid := requestRemote(t, g, signedSpec{id: remoteID, scopes: []string{protocol.ScopeRead}, platform: "ios"})
	for _, w := range watchers {
		ev := w.waitFor(t, protocol.EventDevicePairRequested, byRequest(rid))
		if ev["deviceId"] != remoteID.DeviceID || ev["platform"] != "ios" || ev["publicKey"] != remoteID.PublicKey() {
			t.Fatalf("requested event lacks device metadata: %v", ev)
		}
	}
	call(t, admin, "device.pair.approve", map[string]any{"requestId": rid})
	for _, w := range watchers {
		if ev := w.waitFor(t, protocol.EventDevicePairResolved, byRequest(rid)); ev["decision"] != "approved" {
			t.Fatalf("approval event = %v", ev)
		}
	}
	// A scope upgrade request, then its rejection.
	rc, f := signedConnect(t, g.url, signedSpec{id: localID, token: testToken, scopes: adminScopes})
	upID := wantPairingRequired(t, rc, f, "scope-upgrade")
	for _, w := range watchers {
		if ev := w.waitFor(t, protocol.EventDevicePairRequested, byRequest(upID)); ev["isRepair"] != true {
			t.Fatalf("upgrade event = %v", ev)
		}
	}
	call(t, admin, "device.pair.reject", map[string]any{"requestId": upID})
	for _, w := range watchers {
		if ev := w.waitFor(t, protocol.EventDevicePairResolved, byRequest(upID)); ev["decision"] != "rejected" {
			t.Fatalf("rejection event = %v", ev)
		}
	}

	// Every broadcast above was queued before these answers, so events that
	// were sent at all have been delivered.
	wantOpen(t, reader)
	wantOpen(t, deviceless)
	for name, l := range map[string]*eventLog{"read/write device": readLog, "device-less": devicelessLog} {
		if got := l.prefixed("device.pair."); len(got) != 0 {
			t.Errorf("%s watcher received %v", name, got)
		}
	}
	ours := func(p map[string]any) bool {
		return p["deviceId"] == localID.DeviceID || p["deviceId"] == remoteID.DeviceID
	}
	for _, w := range watchers {
		n := len(w.matching(protocol.EventDevicePairRequested, ours)) + len(w.matching(protocol.EventDevicePairResolved, ours))
		if n != 5 {
			t.Errorf("pairing watcher received %d device.pair events for the test devices, want 5: %v", n, w.prefixed("device.pair."))
		}
	}
}

// ---------------------------------------------------------------------------
// A14 / A15 / A18 with a device block: guessing the shared token from a
// remote peer that signs with its own fresh key. With pairing enabled a
// wrong shared token is only counted in the device-token bucket, but the
// shared token is compared before that bucket's lockout is checked.

func TestPairingSharedTokenGuessWithDeviceLocksOut(t *testing.T) {
	g, pm := startPairedGateway(t, nil)
	id := newIdentity(t)
	guess := signedSpec{id: id, token: "wrong-token-guess", scopes: []string{protocol.ScopeRead}}
	const mismatch = "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)"
	for i := 1; i <= 10; i++ {
		rc, f := signedConnect(t, g.remoteURL, guess)
		wantConnectErr(t, rc, f, protocol.ErrInvalidRequest, mismatch, protocol.DetailAuthTokenMismatch, protocol.ClosePolicy, mismatch)
	}
	rc, f := signedConnect(t, g.remoteURL, guess)
	const limited = "unauthorized: too many failed authentication attempts (retry later)"
	wantConnectErr(t, rc, f, protocol.ErrInvalidRequest, limited, protocol.DetailAuthRateLimited, protocol.ClosePolicy, limited)

	// A18: the right token during the lockout is refused as well; else the
	// lockout answers "wrong" and "right" differently and never slows the
	// guessing down.
	before := listing(t, pm)
	right := guess
	right.token = testToken
	rc, f = signedConnect(t, g.remoteURL, right)
	if errDetail(f) != protocol.DetailAuthRateLimited {
		t.Errorf("correct shared token during the lockout: got %v, want AUTH_RATE_LIMITED", f["error"])
	}
	rc.ws.Close()
	if after := listing(t, pm); !reflect.DeepEqual(before, after) {
		t.Errorf("pairing state changed during the lockout: pending %+v", after.Pending)
	}
}
