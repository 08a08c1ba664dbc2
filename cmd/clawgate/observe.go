package main

import (
	"log/slog"

	"github.com/clawgate/clawgate/logring"
)

// logRingBytes bounds the in-memory log that logs.tail serves.
const logRingBytes = 2 << 20

// withLogRing tees log into a new in-memory ring (JSON lines, same level)
// and returns both.
func withLogRing(log *slog.Logger, verbose bool) (*slog.Logger, *logring.Ring) {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	ring := logring.New(logRingBytes)
	h := slog.NewMultiHandler(log.Handler(), ring.Handler(&slog.HandlerOptions{Level: level}))
	return slog.New(h), ring
}
