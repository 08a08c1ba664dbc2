package compat

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/authn"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

const (
	wsReadTimeout   = 10 * time.Second // per expected frame / per response
	maxCallTimeouts = 3                // stop calling methods after this many unanswered requests
	maxReconnects   = 5
)

// Methods the conformance walk never calls: they would restart, stop,
// suspend, update or reconfigure the gateway under test, or log it out.
var destructiveMethods = map[string]string{
	"connect":                      "only valid as the first request",
	"update.run":                   "updates the gateway",
	"gateway.restart.request":      "restarts the gateway",
	"gateway.suspend.prepare":      "suspends the gateway",
	"gateway.suspend.commit":       "suspends the gateway",
	"gateway.suspend.handoff":      "suspends the gateway",
	"gateway.suspend.resume":       "suspends the gateway",
	"config.apply":                 "rewrites config and restarts",
	"config.patch":                 "rewrites config and restarts",
	"config.set":                   "rewrites config",
	"channels.logout":              "logs a channel out",
	"secrets.reload":               "reloads secrets",
	"wizard.start":                 "starts the onboarding wizard",
	"diagnostics.heapProfile":      "heavy",
	"diagnostics.cpuProfile":       "heavy",
	"sessions.storage.run":         "storage maintenance",
	"memory.sessionBackfill.apply": "mutates memory",
}

// invalidParamsRE matches the error messages of a gateway that rejected a
// request's params by schema ("invalid foo params: must have required
// property 'x'", "invalid request frame", ...).
// invalidParamsRE matches a rejection of the params' shape (what a schema
// decides), not of their meaning: "invalid cron.add params: at /schedule:
// ..." or "... unexpected property 'x'" is a conformance failure, while
// "unknown deviceId" or "schedule.at must be a timestamp" for a value the
// schema allows is the gateway doing its job.
var invalidParamsRE = regexp.MustCompile(`(?i)params?: (at (root|/)|must have required|unexpected property)|required propert|additional propert|must not have|invalid request frame|^invalid params$`)

// connectParams is the connect request the conformance client sends: a
// device-less local CLI with the shared token.
func connectParams(token string) map[string]any {
	return map[string]any{
		"minProtocol": 4,
		"maxProtocol": 4,
		"client": map[string]any{
			"id": "cli", "version": "0.0.0", "platform": "linux", "mode": "cli",
		},
		"role":   "operator",
		"scopes": []any{"operator.admin", "operator.read", "operator.write"},
		"auth":   map[string]any{"token": token},
	}
}

// frameChecker validates every frame the gateway sends and keeps counts.
type frameChecker struct {
	t           *testing.T
	ps          *protocolSchema
	knownEvents map[string]bool

	frames     map[string]int // "event", "res"
	events     map[string]int // by event name
	payloadDef map[string]int // definition name -> payloads validated against it
	noDef      map[string]bool
	failures   int
}

func newFrameChecker(t *testing.T, ps *protocolSchema, knownEvents map[string]bool) *frameChecker {
	return &frameChecker{
		t: t, ps: ps, knownEvents: knownEvents,
		frames: map[string]int{}, events: map[string]int{}, payloadDef: map[string]int{}, noDef: map[string]bool{},
	}
}

func (fc *frameChecker) fail(format string, args ...any) {
	fc.t.Helper()
	fc.failures++
	if fc.failures <= 60 {
		fc.t.Errorf(format, args...)
	} else if fc.failures == 61 {
		fc.t.Errorf("… more schema failures follow; only the count is reported from now on")
	}
}

// validate checks v against definition name (if the schema has it).
func (fc *frameChecker) validate(what, name string, v any) bool {
	fc.t.Helper()
	s := fc.ps.def(fc.t, name)
	if s == nil {
		fc.noDef[name] = true
		return false
	}
	fc.payloadDef[name]++
	if err := s.Validate(v); err != nil {
		fc.fail("%s does not match #/definitions/%s:\n%s\nvalue: %s", what, name, validationError(err), truncate(compactJSON(v), 1500))
	}
	return true
}

