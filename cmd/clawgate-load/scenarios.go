package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// handshakes: signed connects of devices the gateway has never seen (each
// one is paired on the spot where the gateway pairs local devices
// silently), each closed right after hello-ok.
func (l *loader) handshakes(ctx context.Context) (*ScenarioResult, error) {
	n := l.cfg.handshakes
	ids := make([]*client.Identity, n)
	for i := range ids {
		id, err := client.NewIdentity()
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return l.connectLoop(ctx, n, l.cfg.concurrent, func(int) dialSpec { return dialSpec{} }, ids, nil)
}

// pairDevices pairs --devices devices (shared token + signature) and
// returns them with the device token each hello-ok carried.
func (l *loader) pairDevices(ctx context.Context) ([]*client.Identity, []string, error) {
	d := max(1, min(l.cfg.devices, l.cfg.handshakes))
	ids := make([]*client.Identity, d)
	tokens := make([]string, d)
	var mu sync.Mutex
	var firstErr error
	l.pool(ctx, d, min(d, 16), func(ctx context.Context, i int) {
		id, err := client.NewIdentity()
		if err == nil {
			var c *client.Client
			c, err = l.dial(ctx, dialSpec{identity: id})
			if err == nil {
				tok := c.Hello().Auth.DeviceToken
				closeQuietly(c)
				if tok == "" {
					err = fmt.Errorf("hello-ok carried no device token")
				}
				ids[i], tokens[i] = id, tok
			}
		}
		if err != nil {
			mu.Lock()
			firstErr = err
			mu.Unlock()
		}
	})
	if firstErr != nil {
		return nil, nil, fmt.Errorf("pairing %d devices: %w", d, firstErr)
	}
	return ids, tokens, nil
}

// paired: first pair --devices devices, keeping the device token each
// hello-ok carries; then reconnect them round-robin with the device token
// alone, signed.
func (l *loader) paired(ctx context.Context) (*ScenarioResult, error) {
	ids, tokens, err := l.pairDevices(ctx)
	if err != nil {
		return &ScenarioResult{Devices: max(1, min(l.cfg.devices, l.cfg.handshakes))}, err
	}
	d := len(ids)
	l.logf("[paired] %d devices paired; reconnecting with device tokens", d)
	r, err := l.connectLoop(ctx, l.cfg.handshakes, l.cfg.concurrent, func(i int) dialSpec {
		return dialSpec{identity: ids[i%d], deviceToken: tokens[i%d], noToken: true}
	}, nil, nil)
	if r != nil {
		r.Devices = d
	}
	return r, err
}

// sharedToken: pair --devices devices, then reconnect them round-robin,
// signed, with the shared token (the path of `clawgate call` and of the
// OpenClaw CLI with --token), each closed right after hello-ok.
func (l *loader) sharedToken(ctx context.Context) (*ScenarioResult, error) {
	ids, _, err := l.pairDevices(ctx)
	if err != nil {
		return &ScenarioResult{Devices: max(1, min(l.cfg.devices, l.cfg.handshakes))}, err
	}
	d := len(ids)
	l.logf("[shared] %d devices paired; reconnecting with the shared token", d)
	r, err := l.connectLoop(ctx, l.cfg.handshakes, l.cfg.concurrent, func(i int) dialSpec {
		return dialSpec{identity: ids[i%d]}
	}, nil, nil)
	if r != nil {
		r.Devices = d
	}
	return r, err
}

// connectHealth reproduces the reference OpenClaw bench: one client,
// sequentially, signed connect + health + close.
func (l *loader) connectHealth(ctx context.Context) (*ScenarioResult, error) {
	id, err := client.NewIdentity()
	if err != nil {
		return nil, err
	}
	return l.connectLoop(ctx, l.cfg.sequential, 1, func(int) dialSpec { return dialSpec{identity: id} }, nil,
		func(ctx context.Context, c *client.Client) error {
			_, err := c.Call(ctx, "health", nil)
			return err
		})
}

// connectLoop dials n times on workers goroutines. ids, when set, gives
// connection i its own identity; then, when set, runs on the open client.
// Latency is dial start to hello-ok (plus then).
func (l *loader) connectLoop(ctx context.Context, n, workers int, spec func(int) dialSpec, ids []*client.Identity,
	then func(context.Context, *client.Client) error) (*ScenarioResult, error) {
	var c counters
	start := time.Now()
	cpu0, cpuErr := l.serverCPU()
	stop := l.ticker("connect", func() string { return c.line(n, start) })
	ran, elapsed := l.pool(ctx, n, workers, func(ctx context.Context, i int) {
		sp := spec(i)
		if ids != nil {
			sp.identity = ids[i]
		}
		t0 := time.Now()
		cl, err := l.dial(ctx, sp)
		if err == nil && then != nil {
			cctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
			err = then(cctx, cl)
			cancel()
		}
		if err != nil {
			closeQuietly(cl)
			c.fail(err)
			return
		}
		c.lat.add(time.Since(t0))
		c.ok.Add(1)
		closeQuietly(cl)
	})
	stop()
	r := &ScenarioResult{Concurrency: workers}
	c.fill(r, ran, elapsed)
	if cpu1, err := l.serverCPU(); cpuErr == nil && err == nil {
		r.ServerCPU = newServerCPU(cpu1-cpu0, r.OK)
	}
	return r, checkFailures(r)
}

// serverCPU reads the gateway's CPU time (needs --pid).
func (l *loader) serverCPU() (time.Duration, error) {
	if l.cfg.pid <= 0 {
		return 0, fmt.Errorf("no --pid")
	}
	return procCPU(l.cfg.pid)
}

// health: --health-conns connections share --health-calls health calls,
// each connection one call at a time.
func (l *loader) health(ctx context.Context) (*ScenarioResult, error) {
	conns := make([]*client.Client, 0, l.cfg.healthConns)
	defer func() {
		for _, c := range conns {
			closeQuietly(c)
		}
	}()
	for range l.cfg.healthConns {
		c, err := l.dial(ctx, dialSpec{identity: l.shared})
		if err != nil {
			return nil, fmt.Errorf("open health connection: %w", err)
		}
		conns = append(conns, c)
	}
	n := l.cfg.healthCalls
	var cnt counters
	var next atomic.Int64
	start := time.Now()
	stop := l.ticker("health", func() string { return cnt.line(n, start) })
	ctx, cancel := context.WithTimeout(ctx, l.cfg.duration)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				t0 := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, l.cfg.timeout)
				_, err := c.Call(cctx, "health", nil)
				ccancel()
				if err != nil {
					cnt.fail(err)
					if c.Err() != nil {
						return
					}
					continue
				}
				cnt.lat.add(time.Since(t0))
				cnt.ok.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	r := &ScenarioResult{Concurrency: len(conns)}
	cnt.fill(r, int(min(next.Load(), int64(n))), elapsed)
	return r, checkFailures(r)
}

