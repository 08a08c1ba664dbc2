package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clawgate/clawgate/canvas"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/schedule"
	"github.com/clawgate/clawgate/store"
)

// canvasPortOffset: OpenClaw's canvas host listens on the gateway port + 4
// (18789 → 18793).
const canvasPortOffset = 4

// canvasFlags say where the canvas host listens.
type canvasFlags struct {
	port int
}

func (f *canvasFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.port, "canvas-port", 0, "canvas host port, on loopback (default: gateway port + 4, i.e. 18793; -1 turns the canvas host off)")
}

// automationFlags configure cron and heartbeats.
type automationFlags struct {
	heartbeat time.Duration
	missed    string
}

func (f *automationFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.heartbeat, "heartbeat", 0, "heartbeat period, e.g. 30m: an agent turn in the main session carrying queued system events (default off; wake now still runs one)")
	fs.StringVar(&f.missed, "cron-missed", "run-once", "cron runs missed while the gateway was down: skip, run-once or run-all (at most 10 per job)")
}

// options checks the flags and returns the gateway's automation options,
// with jobs kept in st.
func (f automationFlags) options(st store.CronStore) (gateway.AutomationOptions, error) {
	policy, err := schedule.ParsePolicy(f.missed)
	if err != nil {
		return gateway.AutomationOptions{}, fmt.Errorf("gateway: --cron-missed: %w", err)
	}
	if f.heartbeat < 0 || (f.heartbeat > 0 && f.heartbeat < time.Minute) {
		return gateway.AutomationOptions{}, errors.New("gateway: --heartbeat must be 0 (off) or at least 1m")
	}
	return gateway.AutomationOptions{Cron: st, Missed: policy, HeartbeatEvery: f.heartbeat}, nil
}

// canvasHost is the canvas host and its listener; a nil *canvasHost is
// the canvas turned off (every method is then a no-op).
type canvasHost struct {
	f    canvasFlags
	host *canvas.Host
	log  *slog.Logger
	port int
	srvs []*http.Server
	wg   sync.WaitGroup
	// tailnet, once the canvas also serves there (serveTailnet).
	tailnet atomic.Pointer[tailnet]
}

// newCanvas opens <state>/canvas, unless the canvas is off.
func newCanvas(f canvasFlags, p paths, log *slog.Logger) (*canvasHost, error) {
	if f.port < 0 {
		return nil, nil
	}
	if f.port > 65535 {
		return nil, fmt.Errorf("gateway: --canvas-port %d is out of range", f.port)
	}
	log = log.With("component", "canvas")
	h, err := canvas.New(canvas.Options{Dir: filepath.Join(p.stateDir, "canvas"), Logger: log})
	if err != nil {
		return nil, err
	}
	return &canvasHost{f: f, host: h, log: log}, nil
}

// options connects the gateway to the host.
func (c *canvasHost) options() gateway.CanvasOptions {
	if c == nil {
		return gateway.CanvasOptions{}
	}
	return gateway.CanvasOptions{Host: c.host, TailnetURL: c.tailnetURL}
}

// start listens beside the gateway: on its loopback address when it has
// one, else 127.0.0.1 (pages are plain HTTP, so never beyond loopback).
// On the default port, a port already in use turns the canvas off with a
// warning; a port given with --canvas-port must be free.
func (c *canvasHost) start(gatewayAddr net.Addr) error {
	if c == nil {
		return nil
	}
	ip := net.IPv4(127, 0, 0, 1)
	port := c.f.port
	if tcp, ok := gatewayAddr.(*net.TCPAddr); ok {
		if tcp.IP.IsLoopback() {
			ip = tcp.IP
		}
		if port == 0 {
			port = tcp.Port + canvasPortOffset
		}
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if c.f.port == 0 && errors.Is(err, syscall.EADDRINUSE) {
			c.log.Warn("canvas host off: its default port is in use; choose one with --canvas-port", "addr", addr)
			return nil
		}
		return fmt.Errorf("gateway: canvas host: listen %s: %w", addr, err)
	}
	c.port = ln.Addr().(*net.TCPAddr).Port
	c.serve(ln)
	c.host.SetBaseURL("http://" + ln.Addr().String())
	c.log.Info("canvas host listening", "addr", ln.Addr().String())
	return nil
}

func (c *canvasHost) serve(ln net.Listener) {
	srv := &http.Server{Handler: c.host.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}
	c.srvs = append(c.srvs, srv)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Debug("canvas listener closed", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

// serveTailnet also serves the canvas on the tailnet (same port) when the
// gateway joined it; nodes that arrive over the tailnet then get URLs on
// the gateway's tailnet name.
func (c *canvasHost) serveTailnet(t *tailnet) error {
	if c == nil || t == nil || c.port == 0 {
		return nil
	}
	ln, err := t.listen(c.port) // tailnet.go
	if err != nil {
		return fmt.Errorf("gateway: canvas host on the tailnet: %w", err)
	}
	c.serve(ln)
	c.tailnet.Store(t)
	c.log.Info("canvas host listening on the tailnet", "port", c.port)
	return nil
}

// tailnetURL is the canvas base on the tailnet: the node's DNS name (or
// first address) and the canvas port; "" until the node is up.
func (c *canvasHost) tailnetURL() string {
	t := c.tailnet.Load()
	if t == nil {
		return ""
	}
	hosts := t.hosts()
	if len(hosts) == 0 {
		return ""
	}
	return "http://" + net.JoinHostPort(strings.TrimSuffix(strings.Trim(hosts[0], "[]"), "."), strconv.Itoa(c.port))
}

// stop closes the listener, waits for requests in flight (bounded), then
// ends the live-reload sockets.
func (c *canvasHost) stop() {
	if c == nil {
		return
	}
	for _, srv := range c.srvs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
		_ = srv.Close()
	}
	c.wg.Wait()
	if err := c.host.Close(); err != nil {
		c.log.Debug("canvas close", "err", err)
	}
}
