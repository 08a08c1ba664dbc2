package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/ipc"
	"github.com/clawgate/clawgate/tsnode/tsipc"
)

// A gateway of another release (another wire version) gets a refusal
// that says so, and no node starts; calls before start fail.
func TestHelperRefusesAnotherVersion(t *testing.T) {
	h := newHelper(slog.New(slog.DiscardHandler), new(slog.LevelVar))
	close(h.connSet)
	defer h.stop()
	params, _ := json.Marshal(tsipc.Start{Version: tsipc.Version + 1, Dir: filepath.Join(t.TempDir(), "tsnet")})
	_, err := h.handle(context.Background(), &ipc.Request{Method: tsipc.MethodStart, Params: params})
	var ie *ipc.Error
	if !errors.As(err, &ie) || ie.Code != "version_mismatch" || !strings.Contains(ie.Message, "one release") {
		t.Fatalf("start with another wire version: %v", err)
	}
	if _, err := h.started(); err == nil {
		t.Fatal("a node started")
	}
	params, _ = json.Marshal(tsipc.Listen{Port: 18789})
	if _, err := h.handle(context.Background(), &ipc.Request{Method: tsipc.MethodListen, Params: params}); err == nil {
		t.Fatal("listen before start succeeded")
	}
	if _, err := h.handle(context.Background(), &ipc.Request{Method: "nope", Params: params}); err == nil {
		t.Fatal("an unknown method succeeded")
	}
}
