package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

// chanListener accepts the connections a test hands it.
type chanListener struct {
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(100, 64, 0, 1), Port: 18789} }

// unixPair returns both ends of a connected Unix stream socket pair.
func unixPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// A RelayedConn (a tailnet connection another process relays over a Unix
// socket) reports the relayed connection's addresses to the listener's
// Host check and Identify, and is served like a TCP connection: parked in
// the poller when idle, woken by a request, written directly.
func TestRelayedConnPolled(t *testing.T) {
	t.Parallel()
	secret, err := authn.NewSharedSecret(testToken)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Version: "test", Token: secret, StateDir: t.TempDir(), TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	fi := &fakeIdentify{}
	fi.set(func(context.Context) (*PeerIdentity, error) {
		return &PeerIdentity{NodeID: "nPhone", NodeName: "phone.tail1234.ts.net", UserLogin: "me@example.com"}, nil
	})
	ln := &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, Listener{Listener: ln, Path: authn.PathTailnet,
			Hosts: []string{"gw.tail1234.ts.net"}, Identify: fi.identify})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	gwEnd, peerEnd := unixPair(t)
	remote := &net.TCPAddr{IP: net.IPv4(100, 64, 0, 2), Port: 41000}
	ln.ch <- &RelayedConn{UnixConn: gwEnd, Local: ln.Addr(), Remote: remote}
	// The Host check sees the relayed local port: the right name on
	// another port is refused, on the listener's port accepted.
	w := upgradeWire(t, peerEnd, "gw.tail1234.ts.net:18789", nil)
	if w.resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade over a relayed connection: HTTP %d", w.resp.StatusCode)
	}
	if f := w.json(); f["event"] != protocol.EventChallenge {
		t.Fatalf("first frame %v", f)
	}
	if got := fi.lastAsked(); got != remote.String() {
		t.Fatalf("Identify asked about %q, want the relayed peer %s", got, remote)
	}
	b, _ := json.Marshal(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": connectParams(testToken)})
	w.text(string(b))
	if f := w.json(); f["ok"] != true {
		t.Fatalf("connect: %v", f)
	}
	if srv.poll.Load() == nil {
		t.Fatal("no poller on Linux")
	}
	parked := func() bool { return srv.poll.Load().parked.Load() == 1 }
	waitFor(t, "relayed connection parked", parked)
	if f := w.request("r1", "health"); f["ok"] != true {
		t.Fatalf("health on a parked relayed connection: %v", f)
	}
	waitFor(t, "parked again after a request", parked)

	gwEnd2, peerEnd2 := unixPair(t)
	ln.ch <- &RelayedConn{UnixConn: gwEnd2, Local: ln.Addr(), Remote: remote}
	_ = peerEnd2.SetDeadline(time.Now().Add(10 * time.Second))
	if w := upgradeWire(t, peerEnd2, "gw.tail1234.ts.net:1", nil); w.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("Host on another port than the relayed connection's: HTTP %d, want 403", w.resp.StatusCode)
	}
}
