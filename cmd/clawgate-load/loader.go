package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// loader runs scenarios against one gateway.
type loader struct {
	cfg    *config
	out    io.Writer // progress
	src    *sources
	dialer *websocket.Dialer
	shared *client.Identity // the "shared-device" identity
}

func newLoader(cfg *config, stderr io.Writer) (*loader, error) {
	src, err := parseSources(cfg.src, cfg.url)
	if err != nil {
		return nil, err
	}
	id, err := client.NewIdentity()
	if err != nil {
		return nil, err
	}
	return &loader{cfg: cfg, out: stderr, src: src, dialer: newDialer(src, cfg.timeout), shared: id}, nil
}

func (l *loader) runAll(ctx context.Context) *Summary {
	sum := &Summary{Target: l.cfg.label, URL: l.cfg.url, StartedAt: time.Now().UTC(),
		Sources: l.src.count(), PID: l.cfg.pid}
	sum.VerifyBefore = l.verifyCeiling()
	for _, name := range l.cfg.scenarios {
		if ctx.Err() != nil {
			sum.Results = append(sum.Results, &ScenarioResult{Scenario: name, Error: "interrupted"})
			continue
		}
		l.logf("[%s] %s: starting", name, l.cfg.label)
		start := time.Now()
		r, err := l.scenario(name)(ctx)
		if r == nil {
			r = &ScenarioResult{}
		}
		r.Scenario = name
		if err != nil {
			r.Error = err.Error()
			l.logf("[%s] failed: %v", name, err)
		}
		l.logf("[%s] done in %v: %s", name, time.Since(start).Round(time.Millisecond), brief(r))
		sum.Results = append(sum.Results, r)
	}
	sum.VerifyAfter = l.verifyCeiling()
	if ceil := meanCeiling(sum.VerifyBefore, sum.VerifyAfter); ceil > 0 {
		for _, r := range sum.Results {
			if r.ServerCPU != nil {
				r.ServerCPU.CeilingRatio = round3(r.ServerCPU.CapacityPer / ceil)
			}
		}
	}
	return sum
}

// verifyCeiling measures the ed25519 verify ceiling, when asked to.
func (l *loader) verifyCeiling() *VerifyCost {
	if l.cfg.verifies <= 0 {
		return nil
	}
	v, err := measureVerify(l.cfg.verifies)
	if err != nil {
		l.logf("verify ceiling: %v", err)
		return nil
	}
	l.logf("ed25519 verify: %.1f µs CPU each, ceiling %.0f/s on %d cores", v.CPUUsPer, v.CeilingPerS, v.Cores)
	return v
}

