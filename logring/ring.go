package logring

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// Limits of one Tail call, as in OpenClaw's LogsTailParams.
const (
	DefaultLimit    = 500
	MaxLimit        = 5000
	DefaultMaxBytes = 250_000
	MaxMaxBytes     = 1_000_000
)

// MaxLine is the longest record the ring keeps; a longer one is replaced by
// a short notice so it cannot evict everything else.
const MaxLine = 32 << 10

// Ring is a bounded in-memory log. It is safe for concurrent use.
type Ring struct {
	budget int // bytes retained at most, newlines included

	mu    sync.Mutex
	lines []entry // oldest first, from head
	head  int
	used  int   // bytes retained
	size  int64 // bytes ever written: the offset of the end of the stream
}

type entry struct {
	off  int64  // offset of the line's first byte in the stream
	line []byte // without the newline
}

// New returns a ring that keeps about budget bytes of the newest lines.
func New(budget int) *Ring {
	if budget < MaxLine {
		budget = MaxLine
	}
	return &Ring{budget: budget}
}

// Write appends p, one or more newline-terminated lines (a slog handler
// writes exactly one record per call). A trailing partial line counts as
// a line.
func (r *Ring) Write(p []byte) (int, error) {
	n := len(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(p) > 0 {
		line, rest, _ := bytes.Cut(p, []byte{'\n'})
		p = rest
		r.appendLocked(line)
	}
	return n, nil
}

func (r *Ring) appendLocked(line []byte) {
	if len(line) > MaxLine {
		line, _ = json.Marshal(map[string]any{
			"time": time.Now().UTC().Format(time.RFC3339Nano), "level": "WARN",
			"message": "log record too long for the ring; dropped", "bytes": len(line),
		})
	}
	e := entry{off: r.size, line: bytes.Clone(line)}
	r.lines = append(r.lines, e)
	r.size += int64(len(line) + 1)
	r.used += len(line) + 1
	for r.used > r.budget && r.head < len(r.lines)-1 {
		r.used -= len(r.lines[r.head].line) + 1
		r.lines[r.head] = entry{}
		r.head++
	}
	if r.head > 1024 && r.head > len(r.lines)/2 {
		r.lines = append([]entry(nil), r.lines[r.head:]...)
		r.head = 0
	}
}

// Query selects what Tail returns. A nil Cursor asks for the newest lines.
type Query struct {
	Cursor   *int64
	Limit    int // lines; 0 means DefaultLimit, clamped to [1, MaxLimit]
	MaxBytes int // 0 means DefaultMaxBytes, clamped to [1, MaxMaxBytes]
}

// Result is one read: the lines after the cursor (newest last) and the
// cursor to pass next time. Its JSON form is OpenClaw's LogsTailResult
// without the file name.
type Result struct {
	// Cursor is where the next read continues: the end of the stream.
	Cursor int64 `json:"cursor"`
	// Size is the number of bytes ever written.
	Size  int64    `json:"size"`
	Lines []string `json:"lines"`
	// Truncated: older lines in the requested range were left out (by
	// MaxBytes, Limit, or because the ring no longer holds them).
	Truncated bool `json:"truncated,omitempty"`
	// Reset: the cursor did not continue this stream (it was past the end,
	// or lines after it are gone); the lines do not follow the last read.
	Reset bool `json:"reset,omitempty"`
	// SkippedBytes is how much of the stream after the cursor was skipped.
	SkippedBytes int64 `json:"skippedBytes,omitempty"`
}

// Tail reads the ring as OpenClaw's logs.tail reads its log file.
func (r *Ring) Tail(q Query) Result {
	limit := clamp(q.Limit, DefaultLimit, MaxLimit)
	maxBytes := int64(clamp(q.MaxBytes, DefaultMaxBytes, MaxMaxBytes))

	r.mu.Lock()
	defer r.mu.Unlock()
	size := r.size
	base := size
	if r.head < len(r.lines) {
		base = r.lines[r.head].off
	}
	res := Result{Cursor: size, Size: size, Lines: []string{}}
	newest := max(base, size-maxBytes)
	var start int64
	switch {
	case q.Cursor == nil:
		start = newest
		res.Truncated = start > 0
	case *q.Cursor > size || *q.Cursor < 0:
		start = newest
		res.Reset = true
		res.Truncated = start > 0
	default:
		start = *q.Cursor
		if start < newest {
			res.Reset, res.Truncated = true, true
			res.SkippedBytes = newest - start
			start = newest
		}
	}
	// Whole lines that begin at or after start; a line cut by start is
	// skipped, as the file reader drops a partial first line.
	first := r.head
	for first < len(r.lines) && r.lines[first].off < start {
		first++
	}
	sel := r.lines[first:]
	if len(sel) > limit {
		sel = sel[len(sel)-limit:]
		res.Truncated = true
	}
	for _, e := range sel {
		res.Lines = append(res.Lines, string(e.line))
	}
	return res
}

func clamp(v, def, hi int) int {
	switch {
	case v == 0:
		return def
	case v < 1:
		return 1
	case v > hi:
		return hi
	}
	return v
}

// Handler returns a slog.Handler that writes each record into the ring as
// one JSON line. Keys follow what OpenClaw's log viewers read: "time",
// "level", "message" (slog's "msg"), and "subsystem" (clawgate's
// top-level "component" attribute); opts' own ReplaceAttr runs first.
func (r *Ring) Handler(opts *slog.HandlerOptions) slog.Handler {
	o := slog.HandlerOptions{}
	if opts != nil {
		o = *opts
	}
	inner := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if inner != nil {
			a = inner(groups, a)
		}
		if len(groups) == 0 {
			switch a.Key {
			case slog.MessageKey:
				a.Key = "message"
			case "component":
				a.Key = "subsystem"
			}
		}
		return a
	}
	return slog.NewJSONHandler(r, &o)
}
