package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/store/bolt"
)

const testToken = "load-test-token-0123456789abcdef0123"

// startGateway runs a real gateway (with pairing on bbolt) in this process
// on a loopback port, with a short tick so the idle scenario sees ticks.
func startGateway(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "clawgate.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := pairing.New(db, pairing.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := authn.NewSharedSecret(testToken)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(gateway.Options{Version: "test", Token: secret, Pairing: pm, StateDir: dir,
		TickInterval: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, gateway.Listener{Listener: ln, Path: authn.PathLoopback}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		pm.Close()
		db.Close()
	})
	return "ws://" + ln.Addr().String()
}

func srcFlag() string {
	l, err := net.Listen("tcp", "127.0.0.9:0")
	if err != nil {
		return "none" // this host routes only 127.0.0.1
	}
	l.Close()
	return "127.0.0.2-127.0.0.20"
}

// TestAllScenarios runs every scenario, small, against a real gateway and
// checks the summary says what happened.
func TestAllScenarios(t *testing.T) {
	url := startGateway(t)
	var stdout, stderr bytes.Buffer
	args := []string{"--url", url, "--token", testToken, "--scenarios", "all", "--src", srcFlag(),
		"--pid", strconv.Itoa(os.Getpid()), "--concurrency", "8",
		"--handshakes", "40", "--devices", "4", "--sequential", "10",
		"--health-conns", "2", "--health-calls", "200",
		"--idle", "30", "--hold", "700ms", "--settle", "50ms",
		"--fanout", "20", "--fanout-rounds", "3", "--churn", "60", "--verify-ceiling", "500"}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s\nsummary:\n%s", err, stderr.String(), stdout.String())
	}
	var sum Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, stdout.String())
	}
	if sum.URL != url || len(sum.Results) != len(scenarioNames) {
		t.Fatalf("summary %+v", sum)
	}
	got := map[string]*ScenarioResult{}
	for _, r := range sum.Results {
		if r.Error != "" || r.Failed != 0 {
			t.Errorf("%s: error %q, %d failed, first errors %v", r.Scenario, r.Error, r.Failed, r.FirstErrors)
		}
		got[r.Scenario] = r
	}
	want := map[string]int{"handshake": 40, "paired": 40, "shared": 40, "connect-health": 10, "health": 200, "idle": 30, "fanout": 60, "churn": 60}
	for name, n := range want {
		r := got[name]
		if r == nil || r.OK != n {
			t.Errorf("%s: ok %v, want %d", name, r, n)
			continue
		}
		if r.Latency == nil || r.Latency.N != n || r.Latency.P50 <= 0 || r.Latency.P99 < r.Latency.P50 {
			t.Errorf("%s: latency %+v", name, r.Latency)
		}
	}
	for _, name := range []string{"paired", "shared"} {
		if r := got[name]; r != nil && r.Devices != 4 {
			t.Errorf("%s devices = %d", name, r.Devices)
		}
	}
	for _, v := range []*VerifyCost{sum.VerifyBefore, sum.VerifyAfter} {
		if v == nil || v.Verifies != 500 || v.CPUUsPer <= 0 || v.Cores < 1 {
			t.Fatalf("verify ceiling %+v", v)
		}
	}
	cpuSeen := 0
	for _, name := range []string{"handshake", "paired", "shared", "connect-health"} {
		sc := got[name].ServerCPU
		if sc == nil {
			continue // under 10 ms of CPU: below /proc's resolution
		}
		cpuSeen++
		if sc.UsPerOp <= 0 || sc.CPUMs <= 0 || sc.CeilingRatio <= 0 ||
			math.Abs(sc.CapacityPer*sc.UsPerOp-float64(sc.Cores)*1e6) > float64(sc.Cores)*1e4 {
			t.Errorf("%s: server CPU %+v", name, sc)
		}
	}
	if cpuSeen == 0 {
		t.Error("no connect scenario reported the gateway's CPU time")
	}
	for _, name := range []string{"health", "idle", "fanout", "churn"} {
		if got[name].ServerCPU != nil {
			t.Errorf("%s reports server CPU per connect", name)
		}
	}
	if r := got["idle"]; r != nil {
		if r.Open != 30 || r.TicksMin < 1 {
			t.Errorf("idle: %d open, at least %d ticks each", r.Open, r.TicksMin)
		}
		if r.Before == nil || r.After == nil || r.After.RSSBytes == 0 || r.After.AnonBytes == 0 || r.After.AnonBytes >= r.After.RSSBytes || r.After.FDs <= r.Before.FDs {
			t.Errorf("idle memory samples: before %+v after %+v", r.Before, r.After)
		}
		if r.After.Connections != 31 { // the 30 and the monitor
			t.Errorf("gateway status saw %d connections, want 31", r.After.Connections)
		}
	}
	if r := got["fanout"]; r != nil && (r.Rounds != 3 || r.Missed != 0) {
		t.Errorf("fanout: %d rounds, %d missed", r.Rounds, r.Missed)
	}
	if r := got["churn"]; r != nil && r.After != nil && r.After.Connections != 1 {
		t.Errorf("after churn the gateway holds %d connections, want the monitor only", r.After.Connections)
	}
	for _, s := range []string{"[handshake]", "[idle] 30 open in", "[fanout] round 3"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("progress output lacks %q", s)
		}
	}
}

