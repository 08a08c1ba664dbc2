package compat

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startTLSGateway starts `clawgate gateway --tls` (managed self-signed
// certificate) like startGateway, and waits until the TLS port completes
// a handshake.
func startTLSGateway(t *testing.T) *gateway {
	t.Helper()
	bin := requireBinary(t)
	g := &gateway{Port: freePort(t), Token: randomToken(t), StateDir: t.TempDir(), out: &syncBuffer{}, done: make(chan struct{})}
	if err := os.Chmod(g.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "gateway", "--tls", "--port", strconv.Itoa(g.Port), "--token", g.Token)
	cmd.Env = append(filteredEnv("OPENCLAW_GATEWAY_TOKEN", "CLAWGATE_STATE_DIR"), "CLAWGATE_STATE_DIR="+g.StateDir,
		"CLAWGATE_HANDSHAKE_TIMEOUT_MS=60000") // as startGateway: starved Node clients are slow to send connect
	cmd.Stdout, cmd.Stderr = g.out, g.out
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	g.cmd = cmd
	go func() { g.err = cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		g.stop(t)
		if t.Failed() {
			t.Logf("clawgate (port %d) output:\n%s", g.Port, indent(g.Output()))
		}
	})
	deadline := time.Now().Add(gatewayReadyTimeout)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", "127.0.0.1:"+strconv.Itoa(g.Port), pinnedToFile(g))
		if err == nil {
			c.Close()
			return g
		}
		select {
		case <-g.done:
			t.Fatalf("clawgate --tls exited: %v\n%s", g.err, g.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("clawgate --tls not ready: %v\n%s", err, g.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pinnedToFile is a readiness-probe TLS config that accepts exactly the
// certificate in the gateway's state dir (once it exists).
func pinnedToFile(g *gateway) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the exact-certificate check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			raw, err := os.ReadFile(filepath.Join(g.StateDir, "tls", "gateway.crt"))
			if err != nil {
				return err
			}
			b, _ := pem.Decode(raw)
			if b == nil || len(cs.PeerCertificates) == 0 || !bytes.Equal(b.Bytes, cs.PeerCertificates[0].Raw) {
				return errors.New("not the state dir's certificate")
			}
			return nil
		},
	}
}

// tlsFingerprint asks the real CLI for the certificate fingerprint OpenClaw
// pins (hex SHA-256 of the leaf DER) and checks it against the file.
func tlsFingerprint(t *testing.T, g *gateway) string {
	t.Helper()
	cmd := exec.Command(requireBinary(t), "tls", "fingerprint", "--json", "--state-dir", g.StateDir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("clawgate tls fingerprint: %v", err)
	}
	var f struct {
		TLSFingerprint string `json:"tlsFingerprint"`
	}
	if err := json.Unmarshal(out, &f); err != nil || len(f.TLSFingerprint) != 64 {
		t.Fatalf("clawgate tls fingerprint --json: %s", out)
	}
	raw, err := os.ReadFile(filepath.Join(g.StateDir, "tls", "gateway.crt"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	sum := sha256.Sum256(b.Bytes)
	if hex.EncodeToString(sum[:]) != f.TLSFingerprint {
		t.Fatalf("printed fingerprint %s is not SHA-256 of the certificate", f.TLSFingerprint)
	}
	return f.TLSFingerprint
}

// runGatewayClientAt runs testdata/gatewayclient.mjs against url.
func runGatewayClientAt(t *testing.T, oc *openclaw, url, token, options string) (cliResult, map[string]gcStep) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "gatewayclient.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	res := oc.runNode(t, script, oc.Dir, url, token, options)
	steps := map[string]gcStep{}
	sc := bufio.NewScanner(bytes.NewReader(res.Stdout))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var s gcStep
		if err := json.Unmarshal(line, &s); err != nil {
			t.Errorf("gatewayclient.mjs printed a bad JSON line %q: %v", truncate(string(line), 200), err)
			continue
		}
		name, _ := s["step"].(string)
		steps[name] = s
		t.Logf("gatewayclient.mjs: %s", truncate(string(line), 600))
	}
	return res, steps
}

// TestGatewayClientTLSFingerprint: OpenClaw's own GatewayClient connects
// to `clawgate gateway --tls` over wss:// with tlsFingerprint set to the
// certificate fingerprint `clawgate tls fingerprint` prints (in the colon
// form Node prints too), calls health and reconnects with its device
// token; with a wrong fingerprint it never gets a hello-ok and the gateway
// sees no WebSocket connection at all.
func TestGatewayClientTLSFingerprint(t *testing.T) {
	t.Parallel()
	oc := newOpenClaw(t)
	g := startTLSGateway(t)
	fp := tlsFingerprint(t, g)
	url := "wss://127.0.0.1:" + strconv.Itoa(g.Port)

	// Wrong pin first, on a gateway nobody has connected to yet.
	wrong := strings.Repeat("0f", 32)
	res, steps := runGatewayClientAt(t, oc, url, g.Token, `{"tlsFingerprint":"`+wrong+`"}`)
	if _, ok := steps["connect1.hello"]; ok {
		t.Fatalf("GatewayClient with a wrong tlsFingerprint got hello-ok")
	}
	e, failed := steps["connect1.error"]
	if !failed {
		t.Fatalf("GatewayClient with a wrong tlsFingerprint reported no connect error (exit %d)", res.Code)
	}
	if msg := compactJSON(e["error"]); !strings.Contains(strings.ToLower(msg), "fingerprint") {
		t.Errorf("wrong-pin error does not name the fingerprint: %s", msg)
	}
	if _, sent := steps["connect1.sent"]; sent {
		t.Errorf("GatewayClient sent a connect frame to a gateway whose certificate did not match")
	}
	if strings.Contains(g.Output(), "msg=connected") {
		t.Errorf("the gateway saw a connection from the client whose pin failed:\n%s", g.Output())
	}

	// The right pin, in Node's upper-case colon form with the prefix.
	var colon []string
	for i := 0; i < len(fp); i += 2 {
		colon = append(colon, strings.ToUpper(fp[i:i+2]))
	}
	for _, pin := range []string{fp, "sha256:" + strings.Join(colon, ":")} {
		res, steps = runGatewayClientAt(t, oc, url, g.Token, `{"tlsFingerprint":"`+pin+`"}`)
		if e, failed := steps["connect1.error"]; failed {
			t.Fatalf("GatewayClient over wss:// with tlsFingerprint %s failed: %s", pin, compactJSON(e["error"]))
		}
		if _, ok := steps["connect1.hello"]; !ok {
			t.Fatalf("GatewayClient over wss:// got no hello-ok (exit %d)", res.Code)
		}
		hs, ok := steps["connect1.health"]
		if !ok {
			t.Fatalf("no health result over wss://")
		}
		if h := asObject(t, "health result", hs["result"]); h["ok"] != true {
			t.Errorf("health over wss:// = %s", compactJSON(h))
		}
		if d, _ := steps["done"]["ok"].(bool); !d || res.Code != 0 {
			t.Errorf("gatewayclient.mjs over wss:// reported failure: %s (exit %d)", compactJSON(steps["done"]), res.Code)
		}
	}
	if !strings.Contains(g.Output(), "msg=connected") {
		t.Errorf("the gateway logged no connection from the pinned client:\n%s", g.Output())
	}
}
