package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// TestDevicesApproveFlow: a device that is not local (it comes through a
// same-host proxy) waits for approval, shows up in `clawgate devices list`,
// and connects after `clawgate devices approve`; `clawgate devices remove`
// disconnects it with 4001. `clawgate backup` works while the gateway runs.
func TestDevicesApproveFlow(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	p := startGateway(t, state)
	url := fmt.Sprintf("ws://127.0.0.1:%d", p.port)
	tok, err := runCLI(t, state, "token")
	if err != nil {
		t.Fatal(err)
	}
	tok = strings.TrimSpace(tok)
	id, _ := client.NewIdentity()
	opts := client.Options{URL: url, Token: tok, Identity: id, ClientID: "openclaw-ios", ClientMode: "ui",
		DisplayName: "phone", Scopes: []string{protocol.ScopeRead, protocol.ScopeWrite},
		Header: http.Header{"X-Forwarded-For": {"203.0.113.9"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = client.Dial(ctx, opts)
	var re *client.RemoteError
	if !errors.As(err, &re) || re.Code != protocol.ErrNotPaired || re.DetailCode() != protocol.DetailPairingRequired {
		t.Fatalf("proxied device: %v, want NOT_PAIRED/PAIRING_REQUIRED", err)
	}
	reqID, _ := re.Details.(map[string]any)["requestId"].(string)
	if reqID == "" {
		t.Fatalf("no requestId in %v", re.Details)
	}
	out, err := runCLI(t, state, "devices", "list", "--url", url, "--json")
	if err != nil || !strings.Contains(out, reqID) {
		t.Fatalf("devices list (%v) lacks %s:\n%s", err, reqID, out)
	}
	table, err := runCLI(t, state, "devices", "list", "--url", url)
	if err != nil || !strings.Contains(table, reqID) || !strings.Contains(table, "clawgate devices approve") {
		t.Fatalf("devices list table (%v):\n%s", err, table)
	}
	if out, err := runCLI(t, state, "devices", "approve", reqID, "--url", url); err != nil {
		t.Fatalf("devices approve: %v\n%s", err, out)
	}
	c, err := client.Dial(ctx, opts)
	if err != nil {
		t.Fatalf("approved device: %v", err)
	}
	if dt := c.Hello().Auth.DeviceToken; len(dt) != 43 {
		t.Fatalf("approved device got token %q", dt)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	if out, err := runCLI(t, state, "backup", backup, "--url", url); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 || st.Size() == 0 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	if out, err := runCLI(t, state, "devices", "remove", id.DeviceID, "--url", url); err != nil {
		t.Fatalf("devices remove: %v\n%s", err, out)
	}
	select {
	case <-c.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("removed device still connected")
	}
	var ce *client.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != protocol.CloseAuthChanged || ce.Reason != "device removed" {
		t.Fatalf("close: %v, want 4001 device removed", c.Err())
	}
	out, err = runCLI(t, state, "devices", "list", "--url", url, "--json")
	var l struct {
		Paired []struct {
			DeviceID string `json:"deviceId"`
		} `json:"paired"`
	}
	if err != nil || json.Unmarshal([]byte(out), &l) != nil {
		t.Fatalf("list after remove: %v %s", err, out)
	}
	for _, d := range l.Paired {
		if d.DeviceID == id.DeviceID {
			t.Fatalf("removed device still listed")
		}
	}
}

// TestBackupOffline: with no gateway running, backup opens the file itself.
func TestBackupOffline(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	p := startGateway(t, state)
	_ = p.cmd.Process.Kill()
	<-p.done
	dest := filepath.Join(t.TempDir(), "b.db")
	out, err := runCLI(t, state, "backup", dest)
	if err != nil || !strings.Contains(out, "wrote") {
		t.Fatalf("offline backup: %v %s", err, out)
	}
}
