package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// TestFloorServer: the handshake scenarios complete against the floor
// server, so the floor is measured over the same sessions as a gateway.
func TestFloorServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- floorServe(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("floorServe: %v", err)
		}
	}()
	var stdout, stderr bytes.Buffer
	args := []string{"--url", "ws://" + ln.Addr().String(), "--token", testToken, "--scenarios", "paired,shared",
		"--handshakes", "30", "--devices", "3", "--concurrency", "4", "--progress=false", "--verify-ceiling", "0"}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	var sum Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Results) != 2 {
		t.Fatalf("results %+v", sum.Results)
	}
	for _, r := range sum.Results {
		if r.OK != 30 || r.Failed != 0 {
			t.Errorf("%s: ok %d failed %d %v", r.Scenario, r.OK, r.Failed, r.FirstErrors)
		}
	}
}

func TestFloorServerLoopbackOnly(t *testing.T) {
	var stderr bytes.Buffer
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:1"} {
		err := run(context.Background(), []string{"floor-server", "--listen", addr}, &bytes.Buffer{}, &stderr)
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("--listen %s: %v", addr, err)
		}
	}
}