// idleSpec is how idle, fanout and churn connections authenticate.
func (l *loader) idleSpec() (dialSpec, error) {
	switch l.cfg.idleAuth {
	case "device":
		id, err := client.NewIdentity()
		return dialSpec{identity: id}, err
	case "token":
		return dialSpec{}, nil
	}
	return dialSpec{identity: l.shared}, nil
}

// openMany opens n connections with --concurrency workers. onEvent(i)
// gives connection i its event callback.
func (l *loader) openMany(ctx context.Context, name string, n int, onEvent func(i int) func(client.Event)) ([]*client.Client, *counters, time.Duration) {
	conns := make([]*client.Client, n)
	var c counters
	start := time.Now()
	stop := l.ticker(name, func() string { return "opening " + c.line(n, start) })
	_, elapsed := l.pool(ctx, n, l.cfg.concurrent, func(ctx context.Context, i int) {
		sp, err := l.idleSpec()
		if err != nil {
			c.fail(err)
			return
		}
		if onEvent != nil {
			sp.onEvent = onEvent(i)
		}
		t0 := time.Now()
		cl, err := l.dial(ctx, sp)
		if err != nil {
			c.fail(err)
			return
		}
		c.lat.add(time.Since(t0))
		c.ok.Add(1)
		conns[i] = cl
	})
	stop()
	return conns, &c, elapsed
}

