package gateway

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/client"
)

// transcriptLine is one line of a capture from the real OpenClaw gateway.
type transcriptLine struct {
	Dir              string          `json:"dir"`
	Frame            json.RawMessage `json:"frame"`
	Raw              *string         `json:"raw"`
	Note             string          `json:"note"`
	Bytes            int             `json:"bytes"`
	SignaturePayload string          `json:"signaturePayload"`
	Code             int             `json:"code"`
	Reason           string          `json:"reason"`
}

type transcript struct {
	name      string
	challenge struct {
		nonce string
		ts    int64
	}
	sigPayload  string
	send        []transcriptLine // what the prober sent, in order
	response    map[string]any   // the res frame answering the connect, if any
	closeCode   int
	closeReason string
}

func loadTranscript(t *testing.T, path string) *transcript {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := &transcript{name: strings.TrimSuffix(filepath.Base(path), ".jsonl")}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l transcriptLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var fr map[string]any
		if len(l.Frame) > 0 {
			_ = json.Unmarshal(l.Frame, &fr)
		}
		switch {
		case l.Dir == "recv" && fr["event"] == "connect.challenge":
			p := fr["payload"].(map[string]any)
			tr.challenge.nonce = p["nonce"].(string)
			tr.challenge.ts = int64(p["ts"].(float64))
		case l.Dir == "recv" && fr["type"] == "res" && tr.response == nil:
			tr.response = fr
		case l.Dir == "send", l.Dir == "note" && (l.Note == "sending binary frame" || l.Note == "sending oversized frame"):
			tr.send = append(tr.send, l)
		case l.Dir == "note" && l.SignaturePayload != "":
			tr.sigPayload = l.SignaturePayload
		case l.Dir == "close" && tr.closeCode == 0:
			tr.closeCode, tr.closeReason = l.Code, l.Reason
		}
	}
	return tr
}

// adapt rewrites a captured connect for this run: our device key, our
// challenge, our token; deliberate faults in the capture (wrong nonce,
// foreign device id, stale signedAt, bad signature) are kept.
func (tr *transcript) adapt(t *testing.T, raw json.RawMessage, id *client.Identity, nonce string, ts int64) []byte {
	t.Helper()
	var fr map[string]any
	if err := json.Unmarshal(raw, &fr); err != nil {
		t.Fatal(err)
	}
	params, _ := fr["params"].(map[string]any)
	if auth, ok := params["auth"].(map[string]any); ok && auth["token"] == "<TOKEN>" {
		auth["token"] = testToken
	}
	dev, ok := params["device"].(map[string]any)
	if !ok {
		b, _ := json.Marshal(fr)
		return b
	}
	origID := strings.Split(tr.sigPayload, "|")[1]
	mapNonce := func(n string) string {
		if n == tr.challenge.nonce {
			return nonce
		}
		return n
	}
	signedAt := ts + (int64(dev["signedAt"].(float64)) - tr.challenge.ts)
	dev["signedAt"] = signedAt
	dev["nonce"] = mapNonce(dev["nonce"].(string))
	if dev["id"] == origID {
		dev["id"] = id.DeviceID
	}
	dev["publicKey"] = id.PublicKey()
	// Rebuild the payload the prober signed, field by field.
	parts := strings.Split(tr.sigPayload, "|")
	parts[1] = id.DeviceID
	parts[6] = strconv.FormatInt(signedAt, 10)
	if parts[7] == "<TOKEN>" {
		parts[7] = testToken
	}
	parts[8] = mapNonce(parts[8])
	sig := authn.SignPayload(id.Private, strings.Join(parts, "|"))
	if strings.Contains(tr.name, "bad-signature") {
		sig = authn.SignPayload(id.Private, "not the payload")
	}
	dev["signature"] = sig
	b, _ := json.Marshal(fr)
	return b
}

// TestTranscriptReplay replays every negative case captured from the real
// OpenClaw gateway and requires the same response frame and close code.
func TestTranscriptReplay(t *testing.T) {
	files, _ := filepath.Glob("testdata/neg-*.jsonl")
	if len(files) < 15 {
		t.Fatalf("expected the 15+ captured negative cases, found %d", len(files))
	}
	g := startGateway(t, func(o *Options) { o.HandshakeTimeout = 500 * time.Millisecond })
	for _, path := range files {
		tr := loadTranscript(t, path)
		t.Run(tr.name, func(t *testing.T) {
			if tr.closeCode == 0 && tr.response == nil {
				t.Fatalf("transcript has neither a close nor a response")
			}
			id, _ := client.NewIdentity()
			rc := g.dialRaw(t, nil)
			nonce, ts := rc.challenge()
			first := tr.send
			if len(first) > 1 {
				first = first[:1] // only the first frame matters before the handshake
			}
			for _, l := range first {
				switch {
				case l.Note == "sending binary frame":
					_ = rc.ws.WriteMessage(websocket.BinaryMessage, make([]byte, l.Bytes))
				case l.Note == "sending oversized frame":
					_ = rc.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"req","id":"x","method":"connect","params":{"pad":"`+strings.Repeat("a", l.Bytes)+`"}}`))
				case l.Raw != nil:
					_ = rc.ws.WriteMessage(websocket.TextMessage, []byte(*l.Raw))
				default:
					_ = rc.ws.WriteMessage(websocket.TextMessage, tr.adapt(t, l.Frame, id, nonce, ts))
				}
			}
			if tr.response != nil && tr.response["ok"] == true {
				f := rc.frame()
				if f["ok"] != true {
					t.Fatalf("want hello-ok, got %v", f)
				}
				return
			}
			code, reason, frames := rc.closeCode(3 * time.Second)
			if tr.response != nil {
				if len(frames) != 1 {
					t.Fatalf("want exactly the error response before close, got %v", frames)
				}
				want, got := tr.response["error"], frames[0]["error"]
				if !reflect.DeepEqual(want, got) {
					wj, _ := json.Marshal(want)
					gj, _ := json.Marshal(got)
					t.Errorf("error mismatch\n want %s\n  got %s", wj, gj)
				}
				if frames[0]["id"] != tr.response["id"] {
					t.Errorf("response id = %v, want %v", frames[0]["id"], tr.response["id"])
				}
			} else if len(frames) != 0 {
				t.Errorf("want no response frame, got %v", frames)
			}
			if code != tr.closeCode || reason != tr.closeReason {
				t.Errorf("close = %d %q, want %d %q", code, reason, tr.closeCode, tr.closeReason)
			}
		})
	}
}
