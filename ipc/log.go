package ipc

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
)

// maxHelperLine bounds one line of a helper's output; longer lines are
// cut.
const maxHelperLine = 64 << 10

// LogWriter is a helper process's stdout and stderr (StartOptions.Stderr):
// a helper logs JSON records (slog.JSONHandler) there, and each one is
// logged again through the gateway's logger with its level, message and
// attributes; any other line (a panic, a runtime error) is logged as a
// warning "<what> output".
type LogWriter struct {
	log  *slog.Logger
	what string // names the helper in the warning

	mu   sync.Mutex
	line []byte
	cut  bool // the current line passed maxHelperLine
}

// NewLogWriter logs a helper's output through log; what names the helper
// ("tailnet helper").
func NewLogWriter(log *slog.Logger, what string) *LogWriter {
	return &LogWriter{log: log, what: what}
}

// Write logs each complete line of p; a partial line waits for the rest.
func (h *LogWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxHelperLine - len(h.line); len(chunk) > room {
			chunk, h.cut = chunk[:room], true
		}
		h.line = append(h.line, chunk...)
		if i < 0 {
			break
		}
		h.emit(h.line, h.cut)
		h.line, h.cut = h.line[:0], false
		p = p[i+1:]
	}
	return n, nil
}

func (h *LogWriter) emit(line []byte, cut bool) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	if !cut {
		if level, msg, attrs, ok := parseRecord(line); ok {
			h.log.Log(context.Background(), level, msg, attrs...)
			return
		}
	}
	h.log.Warn(h.what+" output", "line", string(line), "cut", cut)
}

// parseRecord reads one slog.JSONHandler line, keeping the attributes'
// order.
func parseRecord(line []byte) (level slog.Level, msg string, attrs []any, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, "", nil, false
	}
	var haveMsg bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, "", nil, false
		}
		key, _ := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return 0, "", nil, false
		}
		switch key {
		case slog.TimeKey:
		case slog.LevelKey:
			s, _ := v.(string)
			if level.UnmarshalText([]byte(strings.TrimSpace(s))) != nil {
				return 0, "", nil, false
			}
		case slog.MessageKey:
			msg, haveMsg = v.(string)
		default:
			attrs = append(attrs, slog.Any(key, v))
		}
	}
	return level, msg, attrs, haveMsg
}
