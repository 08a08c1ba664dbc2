// Package logring keeps the gateway's newest log records in memory for the
// logs.tail method: a slog.Handler writes each record as one JSON line into
// a ring bounded in bytes, and Tail reads it back with the cursor semantics
// of OpenClaw's file-based logs.tail (byte offsets into the stream of
// everything ever logged, so a poller sees each line once and learns when
// lines were lost).
//
// It holds only what the logger was given; clawgate never logs secrets, so
// neither does the ring.
package logring
