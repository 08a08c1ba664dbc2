package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// ackedDevice is what a client was told: its approval, and the last device
// token acknowledged to it. rotating marks a rotation sent but not
// answered: its outcome is unknown to the client.
type ackedDevice struct {
	id       *client.Identity
	token    string
	rotating bool
}

// TestCrashDuringPairing kills the gateway process with SIGKILL at random
// points while approvals and token rotations run, restarts it on the same
// state, and checks that every acknowledged approval is present and every
// acknowledged token still works (attack rows H1, H10-style).
func TestCrashDuringPairing(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	rounds := 4
	var acked []*ackedDevice
	for round := 0; round < rounds; round++ {
		p := startGateway(t, state)
		url := fmt.Sprintf("ws://127.0.0.1:%d", p.port)
		verifyAcked(t, url, acked, round)
		tok, _ := runCLI(t, state, "token")
		tok = strings.TrimSpace(tok)
		admin := dialAdminClient(t, url, tok, state)

		var mu sync.Mutex
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := &ackedDevice{}
				d.id, _ = client.NewIdentity()
				reqID, err := requestPairing(url, tok, d.id)
				if err != nil {
					return // the gateway died
				}
				if _, err := admin.Call(context.Background(), "device.pair.approve", map[string]any{"requestId": reqID}); err != nil {
					return
				}
				mu.Lock()
				acked = append(acked, d) // approval acknowledged
				mu.Unlock()
				c, err := dialDevice(url, tok, "", d.id)
				if err != nil {
					return
				}
				mu.Lock()
				d.token = c.Hello().Auth.DeviceToken
				d.rotating = true
				mu.Unlock()
				raw, err := c.Call(context.Background(), "device.token.rotate", map[string]any{"deviceId": d.id.DeviceID, "role": "operator"})
				if err == nil {
					var r struct {
						Token string `json:"token"`
					}
					_ = json.Unmarshal(raw, &r)
					mu.Lock()
					d.token, d.rotating = r.Token, false
					mu.Unlock()
				}
				c.Close()
			}
		}()
		time.Sleep(time.Duration(150+rand.IntN(400)) * time.Millisecond)
		_ = p.cmd.Process.Kill() // SIGKILL mid-flight
		<-p.done
		close(stop)
		<-done
		admin.Close()
		mu.Lock()
		t.Logf("round %d: %d devices acknowledged so far", round, len(acked))
		mu.Unlock()
	}
	p := startGateway(t, state)
	verifyAcked(t, fmt.Sprintf("ws://127.0.0.1:%d", p.port), acked, rounds)
	if len(acked) < 3 {
		t.Fatalf("only %d approvals acknowledged across %d rounds; the test did not exercise much", len(acked), rounds)
	}
}

// verifyAcked checks every acknowledged approval and token after a restart.
func verifyAcked(t *testing.T, url string, acked []*ackedDevice, round int) {
	t.Helper()
	for i, d := range acked {
		if d.token == "" {
			continue // approved; killed before its first connect answered
		}
		c, err := dialDevice(url, "", d.token, d.id)
		switch {
		case err == nil:
			c.Close()
		case d.rotating:
			// The rotation may have committed without its answer reaching
			// the client; the old token is then legitimately dead.
		default:
			t.Fatalf("round %d: device %d's acknowledged token no longer works: %v", round, i, err)
		}
	}
}

func dialAdminClient(t *testing.T, url, tok, state string) *client.Client {
	t.Helper()
	ids, err := client.OpenIdentity(filepath.Join(state, "identity", "cli.json"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: url, Token: tok, Identity: ids.Identity(), Scopes: adminScopes})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// requestPairing connects as a non-local device (through a same-host
// proxy) and returns the pairing request id.
func requestPairing(url, tok string, id *client.Identity) (string, error) {
	_, err := dialDevice(url, tok, "", id)
	var re *client.RemoteError
	if !errors.As(err, &re) || re.DetailCode() != protocol.DetailPairingRequired {
		return "", fmt.Errorf("want PAIRING_REQUIRED, got %v", err)
	}
	reqID, _ := re.Details.(map[string]any)["requestId"].(string)
	return reqID, nil
}

func dialDevice(url, tok, devTok string, id *client.Identity) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return client.Dial(ctx, client.Options{URL: url, Token: tok, DeviceToken: devTok, Identity: id,
		ClientID: "openclaw-ios", ClientMode: "ui",
		Scopes: []string{protocol.ScopeRead, protocol.ScopePairing},
		Header: http.Header{"X-Forwarded-For": {"203.0.113.7"}}})
}
