package protocol

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// transcriptFrames returns every client-sent frame in the captured
// transcripts (the seeds for the fuzzers).
func transcriptFrames(f testing.TB) [][]byte {
	f.Helper()
	files, _ := filepath.Glob("../gateway/testdata/neg-*.jsonl")
	var out [][]byte
	for _, path := range files {
		fh, err := os.Open(path)
		if err != nil {
			f.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l struct {
				Dir   string          `json:"dir"`
				Frame json.RawMessage `json:"frame"`
				Raw   *string         `json:"raw"`
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil || l.Dir != "send" {
				continue
			}
			if l.Raw != nil {
				out = append(out, []byte(*l.Raw))
			} else {
				out = append(out, l.Frame)
			}
		}
		fh.Close()
	}
	return out
}

// FuzzParseStrict: the strict parser never panics, whatever it accepts
// encoding/json accepts too, with the same value, and interning (after
// LoadContract) changes nothing in the result.
func FuzzParseStrict(f *testing.F) {
	if _, err := LoadContract(); err != nil {
		f.Fatal(err)
	}
	for _, s := range transcriptFrames(f) {
		f.Add(s)
	}
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`{"a":1,"A":2}`))
	f.Add([]byte(`[[[[[[[[[[]]]]]]]]]]`))
	f.Add([]byte(`{"n":1e999}`))
	f.Add([]byte(`{"type":"req","method":"connect","id":"1","params":{"minProtocol":4,"maxProtocol":3,"x":"4","y":-0,"z":[16,17,"16"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseStrict(data)
		plain, perr := parseStrict(data, nil)
		if (err == nil) != (perr == nil) || err != nil && err.Error() != perr.Error() || !reflect.DeepEqual(v, plain) {
			t.Fatalf("interning changed the result for %q: %#v, %v; without: %#v, %v", data, v, err, plain, perr)
		}
		if err != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var std any
		if err := dec.Decode(&std); err != nil {
			t.Fatalf("ParseStrict accepted what encoding/json rejects: %q: %v", data, err)
		}
		if a, b := mustMarshal(v), mustMarshal(std); string(a) != string(b) {
			t.Fatalf("values differ for %q: %s vs %s", data, a, b)
		}
	})
}

func mustMarshal(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// FuzzConnectFrame runs the gateway's first-frame validation: strict
// parse, request-frame schema, connect-params schema, typed decode. It
// must never panic, and anything the schema accepts must decode into
// ConnectParams.
func FuzzConnectFrame(f *testing.F) {
	c, err := LoadContract()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range transcriptFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseStrict(data)
		if err != nil {
			return
		}
		if c.Validate("RequestFrame", v) != nil {
			return
		}
		obj := v.(map[string]any)
		if c.Validate("ConnectParams", obj["params"]) != nil {
			return
		}
		var req struct {
			Params ConnectParams `json:"params"`
		}
		if err := json.Unmarshal(data, &req); err != nil {
			t.Fatalf("schema-valid connect does not decode: %v\n%s", err, data)
		}
		if req.Params.Client.ID == "" || req.Params.Client.Mode == "" {
			t.Fatalf("schema-valid connect lacks client id/mode: %s", data)
		}
		if fast, ok := DecodeConnectParams(obj["params"]); ok && !reflect.DeepEqual(fast, req.Params) {
			t.Fatalf("DecodeConnectParams differs from json.Unmarshal for %s:\n%#v\n%#v", data, fast, req.Params)
		}
	})
}

// TestDecodeConnectParams: every schema-valid connect frame of the
// transcripts takes the fast path and decodes exactly as json.Unmarshal
// does; shapes outside the fast path are refused, not approximated.
func TestDecodeConnectParams(t *testing.T) {
	c, err := LoadContract()
	if err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{[]byte(benchConnectFrame),
		[]byte(`{"type":"req","id":"x","method":"connect","params":{"minProtocol":3,"maxProtocol":4,"client":{"id":"node-host","version":"1","platform":"linux","mode":"node","displayName":"n"},"caps":["system"],"commands":["system.run"],"permissions":{"a":true,"b":false},"role":"node","scopes":[],"locale":"en","userAgent":"ua","pathEnv":"/bin","auth":{"deviceToken":"dt","bootstrapToken":"bt","password":"pw","token":"t"}}}`)}
	for _, f := range transcriptFrames(t) {
		frames = append(frames, f)
	}
	fast := 0
	for _, data := range frames {
		v, err := ParseStrict(data)
		if err != nil || c.Validate("RequestFrame", v) != nil {
			continue
		}
		obj := v.(map[string]any)
		if obj["method"] != "connect" || c.Validate("ConnectParams", obj["params"]) != nil {
			continue
		}
		var req struct {
			Params ConnectParams `json:"params"`
		}
		if err := json.Unmarshal(data, &req); err != nil {
			continue
		}
		got, ok := DecodeConnectParams(obj["params"])
		if !ok {
			t.Errorf("fast path refused a plain frame: %s", data)
			continue
		}
		fast++
		if !reflect.DeepEqual(got, req.Params) {
			t.Errorf("differs for %s:\n%#v\n%#v", data, got, req.Params)
		}
	}
	if fast < 3 {
		t.Fatalf("only %d frames took the fast path", fast)
	}
	for _, params := range []string{
		`{"minProtocol":4.0,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"p","mode":"cli"}}`,
		`{"minProtocol":4,"maxProtocol":1e1,"client":{"id":"cli","version":"1","platform":"p","mode":"cli"}}`,
		`{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"p","mode":"cli"},"role":null}`,
		`{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"p","mode":"cli"},"extra":1}`,
		`{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"p","mode":"cli"},"permissions":{"a":1}}`,
		`{"minProtocol":4,"maxProtocol":99999999999999999999,"client":{"id":"cli","version":"1","platform":"p","mode":"cli"}}`,
	} {
		v, err := ParseStrict([]byte(params))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := DecodeConnectParams(v); ok {
			t.Errorf("fast path took %s", params)
		}
	}
}

// BenchmarkDecodeConnectParams compares the fast path with json.Unmarshal
// of the same frame (what parseConnect did before).
func BenchmarkDecodeConnectParams(b *testing.B) {
	data := []byte(benchConnectFrame)
	v, err := ParseStrict(data)
	if err != nil {
		b.Fatal(err)
	}
	params := v.(map[string]any)["params"]
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := DecodeConnectParams(params); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req struct {
				Params ConnectParams `json:"params"`
			}
			if err := json.Unmarshal(data, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParseStrict parses a real connect frame (the CLI's, from the
// transcripts).
func BenchmarkParseStrict(b *testing.B) {
	if _, err := LoadContract(); err != nil { // as the gateway does first: interning on
		b.Fatal(err)
	}
	frame := []byte(benchConnectFrame)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ParseStrict(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// benchConnectFrame is the CLI's connect frame from the transcripts.
const benchConnectFrame = `{"type":"req","id":"1:34f9714a-49e7-4ee5-8132-d2f2618e8cf2","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"2026.9.6","platform":"linux","deviceFamily":"Linux","mode":"cli","instanceId":"fcff68ec-85ae-4a51-a704-067d625307bf"},"caps":[],"auth":{"token":"0123456789abcdef0123456789abcdef0123456789a"},"role":"operator","scopes":["operator.read"],"device":{"id":"28f4a0ed371d63c7e1c979be5c042abb34c0f72e068044c64eb91d7cec3acaa0","publicKey":"jRceNMCtcEkwXyqyaQy0-jJWtqG7ALWcasPGYQrxnZo","signature":"-eGNrIz4z3b59NGXlt-UoArXYBsYWj5E8f-b_C6ofC1p1TP0_atuabcB3o01ghWv4agxOJRbREh7Gs06r3lkAw","signedAt":1795733542031,"nonce":"03e293f1-7d9d-4ca5-a895-58d5b42292ae"}}}`
