package logring

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func ptr(v int64) *int64 { return &v }

// fill writes n lines "line-000" ... each 9 bytes with its newline.
func fill(r *Ring, from, n int) {
	for i := from; i < from+n; i++ {
		fmt.Fprintf(r, "line-%03d\n", i)
	}
}

func TestTailCursorFollowsStream(t *testing.T) {
	r := New(1 << 20)
	fill(r, 0, 3)
	res := r.Tail(Query{})
	if res.Size != 27 || res.Cursor != 27 || len(res.Lines) != 3 || res.Truncated || res.Reset {
		t.Fatalf("first tail = %+v", res)
	}
	fill(r, 3, 2)
	res = r.Tail(Query{Cursor: ptr(res.Cursor)})
	if strings.Join(res.Lines, ",") != "line-003,line-004" || res.Cursor != 45 || res.Reset || res.Truncated {
		t.Fatalf("follow = %+v", res)
	}
	res = r.Tail(Query{Cursor: ptr(res.Cursor)})
	if len(res.Lines) != 0 || res.Cursor != 45 {
		t.Fatalf("nothing new = %+v", res)
	}
	// The JSON form never encodes null lines.
	b, _ := json.Marshal(res)
	if !strings.Contains(string(b), `"lines":[]`) {
		t.Fatalf("json %s", b)
	}
}

func TestTailBounds(t *testing.T) {
	r := New(1 << 20)
	fill(r, 0, 100) // 900 bytes
	cases := []struct {
		name      string
		q         Query
		first     string
		n         int
		truncated bool
		reset     bool
		skipped   int64
	}{
		{"limit keeps the newest", Query{Limit: 10}, "line-090", 10, true, false, 0},
		{"maxBytes keeps whole lines", Query{MaxBytes: 95}, "line-090", 10, true, false, 0},
		{"maxBytes cuts mid-line", Query{MaxBytes: 100}, "line-089", 11, true, false, 0},
		{"cursor past the end resets", Query{Cursor: ptr(5000), Limit: 2}, "line-098", 2, true, true, 0},
		{"negative cursor resets", Query{Cursor: ptr(-1), Limit: 1}, "line-099", 1, true, true, 0},
		{"cursor too far back skips", Query{Cursor: ptr(0), MaxBytes: 90}, "line-090", 10, true, true, 810},
		{"cursor within reach", Query{Cursor: ptr(891)}, "line-099", 1, false, false, 0},
		{"cursor mid-line drops the partial", Query{Cursor: ptr(885)}, "line-099", 1, false, false, 0},
		{"limit above max is clamped", Query{Limit: 1 << 30}, "line-000", 100, false, false, 0},
	}
	for _, c := range cases {
		res := r.Tail(c.q)
		if len(res.Lines) != c.n || res.Lines[0] != c.first || res.Truncated != c.truncated ||
			res.Reset != c.reset || res.SkippedBytes != c.skipped || res.Cursor != 900 || res.Size != 900 {
			t.Errorf("%s: got first %q n %d truncated %v reset %v skipped %d cursor %d", c.name,
				res.Lines[0], len(res.Lines), res.Truncated, res.Reset, res.SkippedBytes, res.Cursor)
		}
	}
}

func TestRingEvictsOldest(t *testing.T) {
	r := New(MaxLine) // the smallest budget
	lines := MaxLine/9 + 50
	fill(r, 0, lines)
	res := r.Tail(Query{Cursor: ptr(0), MaxBytes: MaxMaxBytes, Limit: MaxLimit})
	if !res.Reset || !res.Truncated || res.SkippedBytes == 0 {
		t.Fatalf("reading evicted lines must say so: %+v", res)
	}
	kept := 0
	for _, l := range res.Lines {
		kept += len(l) + 1
	}
	if kept > MaxLine || kept < MaxLine-MaxLine/8 {
		t.Fatalf("ring holds %d bytes, budget %d", kept, MaxLine)
	}
	if res.Lines[len(res.Lines)-1] != fmt.Sprintf("line-%03d", lines-1) {
		t.Fatalf("newest line %q", res.Lines[len(res.Lines)-1])
	}
	if res.SkippedBytes+int64(kept) != res.Size {
		t.Fatalf("skipped %d + kept %d != size %d", res.SkippedBytes, kept, res.Size)
	}
	// A huge record is replaced, not allowed to evict everything.
	fmt.Fprintf(r, "%s\n", strings.Repeat("x", MaxLine+1))
	res = r.Tail(Query{Limit: 2})
	if !strings.Contains(res.Lines[1], "too long") || res.Lines[0] != fmt.Sprintf("line-%03d", lines-1) {
		t.Fatalf("after a huge record: %q", res.Lines)
	}
}

func TestHandlerWritesOpenClawKeys(t *testing.T) {
	r := New(1 << 20)
	log := slog.New(r.Handler(&slog.HandlerOptions{Level: slog.LevelInfo})).With("component", "pairing")
	log.Debug("hidden")
	log.Info("device approved", "device", "abc123")
	log.WithGroup("g").Warn("grouped", "component", "inner")
	res := r.Tail(Query{})
	if len(res.Lines) != 2 {
		t.Fatalf("lines %q", res.Lines)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(res.Lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m["message"] != "device approved" || m["level"] != "INFO" || m["subsystem"] != "pairing" || m["device"] != "abc123" || m["time"] == nil {
		t.Fatalf("record %v", m)
	}
	if !strings.Contains(res.Lines[1], `"g":{"component":"inner"}`) {
		t.Fatalf("grouped keys must stay as they are: %s", res.Lines[1])
	}
}

func TestConcurrentWriters(t *testing.T) {
	r := New(64 << 10)
	log := slog.New(r.Handler(nil))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				log.Info("msg", "g", g, "i", i)
				if i%50 == 0 {
					r.Tail(Query{Limit: 10})
				}
			}
		})
	}
	wg.Wait()
	res := r.Tail(Query{Limit: MaxLimit, MaxBytes: MaxMaxBytes})
	for _, l := range res.Lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("interleaved line %q", l)
		}
	}
	if res.Size < 4000*30 {
		t.Fatalf("size %d", res.Size)
	}
}