// frame parses one text frame, validates it against the root schema and its
// frame definition, and returns it. Event payloads are validated here too.
func (fc *frameChecker) frame(raw []byte) map[string]any {
	fc.t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		fc.fail("gateway sent a frame that is not JSON: %v: %q", err, truncate(string(raw), 300))
		return nil
	}
	if err := fc.ps.root.Validate(v); err != nil {
		fc.fail("frame does not match the protocol root schema (Request|Response|EventFrame):\n%s\nframe: %s", validationError(err), truncate(string(raw), 1500))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	switch m["type"] {
	case "res":
		fc.frames["res"]++
		fc.validate("res frame", "ResponseFrame", m)
	case "event":
		fc.frames["event"]++
		fc.validate("event frame", "EventFrame", m)
		fc.event(m)
	default:
		fc.frames[fmt.Sprint(m["type"])]++
		fc.fail("gateway sent a frame of type %s: %s", compactJSON(m["type"]), truncate(string(raw), 300))
	}
	return m
}

// event validates an event's name and payload.
func (fc *frameChecker) event(m map[string]any) {
	fc.t.Helper()
	name, _ := m["event"].(string)
	fc.events[name]++
	if !fc.knownEvents[name] {
		fc.fail("gateway sent event %q, which OpenClaw 2026.9.6 does not know", name)
	}
	payload := m["payload"]
	what := "payload of event " + strconv.Quote(name)
	switch name {
	case "connect.challenge":
		// No schema definition; GatewayClient needs a non-empty nonce and,
		// when it signs, an integer ts it copies into device.signedAt.
		if n, _ := dig(payload, "nonce"); !is(n, kString) || n == "" {
			fc.fail("%s: nonce = %s, want a non-empty string", what, compactJSON(n))
		}
		if ts, _ := dig(payload, "ts"); !is(ts, kInt) {
			fc.fail("%s: ts = %s, want integer epoch milliseconds", what, compactJSON(ts))
		}
		if _, hasSeq := m["seq"]; hasSeq {
			fc.fail("connect.challenge carries seq %s; the challenge is not a broadcast", compactJSON(m["seq"]))
		}
	case "presence":
		entries, ok := dig(payload, "presence")
		arr, isArr := entries.([]any)
		if !ok || !isArr {
			fc.fail("%s: want {\"presence\": [PresenceEntry...]}, got %s", what, truncate(compactJSON(payload), 400))
			return
		}
		for i, e := range arr {
			fc.validate(fmt.Sprintf("%s presence[%d]", what, i), "PresenceEntry", e)
		}
	case "talk.event":
		fc.validate(what, "TalkEvent", payload)
	case "health":
		fc.validate(what, healthSummaryPtr, payload)
	default:
		if !fc.validate(what, pascal(name)+"Event", payload) {
			fc.noDef["event "+name] = true
		}
	}
}

// wsSession is one raw WebSocket connection with a completed handshake.
type wsSession struct {
	t     *testing.T
	fc    *frameChecker
	conn  *websocket.Conn
	msgs  chan wsMsg
	hello map[string]any
	seq   int
}

type wsMsg struct {
	typ  int
	data []byte
	err  error
}

var errClosed = errors.New("connection closed")

// dialSession connects to g the way a plain client would (no Origin header,
// Host 127.0.0.1:PORT), reads connect.challenge, sends connect, and reads
// hello-ok. Every frame on the way is validated.
func dialSession(t *testing.T, g *gateway, fc *frameChecker) *wsSession {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Proxy: nil}
	conn, resp, err := d.Dial(g.URL(), http.Header{})
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s: %v %s", g.URL(), err, status)
	}
	s := &wsSession{t: t, fc: fc, conn: conn, msgs: make(chan wsMsg, 256)}
	go s.readLoop()
	t.Cleanup(func() { s.close() })

	// 1. connect.challenge, unprompted and first.
	first, err := s.next(wsReadTimeout)
	if err != nil {
		t.Fatalf("no connect.challenge within %v: %v", wsReadTimeout, err)
	}
	if first["type"] != "event" || first["event"] != "connect.challenge" {
		t.Fatalf("first frame is not the connect.challenge event: %s", truncate(compactJSON(first), 500))
	}

	// 2. connect as a signed device, so the gateway (which gives device-less
	// shared-token sessions at most read and write) grants the admin scope
	// and every advertised method can be called; our own request must be
	// valid too, or the test proves nothing.
	params := connectParams(g.Token)
	if cp, ok := first["payload"].(map[string]any); ok {
		params["device"] = signDevice(t, params, cp)
	}
	req := map[string]any{"type": "req", "id": "connect-1", "method": "connect", "params": params}
	s.checkOwnRequest(req, "ConnectParams")
	if err := conn.WriteJSON(req); err != nil {
		t.Fatalf("send connect: %v", err)
	}
	res, err := s.await("connect-1", wsReadTimeout)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if ok, _ := res["ok"].(bool); !ok {
		t.Fatalf("connect rejected: %s", truncate(compactJSON(res["error"]), 800))
	}
	hello, _ := res["payload"].(map[string]any)
	fc.validate("hello-ok payload", "HelloOk", res["payload"])
	if hello == nil {
		t.Fatalf("hello-ok payload is %s", truncate(compactJSON(res["payload"]), 300))
	}
	s.hello = hello
	return s
}

