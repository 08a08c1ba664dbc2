package compat

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
)

// gcStep is one line that testdata/gatewayclient.mjs prints.
type gcStep map[string]any

// runGatewayClientScript runs testdata/gatewayclient.mjs against g and
// returns its steps by name (the last one wins when a name repeats).
func runGatewayClientScript(t *testing.T, oc *openclaw, g *gateway, options string) (cliResult, map[string]gcStep) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "gatewayclient.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{script, oc.Dir, g.URL(), g.Token}
	if options != "" {
		args = append(args, options)
	}
	res := oc.runNode(t, args...)
	steps := map[string]gcStep{}
	sc := bufio.NewScanner(bytes.NewReader(res.Stdout))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var s gcStep
		if err := dec.Decode(&s); err != nil {
			t.Errorf("gatewayclient.mjs printed a bad JSON line %q: %v", truncate(string(line), 200), err)
			continue
		}
		name, _ := s["step"].(string)
		steps[name] = s
		t.Logf("gatewayclient.mjs: %s", truncate(string(line), 2000))
	}
	return res, steps
}

// TestGatewayClientSignedOperator drives OpenClaw's own GatewayClient with
// its defaults: a signed device identity plus the shared token, client
// gateway-client / mode backend, role operator, scopes ["operator.admin"];
// then health; then a second connect with no shared token, which must reuse
// the device token the first hello-ok issued, if it issued one. (The real
// gateway skips pairing for a local gateway-client/backend on shared auth,
// so it need not issue one here.)
func TestGatewayClientSignedOperator(t *testing.T) {
	t.Parallel()
	checkGatewayClient(t, "", false)
}

// TestGatewayClientSignedCLIDeviceToken repeats what the capture in
// official-gatewayclient-signed-1.jsonl did: GatewayClient as client cli /
// mode cli with scopes ["operator.read"], signed, shared token. The real
// gateway silently pairs that local device and returns a device token in
// hello-ok.auth; the second connect, with no shared token, must then
// authenticate with the stored device token alone.
func TestGatewayClientSignedCLIDeviceToken(t *testing.T) {
	t.Parallel()
	checkGatewayClient(t, `{"clientName":"cli","mode":"cli","scopes":["operator.read"]}`, true)
}

func checkGatewayClient(t *testing.T, options string, wantDeviceToken bool) {
	t.Helper()
	oc := newOpenClaw(t)
	g := startGateway(t)

	res, steps := runGatewayClientScript(t, oc, g, options)

	if _, ok := steps["module"]; !ok {
		t.Fatalf("gatewayclient.mjs could not load GatewayClient from %s", oc.Dir)
	}
	if sent, ok := steps["connect1.sent"]; ok {
		if _, signed := dig(map[string]any(sent), "params", "device", "signature"); !signed {
			t.Errorf("GatewayClient's first connect carried no signed device block: %s", compactJSON(sent))
		}
	}
	if e, failed := steps["connect1.error"]; failed {
		t.Fatalf("GatewayClient connect with the shared token failed: %s", compactJSON(e["error"]))
	}
	hello, ok := steps["connect1.hello"]
	if !ok {
		t.Fatalf("GatewayClient never received hello-ok (exit %d)", res.Code)
	}
	auth, _ := hello["auth"].(map[string]any)
	if auth == nil {
		t.Errorf("hello-ok has no auth object (required in protocol v4; OpenClaw's probe and chat clients dereference it)")
	} else {
		if auth["role"] != "operator" {
			t.Errorf("hello-ok auth.role = %s, want \"operator\"", compactJSON(auth["role"]))
		}
		if !is(auth["scopes"], kArray) {
			t.Errorf("hello-ok auth.scopes = %s, want an array", compactJSON(auth["scopes"]))
		}
	}

	if e, failed := steps["connect1.health.error"]; failed {
		t.Fatalf("health over GatewayClient failed: %s", compactJSON(e["error"]))
	}
	hs, ok := steps["connect1.health"]
	if !ok {
		t.Fatalf("GatewayClient printed no health result")
	}
	h := asObject(t, "health result", hs["result"])
	if ok, _ := h["ok"].(bool); !ok {
		t.Errorf("health result ok = %s, want true", compactJSON(h["ok"]))
	}
	checkRecentMillis(t, "health result ts", h["ts"])

	// Second connection: only meaningful when a device token was issued.
	issued, _ := hello["hasDeviceToken"].(bool)
	used := steps["connect2.usedStoredDeviceToken"]
	switch {
	case !issued && wantDeviceToken:
		t.Errorf("hello-ok.auth has no deviceToken; the real gateway issues one to a locally paired signed cli device (official-gatewayclient-signed-1.jsonl)")
	case !issued:
		t.Logf("hello-ok issued no device token; second connect (no shared token) result: %s / %s",
			compactJSON(used), compactJSON(steps["connect2.error"]))
	default:
		if u, _ := used["used"].(bool); !u {
			t.Errorf("second connect did not send the stored device token: %s", compactJSON(used))
		}
		if e, failed := steps["connect2.error"]; failed {
			t.Errorf("second connect with the stored device token (no shared token) failed: %s", compactJSON(e["error"]))
		} else if _, ok := steps["connect2.hello"]; !ok {
			t.Errorf("second connect got no hello-ok")
		}
	}

	done, ok := steps["done"]
	if !ok {
		t.Fatalf("gatewayclient.mjs did not finish (exit %d)", res.Code)
	}
	if d, _ := done["ok"].(bool); !d || res.Code != 0 {
		t.Errorf("gatewayclient.mjs reported failure: done=%s exit=%d", compactJSON(done), res.Code)
	}
}
