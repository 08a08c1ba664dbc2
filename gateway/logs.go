package gateway

import (
	"context"
	"encoding/json"

	"github.com/clawgate/clawgate/logring"
	"github.com/clawgate/clawgate/protocol"
)

// logsTailResult is OpenClaw's LogsTailResult. File names the ring of
// this process: it changes on every restart, which tells a poller (the
// Control UI compares it) that its cursor belongs to another stream.
type logsTailResult struct {
	File string `json:"file"`
	logring.Result
}

// registerLogMethods adds logs.tail when the gateway was given a log ring.
// The method table classifies logs.tail as operator.read.
func (s *Server) registerLogMethods() {
	if s.opts.Logs == nil {
		return
	}
	s.handle("logs.tail", false, s.methodLogsTail)
}

func (s *Server) methodLogsTail(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		Cursor   *int64 `json:"cursor"`
		Limit    int    `json:"limit"`
		MaxBytes int    `json:"maxBytes"`
	}
	if len(raw) > 0 {
		// The schema has checked types and bounds already.
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, protocol.InvalidRequest("invalid logs.tail params: " + err.Error())
		}
	}
	res := s.opts.Logs.Tail(logring.Query{Cursor: p.Cursor, Limit: p.Limit, MaxBytes: p.MaxBytes})
	return logsTailResult{File: "memory:clawgate-" + s.bootID[:8] + ".log", Result: res}, nil
}