// checkOwnRequest validates a frame this test is about to send.
func (s *wsSession) checkOwnRequest(req map[string]any, paramsDef string) {
	s.t.Helper()
	v := roundTrip(s.t, req)
	if err := s.fc.ps.def(s.t, "RequestFrame").Validate(v); err != nil {
		s.t.Fatalf("test bug: our request is not a valid RequestFrame: %s", validationError(err))
	}
	if paramsDef != "" {
		if err := s.fc.ps.def(s.t, paramsDef).Validate(v.(map[string]any)["params"]); err != nil {
			s.t.Fatalf("test bug: our %s params are invalid: %s", paramsDef, validationError(err))
		}
	}
}

func (s *wsSession) readLoop() {
	defer close(s.msgs)
	for {
		typ, data, err := s.conn.ReadMessage()
		s.msgs <- wsMsg{typ: typ, data: data, err: err}
		if err != nil {
			return
		}
	}
}

// next returns the next frame (validated), or an error on timeout or close.
func (s *wsSession) next(timeout time.Duration) (map[string]any, error) {
	s.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				return nil, errClosed
			}
			if m.err != nil {
				var ce *websocket.CloseError
				if errors.As(m.err, &ce) {
					return nil, fmt.Errorf("%w: close %d %q", errClosed, ce.Code, ce.Text)
				}
				return nil, fmt.Errorf("%w: %v", errClosed, m.err)
			}
			if m.typ != websocket.TextMessage {
				s.fc.fail("gateway sent a non-text WebSocket message (type %d, %d bytes)", m.typ, len(m.data))
				continue
			}
			if f := s.fc.frame(m.data); f != nil {
				return f, nil
			}
		case <-timer.C:
			return nil, fmt.Errorf("timed out after %v", timeout)
		}
	}
}

// await reads frames until the res with id arrives; events and other
// responses on the way are validated and counted.
func (s *wsSession) await(id string, timeout time.Duration) (map[string]any, error) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("no response to %s within %v", id, timeout)
		}
		f, err := s.next(left)
		if err != nil {
			return nil, err
		}
		if f["type"] == "res" && f["id"] == id {
			return f, nil
		}
	}
}

// call sends one request (params omitted when nil) and waits for its res.
func (s *wsSession) call(method string, params any, withParams bool) (map[string]any, error) {
	s.seq++
	id := fmt.Sprintf("conf-%d", s.seq)
	req := map[string]any{"type": "req", "id": id, "method": method}
	if withParams {
		req["params"] = params
	}
	if err := s.conn.WriteJSON(req); err != nil {
		return nil, fmt.Errorf("%w: send: %v", errClosed, err)
	}
	return s.await(id, wsReadTimeout)
}

func (s *wsSession) close() {
	_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = s.conn.Close()
	for range s.msgs {
	}
}

// roundTrip turns a Go value into what jsonschema validates (json.Number numbers).
func roundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func jsonNumber(n int64) json.Number { return json.Number(strconv.FormatInt(n, 10)) }

