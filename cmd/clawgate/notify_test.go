package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// notifySocket is the systemd side of sd_notify: a unix datagram socket.
type notifySocket struct {
	t    *testing.T
	conn *net.UnixConn
	name string
}

func listenNotify(t *testing.T, name string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifySocket{t: t, conn: conn, name: name}
}

// next returns the next datagram, failing after within.
func (n *notifySocket) next(within time.Duration) string {
	n.t.Helper()
	buf := make([]byte, 4096)
	_ = n.conn.SetReadDeadline(time.Now().Add(within))
	k, _, err := n.conn.ReadFromUnix(buf)
	if err != nil {
		n.t.Fatalf("no notification within %v: %v", within, err)
	}
	return string(buf[:k])
}

// TestSystemdNotify runs the real binary under a real notify socket:
// READY=1 once the listener answers, watchdog pings, STOPPING=1 after
// SIGTERM, then a clean exit.
func TestSystemdNotify(t *testing.T) {
	names := map[string]string{"path": filepath.Join(t.TempDir(), "notify.sock")}
	if runtime.GOOS == "linux" {
		names["abstract"] = fmt.Sprintf("@clawgate-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	for kind, name := range names {
		t.Run(kind, func(t *testing.T) {
			sock := listenNotify(t, name)
			port := freePort(t)
			cmd := exec.Command(binary, "gateway", "--port", strconv.Itoa(port))
			cmd.Env = append(os.Environ(), "CLAWGATE_STATE_DIR="+filepath.Join(t.TempDir(), "state"),
				"CLAWGATE_GATEWAY_TOKEN=", "OPENCLAW_GATEWAY_TOKEN=",
				"NOTIFY_SOCKET="+name, "WATCHDOG_USEC=1000000")
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-done
				if t.Failed() {
					t.Logf("gateway output:\n%s", out.String())
				}
			})

			msg := sock.next(15 * time.Second)
			want := fmt.Sprintf("READY=1\nSTATUS=listening on 127.0.0.1:%d", port)
			if msg != want {
				t.Fatalf("first notification %q, want %q", msg, want)
			}
			// READY means the listener accepts connections now.
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
			if err != nil {
				t.Fatalf("healthz right after READY=1: %v", err)
			}
			resp.Body.Close()
			for range 2 {
				if msg := sock.next(10 * time.Second); msg != "WATCHDOG=1" {
					t.Fatalf("notification %q, want WATCHDOG=1", msg)
				}
			}

			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			for {
				msg := sock.next(10 * time.Second)
				if msg == "WATCHDOG=1" {
					continue // a ping already under way
				}
				if msg != "STOPPING=1\nSTATUS=shutting down" {
					t.Fatalf("after SIGTERM: %q, want STOPPING=1", msg)
				}
				break
			}
			select {
			case err := <-done:
				done <- err
				if err != nil {
					t.Fatalf("exit after SIGTERM: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("gateway did not exit after SIGTERM")
			}
			// Nothing after STOPPING=1.
			_ = sock.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if k, _, err := sock.conn.ReadFromUnix(make([]byte, 512)); err == nil {
				t.Fatalf("notification after STOPPING=1 (%d bytes)", k)
			}
		})
	}
}

// TestWatchdogNeedsHealth: when the gateway's own health check fails, no
// WATCHDOG=1 is sent, so systemd restarts a wedged gateway.
func TestWatchdogNeedsHealth(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify.sock")
	sock := listenNotify(t, name)
	getenv := func(k string) string {
		return map[string]string{"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "20000"}[k]
	}
	n, err := newNotifier(getenv, slog.New(slog.DiscardHandler))
	if err != nil || n == nil {
		t.Fatalf("newNotifier: %v %v", n, err)
	}
	var checks atomic.Int32
	enough := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	n.ready(ctx, getenv, "test", func(context.Context) error {
		if checks.Add(1) == 5 {
			close(enough)
		}
		return errors.New("wedged")
	})
	select {
	case <-enough:
	case <-time.After(10 * time.Second):
		t.Fatal("the health check never ran")
	}
	cancel()
	n.close()
	if msg := sock.next(time.Second); msg != "READY=1\nSTATUS=test" {
		t.Fatalf("first %q", msg)
	}
	if msg := sock.next(time.Second); msg != "STOPPING=1\nSTATUS=shutting down" {
		t.Fatalf("after %d failed checks: %q, want STOPPING=1 and no ping", checks.Load(), msg)
	}
}

func TestNotifyEnvironment(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if n, err := newNotifier(env(nil), nil); n != nil || err != nil {
		t.Fatalf("no NOTIFY_SOCKET: %v %v", n, err)
	}
	if _, err := newNotifier(env(map[string]string{"NOTIFY_SOCKET": "relative.sock"}), nil); err == nil {
		t.Fatal("relative NOTIFY_SOCKET accepted")
	}
	// A nil notifier is inert.
	var n *sdNotifier
	n.ready(context.Background(), env(nil), "x", nil)
	n.stopping()
	n.close()

	pid := strconv.Itoa(os.Getpid())
	for _, c := range []struct {
		vars map[string]string
		want time.Duration
		ok   bool
	}{
		{map[string]string{"WATCHDOG_USEC": "30000000"}, 15 * time.Second, true},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}, 15 * time.Second, true},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, 0, false},
		{map[string]string{"WATCHDOG_USEC": "0"}, 0, false},
		{map[string]string{"WATCHDOG_USEC": "soon"}, 0, false},
		{nil, 0, false},
	} {
		got, ok := watchdogInterval(env(c.vars))
		if got != c.want || ok != c.ok {
			t.Errorf("%v: %v %v, want %v %v", c.vars, got, ok, c.want, c.ok)
		}
	}
}