// meanCeiling is the mean of the measured ceilings (0 when none).
func meanCeiling(vs ...*VerifyCost) float64 {
	sum, n := 0.0, 0
	for _, v := range vs {
		if v != nil {
			sum += v.CeilingPerS
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

func (l *loader) scenario(name string) func(context.Context) (*ScenarioResult, error) {
	switch name {
	case "handshake":
		return l.handshakes
	case "paired":
		return l.paired
	case "shared":
		return l.sharedToken
	case "connect-health":
		return l.connectHealth
	case "health":
		return l.health
	case "idle":
		return l.idle
	case "fanout":
		return l.fanout
	case "churn":
		return l.churnLoop
	}
	return func(context.Context) (*ScenarioResult, error) { return nil, fmt.Errorf("unknown scenario") }
}

func brief(r *ScenarioResult) string {
	s := fmt.Sprintf("ok %d failed %d", r.OK, r.Failed)
	if r.PerSecond > 0 {
		s += fmt.Sprintf(", %.1f/s", r.PerSecond)
	}
	if r.Latency != nil && r.Latency.N > 0 {
		s += fmt.Sprintf(", p50 %.2f ms p99 %.2f ms p999 %.2f ms", r.Latency.P50, r.Latency.P99, r.Latency.P999)
	}
	if r.ServerCPU != nil {
		s += fmt.Sprintf(", gateway CPU %.0f µs each (capacity %.0f/s on %d cores)", r.ServerCPU.UsPerOp, r.ServerCPU.CapacityPer, r.ServerCPU.Cores)
	}
	if r.RSSPerConnKiB != 0 || r.HeapPerConnKiB != 0 {
		s += fmt.Sprintf(", %.2f KiB RSS/conn (%.2f KiB anonymous), %.2f KiB heap/conn", r.RSSPerConnKiB, r.AnonPerConnKiB, r.HeapPerConnKiB)
	}
	return s
}

func (l *loader) logf(format string, args ...any) {
	fmt.Fprintf(l.out, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
}

// ticker prints line() once a second until the returned stop is called.
func (l *loader) ticker(name string, line func() string) (stop func()) {
	if !l.cfg.progress {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				l.logf("[%s] %s", name, line())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// pool runs job(i) for i in [0,n) on workers goroutines, stopping early at
// --max-duration or when ctx ends. It returns how many jobs ran and the
// wall time.
func (l *loader) pool(ctx context.Context, n, workers int, job func(ctx context.Context, i int)) (int, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.duration)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				job(ctx, i)
			}
		}()
	}
	wg.Wait()
	ran := min(int(next.Load()), n)
	return ran, time.Since(start)
}

// counters is the usual progress state of a loop of attempts.
type counters struct {
	ok, failed atomic.Int64
	errs       errorLog
	lat        latencies
}

func (c *counters) line(total int, start time.Time) string {
	ok, f := c.ok.Load(), c.failed.Load()
	rate := float64(ok) / time.Since(start).Seconds()
	return fmt.Sprintf("%d/%d ok, %d failed, %.0f/s", ok, total, f, rate)
}

func (c *counters) fill(r *ScenarioResult, attempted int, elapsed time.Duration) {
	r.Attempted = attempted
	r.OK = int(c.ok.Load())
	r.Failed = int(c.failed.Load())
	r.FirstErrors = c.errs.samples()
	r.ElapsedMs = ms(elapsed)
	if elapsed > 0 {
		r.PerSecond = round3(float64(r.OK) / elapsed.Seconds())
	}
	d := c.lat.dist()
	r.Latency = &d
}

func (c *counters) fail(err error) {
	c.failed.Add(1)
	c.errs.add(err)
}

// errTooManyFailures ends a scenario that is clearly not working.
var errTooManyFailures = errors.New("more than half of the attempts failed")

func checkFailures(r *ScenarioResult) error {
	if r.Attempted > 0 && r.Failed*2 > r.Attempted {
		return errTooManyFailures
	}
	return nil
}

// monitor is an admin connection used to read status between phases.
type monitor struct {
	l *loader
	c *client.Client
}

func (l *loader) openMonitor(ctx context.Context) *monitor {
	c, err := l.dial(ctx, dialSpec{identity: l.shared})
	if err != nil {
		l.logf("monitor connection failed (no status samples): %v", err)
		return &monitor{l: l}
	}
	return &monitor{l: l, c: c}
}

func (m *monitor) close() { closeQuietly(m.c) }

// sample reads /proc (with --pid) and the status method.
func (m *monitor) sample(ctx context.Context) *MemSample {
	s := &MemSample{}
	if m.l.cfg.pid > 0 {
		if p, err := procSample(m.l.cfg.pid); err == nil {
			s = p
		} else {
			m.l.logf("read /proc/%d: %v", m.l.cfg.pid, err)
		}
	}
	if m.c != nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		raw, err := m.c.Call(cctx, "status", nil)
		cancel()
		if err == nil {
			var st protocol.StatusResult
			if json.Unmarshal(raw, &st) == nil {
				s.Connections = st.Connections.Total
				if st.ProcessMemory != nil {
					s.StatusRSS = st.ProcessMemory.RSSBytes
					s.StatusHeap = st.ProcessMemory.HeapUsedBytes
				}
			}
		}
	}
	return s
}

func kib(after, before uint64, n int) float64 {
	if n <= 0 || after == 0 || before == 0 {
		return 0
	}
	return round3((float64(after) - float64(before)) / 1024 / float64(n))
}