// stringList returns the strings in a JSON array.
func stringList(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// TestSchemaConformance connects a raw client to clawgate, calls every
// advertised method it can build params for, and validates every frame it
// receives against @openclaw/gateway-protocol's protocol.schema.json.
func TestSchemaConformance(t *testing.T) {
	t.Parallel()
	schemaPath := requireEnvPath(t, envOpenClawSchema)
	ps := loadProtocolSchema(t, schemaPath)
	knownEvents := readNameList(t, "openclaw-2026.9.6-events.txt")
	realMethods := readNameList(t, "openclaw-2026.9.6-methods.txt")
	g := startGateway(t)
	fc := newFrameChecker(t, ps, knownEvents)

	s := dialSession(t, g, fc)
	hello := s.hello
	methods := stringList(mustDig(t, hello, "features", "methods"))
	events := stringList(mustDig(t, hello, "features", "events"))
	auth, _ := hello["auth"].(map[string]any)
	t.Logf("hello-ok: protocol %s, server %s, %d methods, %d events, auth %s",
		compactJSON(hello["protocol"]), compactJSON(hello["server"]), len(methods), len(events), compactJSON(auth))
	if p, _ := asInt(hello["protocol"]); p != 4 {
		t.Errorf("hello-ok protocol = %s, want 4", compactJSON(hello["protocol"]))
	}

	// Advertised names must be ones OpenClaw knows.
	var notInSchema []string
	for _, m := range methods {
		if _, ok := ps.methods[m]; ok {
			continue
		}
		if realMethods[m] {
			notInSchema = append(notInSchema, m)
			continue
		}
		t.Errorf("advertised method %q is neither in the schema's methods map nor advertised by OpenClaw 2026.9.6", m)
	}
	if len(notInSchema) > 0 {
		t.Logf("advertised methods missing from the schema's methods map but advertised by the real OpenClaw 2026.9.6 gateway: %v", notInSchema)
	}
	for _, e := range events {
		if !knownEvents[e] {
			t.Errorf("advertised event %q is not a known OpenClaw event name", e)
		}
	}

	// `openclaw gateway health` sends its request with no params at all.
	if res, err := s.call("health", nil, false); err != nil {
		t.Errorf("health without params: %v", err)
		s = reconnect(t, g, fc, s)
	} else if ok, _ := res["ok"].(bool); !ok {
		t.Errorf("health without a params field (as `openclaw gateway health` sends it) failed: %s", compactJSON(res["error"]))
	}

	// Walk the advertised methods.
	sy := &synthesizer{ps: ps}
	type skip struct{ method, why string }
	var (
		skipped              []skip
		called, okCount      int
		errCodes             = map[string][]string{}
		resultChecked        = map[string]string{}
		paramsProbed         int
		timeouts, reconnects int
	)
	sorted := append([]string(nil), methods...)
	sort.Strings(sorted)
	for _, method := range sorted {
		if why, bad := destructiveMethods[method]; bad {
			skipped = append(skipped, skip{method, why})
			continue
		}
		paramsDefName := pascal(method) + "Params"
		paramsDef := ps.def(t, paramsDefName)
		var params any
		switch {
		case paramsDef != nil:
			v, ok := sy.value(ps.defs[paramsDefName], 0)
			if !ok {
				skipped = append(skipped, skip{method, "cannot build params for " + paramsDefName})
				continue
			}
			v = roundTrip(t, v)
			if err := paramsDef.Validate(v); err != nil {
				skipped = append(skipped, skip{method, "built params do not satisfy " + paramsDefName})
				continue
			}
			params = v
			paramsProbed++
		case ps.methodScope(method) == "operator.read":
			params = map[string]any{}
		default:
			skipped = append(skipped, skip{method, "no " + paramsDefName + " and not a read method"})
			continue
		}

		called++
		res, err := s.call(method, params, true)
		if err != nil {
			if errors.Is(err, errClosed) {
				t.Errorf("%s %s: gateway closed the connection: %v", method, compactJSON(params), err)
				if reconnects++; reconnects > maxReconnects {
					t.Fatalf("gave up after %d reconnects", maxReconnects)
				}
				s = reconnect(t, g, fc, s)
				continue
			}
			t.Errorf("%s %s: %v (every request must get a response)", method, compactJSON(params), err)
			if timeouts++; timeouts >= maxCallTimeouts {
				t.Errorf("stopping the method walk after %d unanswered requests", timeouts)
				break
			}
			continue
		}
		if ok, _ := res["ok"].(bool); ok {
			okCount++
			resultDef := pascal(method) + "Result"
			switch {
			case fc.validate(fmt.Sprintf("%s result", method), resultDef, res["payload"]):
				resultChecked[method] = resultDef
			case method == "health":
				fc.validate("health result", healthSummaryPtr, res["payload"])
				resultChecked[method] = "HealthSummary (HelloOk snapshot.health)"
			case method == "system-presence":
				arr, isArr := res["payload"].([]any)
				if !isArr {
					fc.fail("system-presence result is %s, want an array of PresenceEntry", truncate(compactJSON(res["payload"]), 300))
				}
				for i, e := range arr {
					fc.validate(fmt.Sprintf("system-presence result[%d]", i), "PresenceEntry", e)
				}
				resultChecked[method] = "PresenceEntry[]"
			}
			continue
		}
		code, _ := dig(res, "error", "code")
		msg, _ := dig(res, "error", "message")
		codeStr := fmt.Sprint(code)
		errCodes[codeStr] = append(errCodes[codeStr], method)
		if paramsDef != nil && codeStr == "INVALID_REQUEST" && invalidParamsRE.MatchString(fmt.Sprint(msg)) {
			t.Errorf("%s: params valid under #/definitions/%s were rejected: %s %q (params %s)",
				method, paramsDefName, codeStr, msg, compactJSON(params))
		}
	}

	// Give broadcasts already in flight a moment to arrive and be validated.
	for {
		if _, err := s.next(300 * time.Millisecond); err != nil {
			break
		}
	}

	// Summary.
	var b strings.Builder
	fmt.Fprintf(&b, "schema %s: %d definitions, %d methods in its methods map\n", schemaPath, len(ps.defs), len(ps.methods))
	fmt.Fprintf(&b, "frames validated: %d res, %d event (root schema + frame definition each); hello-ok against HelloOk\n", fc.frames["res"], fc.frames["event"])
	fmt.Fprintf(&b, "events received: %s\n", compactJSON(fc.events))
	fmt.Fprintf(&b, "payloads validated per definition: %s\n", compactJSON(fc.payloadDef))
	fmt.Fprintf(&b, "methods advertised %d; called %d (ok %d, %d with params built from their Params definition); skipped %d\n",
		len(methods), called, okCount, paramsProbed, len(skipped))
	fmt.Fprintf(&b, "results validated against a definition: %s\n", compactJSON(resultChecked))
	for _, code := range sortedKeys(errCodes) {
		fmt.Fprintf(&b, "error %s from: %s\n", code, strings.Join(errCodes[code], ", "))
	}
	for _, sk := range skipped {
		fmt.Fprintf(&b, "skipped %s: %s\n", sk.method, sk.why)
	}
	var noDefs []string
	for k := range fc.noDef {
		noDefs = append(noDefs, k)
	}
	sort.Strings(noDefs)
	fmt.Fprintf(&b, "no schema definition for: %s\n", strings.Join(noDefs, ", "))
	fmt.Fprintf(&b, "schema failures: %d", fc.failures)
	t.Logf("conformance summary:\n%s", b.String())
}

func reconnect(t *testing.T, g *gateway, fc *frameChecker, old *wsSession) *wsSession {
	t.Helper()
	old.close()
	return dialSession(t, g, fc)
}

func mustDig(t *testing.T, v any, path ...string) any {
	t.Helper()
	x, ok := dig(v, path...)
	if !ok {
		t.Fatalf("hello-ok has no %s", strings.Join(path, "."))
	}
	return x
}

// signDevice returns a device block for params, signed over the v3 payload
// for this challenge with a fresh ed25519 key.
func signDevice(t *testing.T, params map[string]any, challenge map[string]any) map[string]any {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := challenge["nonce"].(string)
	var ts float64
	switch v := challenge["ts"].(type) {
	case float64:
		ts = v
	case json.Number:
		ts, _ = v.Float64()
	}
	client := params["client"].(map[string]any)
	var scopes []string
	for _, s := range params["scopes"].([]any) {
		scopes = append(scopes, s.(string))
	}
	id := authn.DeviceID(pub)
	payload := authn.BuildPayloadV3(authn.PayloadFields{
		DeviceID: id, ClientID: client["id"].(string), ClientMode: client["mode"].(string),
		Role: params["role"].(string), Scopes: scopes, SignedAtMs: int64(ts),
		Token: params["auth"].(map[string]any)["token"].(string), Nonce: nonce,
		Platform: client["platform"].(string),
	})
	return map[string]any{"id": id, "publicKey": authn.EncodePublicKey(pub),
		"signature": authn.SignPayload(priv, payload), "signedAt": int64(ts), "nonce": nonce}
}
