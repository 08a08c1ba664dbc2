package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// sdNotifier speaks systemd's notify protocol (sd_notify(3)) with the
// standard library: newline-separated KEY=VALUE datagrams to the unix
// datagram socket named by $NOTIFY_SOCKET ("@name" is in the abstract
// namespace). A nil *sdNotifier, used when the variable is unset (not under
// systemd, or Type= is not notify), ignores every call.
type sdNotifier struct {
	conn *net.UnixConn
	log  *slog.Logger

	stopOnce sync.Once
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// newNotifier connects to $NOTIFY_SOCKET, or returns nil when it is unset.
func newNotifier(getenv func(string) string, log *slog.Logger) (*sdNotifier, error) {
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil, nil
	}
	if path[0] != '/' && path[0] != '@' {
		return nil, fmt.Errorf("NOTIFY_SOCKET %q is neither an absolute path nor an abstract socket", path)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	return &sdNotifier{conn: conn, log: log}, nil
}

// send writes one notification; systemd reads one datagram per message.
func (n *sdNotifier) send(state string) error {
	if n == nil {
		return nil
	}
	_ = n.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := n.conn.Write([]byte(state))
	return err
}

// watchdogInterval returns how often to ping the watchdog: half of
// $WATCHDOG_USEC, when that is set and $WATCHDOG_PID (if set) is this
// process.
func watchdogInterval(getenv func(string) string) (time.Duration, bool) {
	usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0, false
	}
	if pid := getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	return time.Duration(usec) * time.Microsecond / 2, true
}

// ready tells systemd the listeners accept connections, and starts the
// watchdog pings when systemd asked for them. Each ping is sent only after
// check succeeds, so a gateway that no longer answers is restarted. A
// canceled ctx sends STOPPING=1 at once, before the shutdown runs.
func (n *sdNotifier) ready(ctx context.Context, getenv func(string) string, status string, check func(context.Context) error) {
	if n == nil {
		return
	}
	if err := n.send("READY=1\nSTATUS=" + status); err != nil {
		n.log.Warn("systemd notify failed", "err", err)
	}
	interval, watchdog := watchdogInterval(getenv)
	ctx, n.cancel = context.WithCancel(ctx)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		var tick <-chan time.Time
		if watchdog {
			t := time.NewTicker(interval)
			defer t.Stop()
			tick = t.C
			n.log.Info("systemd watchdog enabled", "pingEvery", interval.String())
		}
		for {
			select {
			case <-ctx.Done():
				n.stopping()
				return
			case <-tick:
				cctx, cancel := context.WithTimeout(ctx, interval)
				err := check(cctx)
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						n.log.Warn("health check failed; not pinging the watchdog", "err", err)
					}
					continue
				}
				if err := n.send("WATCHDOG=1"); err != nil {
					n.log.Warn("systemd watchdog ping failed", "err", err)
				}
			}
		}
	}()
}

// stopping sends STOPPING=1 once.
func (n *sdNotifier) stopping() {
	if n == nil {
		return
	}
	n.stopOnce.Do(func() {
		if err := n.send("STOPPING=1\nSTATUS=shutting down"); err != nil {
			n.log.Warn("systemd notify failed", "err", err)
		}
	})
}

// close sends STOPPING=1 if that has not happened, stops the watchdog
// goroutine, waits for it and closes the socket.
func (n *sdNotifier) close() {
	if n == nil {
		return
	}
	n.stopping()
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	_ = n.conn.Close()
}

// healthCheck returns a check that GETs url (the gateway's own /healthz on
// its loopback listener): the accept loop and the HTTP stack both work.
func healthCheck(url string) func(context.Context) error {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New("healthz: " + resp.Status)
		}
		return nil
	}
}
