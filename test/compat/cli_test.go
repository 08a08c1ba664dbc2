package compat

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Reference shapes, taken from what the real OpenClaw 2026.9.6 gateway made
// the CLI print (shared/reference/openclaw-transcripts/cli-output/*.out).
var (
	healthShape = shape{
		required: []string{"ok", "ts"},
		fields: map[string]kind{
			"ok": kBool, "ts": kInt, "durationMs": kNumber,
			"plugins": kObject, "configReload": kObject,
			"channels": kObject, "channelOrder": kArray, "channelLabels": kObject,
			"heartbeatSeconds": kInt, "defaultAgentId": kString,
			"agents": kArray, "sessions": kObject,
			"modelRuntime": kObject, "eventLoop": kObject,
		},
	}
	statusShape = shape{
		fields: map[string]kind{
			"runtimeVersion": kString, "hostDesktop": kObject, "heartbeat": kObject,
			"channelSummary": kArray, "queuedSystemEvents": kArray,
			"degradedSecretOwners": kArray, "degradedPlugins": kArray,
			"tasks": kObject, "taskAudit": kObject, "sessions": kObject,
			"modelRuntime": kObject, "eventLoop": kObject, "processMemory": kObject,
			"workerPools": kObject, "pid": kInt, "shutdownBudget": kObject,
		},
		nullable: map[string]bool{"runtimeVersion": true},
	}
	presenceEntryShape = shape{
		required: []string{"ts"},
		fields: map[string]kind{
			"host": kString, "ip": kString, "version": kString, "platform": kString,
			"deviceFamily": kString, "mode": kString, "reason": kString,
			"instanceId": kString, "text": kString, "ts": kInt,
		},
	}
	cliErrorShape = shape{
		required: []string{"ok", "error"},
		fields:   map[string]kind{"ok": kBool, "error": kObject},
	}
	cliErrorBodyShape = shape{
		required: []string{"code", "message", "details"},
		fields: map[string]kind{
			"type": kString, "code": kString, "message": kString,
			"details": kObject, "retryable": kBool,
		},
	}
)

// cliCall runs `openclaw gateway call METHOD --url URL --token TOKEN --json`.
func cliCall(t *testing.T, oc *openclaw, g *gateway, method, token string) cliResult {
	t.Helper()
	return oc.CLI(t, "gateway", "call", method, "--url", g.URL(), "--token", token, "--json")
}

func requireExit(t *testing.T, res cliResult, want int) {
	t.Helper()
	if res.Code != want {
		t.Fatalf("%s: exit code %d, want %d (err %v)", strings.Join(res.Args, " "), res.Code, want, res.Err)
	}
}

func requireJSON(t *testing.T, res cliResult) any {
	t.Helper()
	v, err := parseCLIJSON(res.Stdout)
	if err != nil {
		t.Fatalf("stdout is not the JSON the CLI prints with --json: %v", err)
	}
	return v
}

func TestCLIGatewayCallHealth(t *testing.T) {
	t.Parallel()
	oc := newOpenClaw(t)
	g := startGateway(t)

	res := cliCall(t, oc, g, "health", g.Token)
	requireExit(t, res, 0)
	h := asObject(t, "health result", requireJSON(t, res))
	if ok, _ := h["ok"].(bool); !ok {
		t.Errorf("health result ok = %s, want true", compactJSON(h["ok"]))
	}
	checkRecentMillis(t, "health result ts", h["ts"])
	healthShape.check(t, "health result", h)
}

func TestCLIGatewayCallStatus(t *testing.T) {
	t.Parallel()
	oc := newOpenClaw(t)
	g := startGateway(t)

	res := cliCall(t, oc, g, "status", g.Token)
	requireExit(t, res, 0)
	st := asObject(t, "status result", requireJSON(t, res))
	statusShape.check(t, "status result", st)
}

func TestCLIGatewayCallSystemPresence(t *testing.T) {
	t.Parallel()
	oc := newOpenClaw(t)
	g := startGateway(t)

	res := cliCall(t, oc, g, "system-presence", g.Token)
	requireExit(t, res, 0)
	entries := asArray(t, "system-presence result", requireJSON(t, res))
	if len(entries) == 0 {
		t.Fatal("system-presence returned an empty array; want at least the gateway's own entry")
	}
	self := 0
	for i, e := range entries {
		what := "system-presence[" + strconv.Itoa(i) + "]"
		m := asObject(t, what, e)
		if _, ok := asInt(m["ts"]); !ok {
			t.Errorf("%s: ts = %s, want an integer", what, compactJSON(m["ts"]))
		}
		presenceEntryShape.check(t, what, m)
		if m["mode"] == "gateway" && m["reason"] == "self" {
			self++
			checkRecentMillis(t, what+".ts", m["ts"])
		}
	}
	if self != 1 {
		t.Errorf("system-presence has %d entries with mode \"gateway\" and reason \"self\", want exactly 1: %s", self, truncate(compactJSON(entries), 600))
	}
}

func TestCLIGatewayHealth(t *testing.T) {
	t.Parallel()
	oc := newOpenClaw(t)
	g := startGateway(t)

	res := oc.CLI(t, "gateway", "health", "--url", g.URL(), "--token", g.Token, "--json")
	requireExit(t, res, 0)
	h := asObject(t, "gateway health", requireJSON(t, res))
	if ok, _ := h["ok"].(bool); !ok {
		t.Errorf("gateway health ok = %s, want true", compactJSON(h["ok"]))
	}
	checkRecentMillis(t, "gateway health ts", h["ts"])
	healthShape.check(t, "gateway health", h)
}

func TestCLIGatewayCallWrongToken(t *testing.T) {
	t.Parallel()
	oc := newOpenClaw(t)
	g := startGateway(t)

	res := cliCall(t, oc, g, "health", "wrong-"+g.Token)
	requireExit(t, res, 1)
	out := asObject(t, "wrong-token output", requireJSON(t, res))
	cliErrorShape.check(t, "wrong-token output", out)
	if ok, present := out["ok"].(bool); !present || ok {
		t.Errorf("wrong-token output ok = %s, want false", compactJSON(out["ok"]))
	}
	errObj, _ := out["error"].(map[string]any)
	cliErrorBodyShape.check(t, "wrong-token output error", errObj)
	if code, _ := dig(out, "error", "details", "code"); code != "AUTH_TOKEN_MISMATCH" {
		t.Errorf("error.details.code = %s, want \"AUTH_TOKEN_MISMATCH\"; error = %s", compactJSON(code), compactJSON(errObj))
	}
	if code, _ := dig(out, "error", "code"); code != "INVALID_REQUEST" {
		t.Errorf("error.code = %s, want \"INVALID_REQUEST\" (what the real gateway sends)", compactJSON(code))
	}
	// The recovery hints steer the client's retry logic; when present they
	// must say what the real gateway says for a wrong shared token.
	for field, want := range map[string]any{
		"authReason":              "token_mismatch",
		"canRetryWithDeviceToken": false,
		"recommendedNextStep":     "update_auth_credentials",
	} {
		got, ok := dig(out, "error", "details", field)
		if !ok {
			t.Logf("error.details.%s absent (the real gateway sends %s)", field, compactJSON(want))
			continue
		}
		if got != want {
			t.Errorf("error.details.%s = %s, want %s", field, compactJSON(got), compactJSON(want))
		}
	}

	// A wrong token from loopback must not take the gateway down.
	if ok, err := checkHealthz(loopbackHTTPClient(2*time.Second), g.HTTPURL()); !ok {
		t.Errorf("after the wrong-token attempt /healthz is not live: %v", err)
	}
}