func (l *loader) closeMany(ctx context.Context, conns []*client.Client) {
	l.pool(context.WithoutCancel(ctx), len(conns), max(l.cfg.concurrent, 256), func(_ context.Context, i int) {
		closeQuietly(conns[i])
	})
}

func countOpen(conns []*client.Client) int {
	n := 0
	for _, c := range conns {
		if c == nil {
			continue
		}
		select {
		case <-c.Done():
		default:
			n++
		}
	}
	return n
}

// idle holds --idle authenticated connections for --hold with ticks
// flowing and reports the gateway's memory per connection.
func (l *loader) idle(ctx context.Context) (*ScenarioResult, error) {
	n := l.cfg.idle
	mon := l.openMonitor(ctx)
	defer mon.close()
	sleepCtx(ctx, l.cfg.settle)
	before := mon.sample(ctx)
	ticks := make([]atomic.Int32, n)
	conns, cnt, openElapsed := l.openMany(ctx, "idle", n, func(i int) func(client.Event) {
		return func(e client.Event) {
			if e.Name == protocol.EventTick {
				ticks[i].Add(1)
			}
		}
	})
	defer l.closeMany(ctx, conns)
	r := &ScenarioResult{Concurrency: l.cfg.concurrent, Before: before}
	cnt.fill(r, n, openElapsed)
	r.PerSecond = 0
	r.OpenMs = ms(openElapsed)
	l.logf("[idle] %d open in %v; holding for %v", cnt.ok.Load(), openElapsed.Round(time.Millisecond), l.cfg.hold)
	holdStart := time.Now()
	stop := l.ticker("idle", func() string {
		var sum int64
		for i := range ticks {
			sum += int64(ticks[i].Load())
		}
		return fmt.Sprintf("holding %v/%v: %d open, %d ticks received", time.Since(holdStart).Round(time.Second), l.cfg.hold, countOpen(conns), sum)
	})
	sleepCtx(ctx, l.cfg.hold)
	stop()
	after := mon.sample(ctx)
	r.After = after
	r.Open = countOpen(conns)
	r.ConnectionsSeen = after.Connections
	minT, sum := int32(-1), int64(0)
	for i := range ticks {
		if conns[i] == nil {
			continue
		}
		t := ticks[i].Load()
		sum += int64(t)
		if minT < 0 || t < minT {
			minT = t
		}
	}
	r.TicksMin = int(max(minT, 0))
	if r.OK > 0 {
		r.TicksMean = round3(float64(sum) / float64(r.OK))
	}
	r.RSSPerConnKiB = kib(after.RSSBytes, before.RSSBytes, r.Open)
	r.AnonPerConnKiB = kib(after.AnonBytes, before.AnonBytes, r.Open)
	r.TreePerConnKiB = kib(after.TreeRSSBytes, before.TreeRSSBytes, r.Open)
	if r.RSSPerConnKiB == 0 {
		r.RSSPerConnKiB = kib(after.StatusRSS, before.StatusRSS, r.Open)
	}
	r.HeapPerConnKiB = kib(after.StatusHeap, before.StatusHeap, r.Open)
	l.closeMany(ctx, conns)
	conns = nil
	sleepCtx(ctx, l.cfg.settle)
	r.AfterClose = mon.sample(ctx)
	if r.Open < r.OK {
		return r, fmt.Errorf("%d of %d idle connections were dropped during the hold", r.OK-r.Open, r.OK)
	}
	return r, checkFailures(r)
}

// fanoutRound is the presence change being timed.
type fanoutRound struct {
	marker []byte
	t0     time.Time
	seen   []atomic.Bool
	got    atomic.Int64
	lat    *latencies
	done   chan struct{}
	n      int64
}

