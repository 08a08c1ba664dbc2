package compat

import (
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// minimalHelloOk is the smallest hello-ok the schema accepts; it doubles as
// documentation of what a v4 gateway must send.
const minimalHelloOk = `{"type":"hello-ok","protocol":4,
 "server":{"version":"0.1.0","connId":"c0nn"},
 "features":{"methods":["health"],"events":["tick"]},
 "snapshot":{"presence":[{"ts":1,"mode":"gateway","reason":"self"}],"health":{},
   "stateVersion":{"presence":1,"health":1},"uptimeMs":5},
 "auth":{"role":"operator","scopes":["operator.read"]},
 "policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000}}`

// TestSchemaValidatorSelfCheck proves the validation machinery used by
// TestSchemaConformance: the schema and all its definitions compile with
// the ECMA regexp engine, known-good frames pass and known-bad ones fail.
// It needs only CLAWGATE_OPENCLAW_SCHEMA, not a gateway.
func TestSchemaValidatorSelfCheck(t *testing.T) {
	t.Parallel()
	ps := loadProtocolSchema(t, requireEnvPath(t, envOpenClawSchema))
	if n := len(ps.defs); n < 100 {
		t.Errorf("schema has only %d definitions", n)
	}
	for _, name := range sortedKeys(ps.defs) {
		ps.def(t, name) // fails the test if any definition does not compile
	}
	for _, m := range []string{"health", "status", "system-presence", "device.pair.list"} {
		if _, ok := ps.methods[m]; !ok {
			t.Errorf("schema methods map lacks %q", m)
		}
	}

	cases := []struct {
		name, def, doc string
		valid          bool
	}{
		// Frames captured from the real gateway (shared/reference/openclaw-transcripts).
		{"real challenge", "", `{"type":"event","event":"connect.challenge","payload":{"nonce":"b6ed5119-ac02-4775-897d-0cd5f76906af","ts":1795733453686,"capabilities":["model-catalog-snapshot"]}}`, true},
		{"real wrong-token res", "", `{"type":"res","id":"1:db12dd12-f577-4cf7-9a21-bf73044225c3","ok":false,"error":{"code":"INVALID_REQUEST","message":"unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)","details":{"code":"AUTH_TOKEN_MISMATCH","authReason":"token_mismatch","canRetryWithDeviceToken":false,"recommendedNextStep":"update_auth_credentials"}}}`, true},
		{"real presence entry", "PresenceEntry", `{"host":"vm","ip":"vm","version":"2026.9.6","platform":"linux 6.18.44-fc-v782","deviceFamily":"Linux","mode":"gateway","reason":"self","instanceId":"9406d265-28f9-44ff-84db-d61e2d604148","text":"Gateway: vm (vm) · app 2026.9.6 · mode gateway · reason self","ts":1795733473446}`, true},
		{"real node connect params", "ConnectParams", `{"minProtocol":4,"maxProtocol":4,"client":{"id":"node-host","displayName":"probe-node","version":"2026.9.6","platform":"linux","deviceFamily":"Linux","mode":"node","instanceId":"adec7c61-4939-4711-bd32-b129e71421d5"},"caps":["browser","file","local-inference","mcp","system"],"commands":["system.run","system.which"],"pathEnv":"/usr/bin:/bin","auth":{"token":"T"},"role":"node","scopes":[],"device":{"id":"de9be9acd41e009d0cac6c2e84dfa992025510e5825fc111a7219521eb06714e","publicKey":"_KQDjBU0Hljgvy3NuQp4Yn49lURQz8K8q2tQ7zjNGyc","signature":"pC4tjR1eu1xI5AJUDYecTRh-WEZzjiLou3429ChudroO_JKQR6Li95otQJsS8gUCHDBN-Z6tLfu_T4Xys1wdCw","signedAt":1795733862961,"nonce":"f649b36e-63ba-47cc-ac93-b72de0d1c2a7"}}`, true},
		{"minimal hello-ok", "HelloOk", minimalHelloOk, true},
		{"minimal hello-ok as res frame", "", `{"type":"res","id":"x","ok":true,"payload":` + minimalHelloOk + `}`, true},
		{"tick", "TickEvent", `{"ts":1795733453686}`, true},
		{"shutdown", "ShutdownEvent", `{"reason":"gateway stopping","restartExpectedMs":0}`, true},
		{"tick event frame with seq", "", `{"type":"event","event":"tick","payload":{"ts":1},"seq":3}`, true},
		{"health req without params", "", `{"type":"req","id":"2","method":"health"}`, true},
		{"empty health summary", healthSummaryPtr, `{}`, true},
		{"health summary", healthSummaryPtr, `{"ok":true,"ts":1795733454299,"durationMs":3,"channels":{},"channelOrder":[],"channelLabels":{},"heartbeatSeconds":1800,"defaultAgentId":"main","agents":[],"sessions":{"path":"/x","count":0,"recent":[]}}`, true},
		{"health summary with ok:false", healthSummaryPtr, `{"ok":false}`, false},

		// What must fail.
		{"hello-ok without auth", "HelloOk", strings.Replace(minimalHelloOk, `"auth":{"role":"operator","scopes":["operator.read"]},`, "", 1), false},
		// The real 2026.9.6 gateway sends auth.method; the 2026.9.1 schema forbids it.
		{"hello-ok with auth.method", "HelloOk", strings.Replace(minimalHelloOk, `"auth":{`, `"auth":{"method":"token",`, 1), false},
		{"tick with extra field", "TickEvent", `{"ts":1,"x":1}`, false},
		{"res without ok", "", `{"type":"res","id":"1"}`, false},
		{"unknown frame type", "", `{"type":"hello","id":"1"}`, false},
		{"negative seq", "", `{"type":"event","event":"tick","seq":-1}`, false},
		{"error without message", "ResponseFrame", `{"type":"res","id":"1","ok":false,"error":{"code":"X"}}`, false},
	}
	for _, c := range cases {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(c.doc))
		if err != nil {
			t.Fatalf("%s: bad test JSON: %v", c.name, err)
		}
		sch := ps.root
		if c.def != "" {
			if sch = ps.def(t, c.def); sch == nil {
				t.Errorf("%s: schema has no definition %s", c.name, c.def)
				continue
			}
		}
		err = sch.Validate(v)
		if c.valid && err != nil {
			t.Errorf("%s: want valid, got:\n%s", c.name, validationError(err))
		}
		if !c.valid && err == nil {
			t.Errorf("%s: want a validation failure, got none", c.name)
		}
	}

	// The params synthesizer must produce valid params for common methods.
	sy := &synthesizer{ps: ps}
	for _, def := range []string{"DevicePairListParams", "DevicePairApproveParams", "NodeListParams", "LogsTailParams", "SendParams", "ChatHistoryParams", "AgentWaitParams"} {
		if ps.def(t, def) == nil {
			t.Errorf("schema has no %s", def)
			continue
		}
		v, ok := sy.value(ps.defs[def], 0)
		if !ok {
			t.Errorf("cannot synthesize %s", def)
			continue
		}
		if err := ps.def(t, def).Validate(roundTrip(t, v)); err != nil {
			t.Errorf("synthesized %s %s is invalid:\n%s", def, compactJSON(v), validationError(err))
		}
	}
}
