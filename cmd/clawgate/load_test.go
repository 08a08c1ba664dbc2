package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// TestSIGTERMUnderLoadKeepsAcknowledgedWrites (attack list G, lifecycle):
// while clients keep pairing new devices (each pairing is a write the
// gateway acknowledges with a device token in hello-ok), SIGTERM stops the
// gateway with exit status 0, and after a restart on the same state every
// acknowledged device connects with its device token alone.
func TestSIGTERMUnderLoadKeepsAcknowledgedWrites(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	p := startGateway(t, state)
	out, err := runCLI(t, state, "token")
	tok := strings.TrimSpace(out)
	if err != nil || tok == "" {
		t.Fatalf("clawgate token: %q %v", out, err)
	}
	url := fmt.Sprintf("ws://127.0.0.1:%d", p.port)
	scopes := []string{protocol.ScopeAdmin, protocol.ScopeRead, protocol.ScopeWrite}

	type acked struct {
		id    *client.Identity
		token string
	}
	var (
		mu       sync.Mutex
		acks     []acked
		refused  int
		early    error // a refusal before SIGTERM: the load itself failed
		termSent bool
		firstBad error
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				id, err := client.NewIdentity()
				if err != nil {
					t.Error(err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c, err := client.Dial(ctx, client.Options{URL: url, Token: tok, Identity: id, Scopes: scopes})
				cancel()
				if err != nil {
					// Refused or cut off by the shutdown: not acknowledged.
					mu.Lock()
					refused++
					if !termSent && early == nil {
						early = err
					}
					mu.Unlock()
					select {
					case <-p.done:
						return
					case <-time.After(5 * time.Millisecond):
					}
					continue
				}
				dt := c.Hello().Auth.DeviceToken
				mu.Lock()
				if dt == "" && firstBad == nil {
					firstBad = errors.New("hello-ok for a new device carried no device token")
				}
				acks = append(acks, acked{id, dt})
				mu.Unlock()
				c.Close()
			}
		}()
	}
	// Let the load build up, then stop the gateway in the middle of it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acks)
		mu.Unlock()
		if n >= 100 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	termSent = true
	mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.waitErr != nil {
			t.Fatalf("exit after SIGTERM under load: %v", p.waitErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not exit within 15s of SIGTERM under load")
	}
	close(stop)
	wg.Wait()
	if firstBad != nil {
		t.Fatal(firstBad)
	}
	if early != nil {
		t.Fatalf("a connect failed before SIGTERM: %v", early)
	}
	if len(acks) == 0 {
		t.Fatal("no device was paired before SIGTERM; the test proved nothing")
	}
	t.Logf("%d devices acknowledged, %d attempts refused or cut off", len(acks), refused)

	p2 := startGateway(t, state)
	url2 := fmt.Sprintf("ws://127.0.0.1:%d", p2.port)
	sem := make(chan struct{}, 8)
	var lost sync.Map
	for i, a := range acks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, client.Options{URL: url2, DeviceToken: a.token, Identity: a.id, Scopes: scopes})
			if err != nil {
				lost.Store(i, err)
				return
			}
			c.Close()
		}()
	}
	wg.Wait()
	n := 0
	lost.Range(func(k, v any) bool {
		if n < 5 {
			t.Errorf("acknowledged device %d lost after the restart: %v", k, v)
		}
		n++
		return true
	})
	if n > 0 {
		t.Fatalf("%d of %d acknowledged pairings lost across SIGTERM", n, len(acks))
	}
}