// fanout: --fanout watchers; each round a new client with a unique display
// name connects in ui mode (so it appears in presence), and the time from
// its dial until each watcher sees a presence event naming it is recorded.
func (l *loader) fanout(ctx context.Context) (*ScenarioResult, error) {
	n := l.cfg.fanout
	var cur atomic.Pointer[fanoutRound]
	conns, cnt, openElapsed := l.openMany(ctx, "fanout", n, func(i int) func(client.Event) {
		return func(e client.Event) {
			if e.Name != protocol.EventPresence {
				return
			}
			r := cur.Load()
			if r == nil || !bytes.Contains(e.Payload, r.marker) || r.seen[i].Swap(true) {
				return
			}
			r.lat.add(time.Since(r.t0))
			if r.got.Add(1) == r.n {
				close(r.done)
			}
		}
	})
	defer l.closeMany(ctx, conns)
	res := &ScenarioResult{Concurrency: l.cfg.concurrent, OpenMs: ms(openElapsed)}
	if int(cnt.ok.Load()) < n {
		res.FirstErrors = cnt.errs.samples()
		return res, fmt.Errorf("opened %d of %d watchers", cnt.ok.Load(), n)
	}
	lat := &latencies{}
	var trig latencies
	var errs errorLog
	tag := randHex(4)
	for round := 0; round < l.cfg.fanoutRounds && ctx.Err() == nil; round++ {
		name := fmt.Sprintf("fanout-%s-%d", tag, round)
		r := &fanoutRound{marker: []byte(`"` + name + `"`), seen: make([]atomic.Bool, n), lat: lat,
			done: make(chan struct{}), n: int64(n)}
		id, err := client.NewIdentity()
		if err != nil {
			return res, err
		}
		r.t0 = time.Now()
		cur.Store(r)
		tc, err := l.dial(ctx, dialSpec{identity: id, mode: "ui", clientID: "openclaw-tui", displayName: name})
		if err != nil {
			errs.add(err)
			cur.Store(nil)
			continue
		}
		trig.add(time.Since(r.t0))
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
		case <-ctx.Done():
		}
		cur.Store(nil)
		res.Missed += n - int(r.got.Load())
		l.logf("[fanout] round %d: %d/%d watchers saw the change", round+1, r.got.Load(), n)
		closeQuietly(tc)
		sleepCtx(ctx, 300*time.Millisecond) // let the leave broadcast pass
		res.Rounds++
	}
	d := lat.dist()
	res.Latency = &d
	res.Attempted = res.Rounds * n
	res.OK = d.N
	res.Failed = res.Missed
	// A watcher the gateway dropped explains missed deliveries; say why.
	res.Open = countOpen(conns)
	for _, c := range conns {
		if c == nil {
			continue
		}
		select {
		case <-c.Done():
			errs.add(fmt.Errorf("watcher dropped: %w", c.Err()))
		default:
		}
	}
	res.FirstErrors = errs.samples()
	if res.Rounds == 0 {
		return res, fmt.Errorf("no fanout round completed")
	}
	if res.Missed > 0 {
		return res, fmt.Errorf("%d deliveries missed", res.Missed)
	}
	return res, nil
}

// churnLoop: connect, authenticate, close, --churn times; the gateway's
// connection count, fds and memory are sampled before and after.
func (l *loader) churnLoop(ctx context.Context) (*ScenarioResult, error) {
	mon := l.openMonitor(ctx)
	defer mon.close()
	before := mon.sample(ctx)
	var c counters
	n := l.cfg.churn
	start := time.Now()
	stop := l.ticker("churn", func() string { return c.line(n, start) })
	ran, elapsed := l.pool(ctx, n, l.cfg.concurrent, func(ctx context.Context, i int) {
		sp, err := l.idleSpec()
		if err != nil {
			c.fail(err)
			return
		}
		t0 := time.Now()
		cl, err := l.dial(ctx, sp)
		if err != nil {
			c.fail(err)
			return
		}
		closeQuietly(cl)
		c.lat.add(time.Since(t0))
		c.ok.Add(1)
	})
	stop()
	sleepCtx(ctx, l.cfg.settle)
	r := &ScenarioResult{Concurrency: l.cfg.concurrent, Before: before, After: mon.sample(ctx)}
	c.fill(r, ran, elapsed)
	return r, checkFailures(r)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