// TestWrongTokenFails: a scenario that cannot authenticate is reported as
// failed, with the gateway's answer, and run returns an error.
func TestWrongTokenFails(t *testing.T) {
	url := startGateway(t)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"--url", url, "--token", "wrong", "--scenarios", "handshake",
		"--handshakes", "4", "--src", "none", "--progress=false"}, &stdout, &stderr)
	if err == nil {
		t.Fatal("run succeeded with a wrong token")
	}
	var sum Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	r := sum.Results[0]
	if r.Error == "" || r.OK != 0 || r.Failed != 4 || len(r.FirstErrors) == 0 || !strings.Contains(r.FirstErrors[0], "token mismatch") {
		t.Fatalf("result %+v", r)
	}
}

// TestProcCPU: the CPU time /proc reports for this process grows with the
// CPU this test burns (the kernel samples it per 10 ms tick, so only
// roughly).
func TestProcCPU(t *testing.T) {
	runtime.LockOSThread() // threadCPU reads this OS thread's clock
	defer runtime.UnlockOSThread()
	before, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	t0, _ := threadCPU()
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		if t1, _ := threadCPU(); t1-t0 >= 300*time.Millisecond {
			break
		}
	}
	after, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < 150*time.Millisecond {
		t.Fatalf("burned 300 ms of CPU; /proc says %v (x=%d)", d, x)
	}
	if _, err := procCPU(-1); err == nil {
		t.Fatal("procCPU(-1) succeeded")
	}
}

func TestMeasureVerify(t *testing.T) {
	v, err := measureVerify(200)
	if err != nil {
		t.Fatal(err)
	}
	if v.CPUUsPer <= 0 || v.Cores != runtime.NumCPU() || math.Abs(v.CeilingPerS*v.CPUUsPer-float64(v.Cores)*1e6) > float64(v.Cores)*1e4 {
		t.Fatalf("%+v", v)
	}
}

func TestParseSources(t *testing.T) {
	s, err := parseSources("auto", "ws://127.0.0.1:18789")
	if err != nil || s.count() != 253 {
		t.Fatalf("auto on loopback: %v %v", s.count(), err)
	}
	if s, err := parseSources("auto", "ws://[::1]:18789"); err != nil || s.count() != 0 {
		t.Fatalf("auto on ::1: %v %v", s.count(), err)
	}
	if s, err := parseSources("127.0.0.2,127.0.0.3", ""); err != nil || s.count() != 2 || s.pick().IP.String() == s.pick().IP.String() {
		t.Fatalf("list: %v", err)
	}
	for _, bad := range []string{"10.0.0.1-10.0.0.5", "192.168.1.1", "127.0.0.x"} {
		if _, err := parseSources(bad, ""); err == nil {
			t.Errorf("--src %s accepted", bad)
		}
	}
}

func TestFlags(t *testing.T) {
	var buf bytes.Buffer
	for _, args := range [][]string{
		{"--token", "t", "--scenarios", "bogus"},
		{"--token", "t", "--url", "http://x"},
		{"--token", "t", "--idle-auth", "maybe"},
		{"--url", "ws://127.0.0.1:1", "--token", ""},
	} {
		t.Setenv("CLAWGATE_GATEWAY_TOKEN", "")
		t.Setenv("OPENCLAW_GATEWAY_TOKEN", "")
		if _, err := parseFlags(args, &buf); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	c, err := parseFlags([]string{"--token", "t", "--scenarios", "all"}, &buf)
	if err != nil || len(c.scenarios) != len(scenarioNames) {
		t.Fatalf("all: %v %v", c, err)
	}
}

func TestDist(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 1000; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := distOf(d)
	if got.N != 1000 || got.P50 != 500 || got.P99 != 990 || got.P999 != 999 || got.Max != 1000 {
		t.Fatalf("%+v", got)
	}
}
