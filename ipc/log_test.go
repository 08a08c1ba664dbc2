package ipc

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A helper's JSON log lines are logged again with their level, message and
// attributes in order; lines split across writes are joined; other output
// is logged as a warning; an overlong line is cut, not parsed.
func TestLogWriter(t *testing.T) {
	var out lockedBuffer
	out.b = new(bytes.Buffer)
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	h := NewLogWriter(log.With("component", "tailnet"), "tailnet helper")
	for _, w := range []string{
		`{"time":"2026-01-01T00:00:00Z","level":"WARN","msg":"tailnet login required","loginURL":"http://127.0.0.1:1/a/x","n":3}` + "\n",
		`{"time":"2026-01-01T00:00:00Z","level":"DEBUG","msg":"split`,
		` line","peer":{"node":"n1"}}` + "\n\n",
		"panic: boom\n",
		`{"level":"INFO","nomsg":1}` + "\n",
		strings.Repeat("x", maxHelperLine+10) + "\n",
	} {
		if n, err := h.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	got := strings.Split(strings.TrimSpace(out.b.String()), "\n")
	want := []string{
		`level=WARN msg="tailnet login required" component=tailnet loginURL=http://127.0.0.1:1/a/x n=3`,
		`level=DEBUG msg="split line" component=tailnet peer=map[node:n1]`,
		`level=WARN msg="tailnet helper output" component=tailnet line="panic: boom" cut=false`,
		`level=WARN msg="tailnet helper output" component=tailnet line="{\"level\":\"INFO\",\"nomsg\":1}" cut=false`,
	}
	if len(got) != len(want)+1 {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want)+1, out.b.String())
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], w)
		}
	}
	last := got[len(want)]
	if !strings.HasSuffix(last, "cut=true") || len(last) > maxHelperLine+200 {
		t.Errorf("overlong line logged as %d bytes ending %q", len(last), last[max(0, len(last)-20):])
	}
}
