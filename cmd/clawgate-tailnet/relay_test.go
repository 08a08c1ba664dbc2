package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/clawgate/clawgate/ipc"
)

// relayed is one relay under test: client is the tailnet peer's end (a
// TCP connection standing in for the tailnet one), gw the gateway's end of
// the socket pair.
type relayed struct {
	client *net.TCPConn
	gw     *net.UnixConn
	done   chan struct{} // closed when relay returns
}

func startRelay(t *testing.T, ctx context.Context) *relayed {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs, err := ipc.SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	fc, err := net.FileConn(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := &relayed{client: client.(*net.TCPConn), gw: fc.(*net.UnixConn), done: make(chan struct{})}
	go func() { relay(ctx, peer, mine); close(r.done) }()
	t.Cleanup(func() {
		r.client.Close()
		r.gw.Close()
		<-r.done
	})
	return r
}

func (r *relayed) waitDone(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not end")
	}
}

// Bytes go both ways at once, intact; each side's half close reaches the
// other as EOF while the other direction still flows; then the relay ends.
func TestRelayBothWaysAndHalfClose(t *testing.T) {
	r := startRelay(t, context.Background())
	up, down := make([]byte, 1<<20), make([]byte, 1<<20)
	rand.Read(up)
	rand.Read(down)
	errc := make(chan error, 2)
	go func() { _, err := r.client.Write(up); errc <- err }()
	go func() { _, err := r.gw.Write(down); errc <- err }()
	gotUp, gotDown := make([]byte, len(up)), make([]byte, len(down))
	if _, err := io.ReadFull(r.gw, gotUp); err != nil {
		t.Fatalf("gateway reading: %v", err)
	}
	if _, err := io.ReadFull(r.client, gotDown); err != nil {
		t.Fatalf("peer reading: %v", err)
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
		t.Fatal("relayed bytes differ")
	}

	// The peer shuts down its writes: the gateway reads EOF, and can
	// still answer.
	if err := r.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = r.gw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := r.gw.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("gateway after the peer's half close: %d, %v; want EOF", n, err)
	}
	if _, err := r.gw.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	_ = r.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 3)
	if _, err := io.ReadFull(r.client, b); err != nil || string(b) != "bye" {
		t.Fatalf("peer after its half close read %q, %v", b, err)
	}
	// The gateway closes: the peer reads EOF, and the relay ends.
	r.gw.Close()
	if n, err := r.client.Read(b); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("peer after the gateway's close: %d, %v; want EOF", n, err)
	}
	r.waitDone(t)
}

// The gateway closing first reaches the peer as EOF; the peer still may
// finish, and its close ends the relay.
func TestRelayGatewayClosesFirst(t *testing.T) {
	r := startRelay(t, context.Background())
	if _, err := r.client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(r.gw, b); err != nil || string(b) != "hello" {
		t.Fatalf("gateway read %q, %v", b, err)
	}
	if err := r.gw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = r.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := r.client.Read(b); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("peer after the gateway's half close: %d, %v; want EOF", n, err)
	}
	select {
	case <-r.done:
		t.Fatal("relay ended while the peer's direction was open")
	default:
	}
	if _, err := r.client.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r.gw, b[:4]); err != nil || string(b[:4]) != "late" {
		t.Fatalf("gateway read %q, %v after its half close", b[:4], err)
	}
	r.client.Close()
	r.waitDone(t)
}

// Cancelling the relay (the gateway connection closed) closes both ends.
func TestRelayCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := startRelay(t, ctx)
	cancel()
	r.waitDone(t)
	_ = r.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.client.Read(make([]byte, 1)); err == nil {
		t.Fatal("peer's connection open after the relay was cancelled")
	}
	_ = r.gw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.gw.Read(make([]byte, 1)); err == nil {
		t.Fatal("gateway's socket open after the relay was cancelled")
	}
}
