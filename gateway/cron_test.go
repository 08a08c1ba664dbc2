package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/agent"
	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/schedule"
	"github.com/clawgate/clawgate/store"
	"github.com/clawgate/clawgate/store/bolt"
)

// testClock is the gateway's injected clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *testClock) add(d time.Duration) { c.set(c.now().Add(d)) }

// fakeTurns stands in for agent runs: it records each turn and answers
// with reply (or err).
type fakeTurns struct {
	mu    sync.Mutex
	calls []fakeTurn
	reply string
	err   error
	block chan struct{} // when set, turns wait for it (or their context)
}

type fakeTurn struct{ session, message string }

func (f *fakeTurns) turn(ctx context.Context, session, message string, _ time.Duration) (string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, fakeTurn{session, message})
	reply, err, block := f.reply, f.err, f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return reply, err
}

func (f *fakeTurns) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeTurns) all() []fakeTurn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeTurn(nil), f.calls...)
}

// callErr makes a call that must fail and returns the remote error.
func callErr(t testing.TB, c *client.Client, method string, params any) *client.RemoteError {
	t.Helper()
	_, err := c.Call(context.Background(), method, params)
	var re *client.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("%s: want a remote error, got %v", method, err)
	}
	return re
}

type cronGateway struct {
	*testGateway
	clock *testClock
	turns *fakeTurns
}

// turnsBackend is an agent backend that hands each turn to fakeTurns, so
// cron and heartbeats go through the real agent-run wiring.
type turnsBackend struct{ f *fakeTurns }

func (b turnsBackend) Stream(ctx context.Context, req agent.Request, emit func(string)) (agent.Result, error) {
	reply, err := b.f.turn(ctx, req.SessionKey, req.Messages[len(req.Messages)-1].Content, 0)
	if err != nil {
		return agent.Result{}, err
	}
	if reply != "" {
		emit(reply)
	}
	return agent.Result{StopReason: "stop"}, nil
}

// startCronGateway runs a gateway on the test clock whose agent turns go
// to fakeTurns.
func startCronGateway(t *testing.T, clock *testClock, mod func(*Options)) *cronGateway {
	t.Helper()
	turns := &fakeTurns{reply: "done"}
	g := startGateway(t, func(o *Options) {
		o.Now = clock.now
		o.Agent.Backend = turnsBackend{turns}
		if mod != nil {
			mod(o)
		}
	})
	return &cronGateway{testGateway: g, clock: clock, turns: turns}
}

// advance moves the clock and lets the scheduler look.
func (g *cronGateway) advance(to time.Time) {
	g.clock.set(to)
	g.srv.auto.cron.poke()
}

func (g *cronGateway) runs(t testing.TB, c *client.Client, id string) []map[string]any {
	t.Helper()
	res := call(t, c, "cron.runs", map[string]any{"id": id, "sortDir": "asc", "limit": 200})
	var out []map[string]any
	for _, e := range res["entries"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func msOf(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

// TestCronDST: a daily job in New York fires once per day across both 2026
// changes, at the instants schedule's DST rules give (02:30 on the
// spring-forward day runs right after the jump; 01:30 on the fall-back day
// runs at its first occurrence only). An operator sees the cron events.
func TestCronDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		expr  string
		start time.Time
		fires []string // local RFC 3339
	}{
		{"30 2 * * *", time.Date(2026, 3, 7, 3, 0, 0, 0, ny),
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}},
		{"30 1 * * *", time.Date(2026, 10, 31, 2, 0, 0, 0, ny),
			[]string{"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			clock := newTestClock(tc.start)
			g := startCronGateway(t, clock, nil)
			ev := &nodeEvents{}
			op := g.dialClient(t, func(o *client.Options) { o.OnEvent = ev.add })
			job := call(t, op, "cron.add", map[string]any{"name": "daily", "sessionTarget": "main", "wakeMode": "next-heartbeat",
				"schedule": map[string]any{"kind": "cron", "expr": tc.expr, "tz": "America/New_York"},
				"payload":  map[string]any{"kind": "systemEvent", "text": "daily check"}})
			id := job["id"].(string)
			validateOfficial(t, "CronJob", job)
			for i, f := range tc.fires {
				want := mustTime(t, f)
				st := job["state"].(map[string]any)
				if i > 0 {
					st = call(t, op, "cron.get", map[string]any{"id": id})["state"].(map[string]any)
				}
				if got := time.UnixMilli(msOf(st["nextRunAtMs"])); !got.Equal(want) {
					t.Fatalf("run %d: nextRunAtMs = %s, want %s", i, got.In(ny).Format(time.RFC3339), f)
				}
				// A minute early: nothing runs.
				g.advance(want.Add(-time.Minute))
				time.Sleep(20 * time.Millisecond)
				if n := len(g.runs(t, op, id)); n != i {
					t.Fatalf("ran early: %d runs before %s", n, f)
				}
				g.advance(want)
				waitFor(t, "run at "+f, func() bool { return len(g.runs(t, op, id)) == i+1 })
				r := g.runs(t, op, id)[i]
				if got := time.UnixMilli(msOf(r["runAtMs"])); !got.Equal(want) || r["status"] != "ok" {
					t.Fatalf("run %d = %v, want at %s", i, r, f)
				}
				validateOfficial(t, "CronRunLogEntry", r)
			}
			// The operator saw started and finished for each run.
			var s, f int
			for _, p := range ev.named("cron") {
				switch p["action"] {
				case "started":
					s++
				case "finished":
					f++
				}
			}
			if s != len(tc.fires) || f != len(tc.fires) {
				t.Fatalf("cron events: %d started, %d finished, want %d each", s, f, len(tc.fires))
			}
		})
	}
}

// TestCronFallBackOnce: across the fall-back hour the same wall time does
// not run twice.
func TestCronFallBackOnce(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	clock := newTestClock(time.Date(2026, 10, 31, 2, 0, 0, 0, ny))
	g := startCronGateway(t, clock, nil)
	op := g.dialClient(t, nil)
	id := call(t, op, "cron.add", map[string]any{"name": "n", "sessionTarget": "main", "wakeMode": "next-heartbeat",
		"schedule": map[string]any{"kind": "cron", "expr": "30 1 * * *", "tz": "America/New_York"},
		"payload":  map[string]any{"kind": "systemEvent", "text": "x"}})["id"].(string)
	first := mustTime(t, "2026-11-01T01:30:00-04:00")
	g.advance(first)
	waitFor(t, "first 01:30", func() bool { return len(g.runs(t, op, id)) == 1 })
	// Walk the clock through the repeated hour in 10-minute steps.
	for at := first.Add(10 * time.Minute); at.Before(first.Add(3 * time.Hour)); at = at.Add(10 * time.Minute) {
		g.advance(at)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(g.runs(t, op, id)); n != 1 {
		t.Fatalf("%d runs on the fall-back day, want 1", n)
	}
}

// TestCronMissedAcrossRestart: a job missed while the gateway was down
// follows the policy when the same bbolt file is opened again.
func TestCronMissedAcrossRestart(t *testing.T) {
	for _, tc := range []struct {
		policy    schedule.MissedPolicy
		turns     int
		skipped   int // skipped entries
		summaryIn string
	}{
		{schedule.MissedRunAll, 3, 0, "3 run(s) missed"},
		{schedule.MissedRunOnce, 1, 1, "2 run(s) skipped"},
		{schedule.MissedSkip, 0, 1, "3 run(s) skipped"},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "clawgate.db")
			clock := newTestClock(mustTime(t, "2026-01-05T10:00:00Z"))
			open := func() *bolt.DB {
				db, err := bolt.Open(path, bolt.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return db
			}
			mod := func(db *bolt.DB) func(*Options) {
				return func(o *Options) {
					o.Automation = AutomationOptions{Cron: db, Missed: tc.policy}
				}
			}

			db := open()
			g := startCronGateway(t, clock, mod(db))
			op := g.dialClient(t, nil)
			id := call(t, op, "cron.add", map[string]any{"name": "hourly", "sessionTarget": "isolated", "wakeMode": "now",
				"schedule": map[string]any{"kind": "every", "everyMs": time.Hour.Milliseconds()},
				"payload":  map[string]any{"kind": "agentTurn", "message": "hourly report"}})["id"].(string)
			g.stop()
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			// Down from 10:00 to 13:30: the 11:00, 12:00 and 13:00 runs fell.
			clock.set(mustTime(t, "2026-01-05T13:30:00Z"))
			db = open()
			defer db.Close()
			g2 := startCronGateway(t, clock, mod(db))
			op2 := g2.dialClient(t, nil)
			waitFor(t, "catch-up runs", func() bool {
				return g2.turns.count() == tc.turns && len(g2.runs(t, op2, id)) == tc.turns+tc.skipped
			})
			time.Sleep(30 * time.Millisecond)
			if n := g2.turns.count(); n != tc.turns {
				t.Fatalf("%d catch-up turns, want %d", n, tc.turns)
			}
			for _, c := range g2.turns.all() {
				if c.session != "cron:"+id || c.message != "hourly report" {
					t.Fatalf("turn %+v", c)
				}
			}
			runs := g2.runs(t, op2, id)
			var skipped int
			joined := ""
			for _, r := range runs {
				if r["status"] == "skipped" {
					skipped++
				}
				joined += fmt.Sprint(r["summary"]) + "|"
				validateOfficial(t, "CronRunLogEntry", r)
			}
			if skipped != tc.skipped || !strings.Contains(joined, tc.summaryIn) {
				t.Fatalf("history %v: %d skipped, want %d and %q", runs, skipped, tc.skipped, tc.summaryIn)
			}
			job := call(t, op2, "cron.get", map[string]any{"id": id})
			if next := time.UnixMilli(msOf(job["state"].(map[string]any)["nextRunAtMs"])).UTC(); !next.Equal(mustTime(t, "2026-01-05T14:00:00Z")) {
				t.Fatalf("next run %s, want 14:00", next)
			}
			// And it carries on: 14:00 runs once.
			g2.advance(mustTime(t, "2026-01-05T14:00:00Z"))
			waitFor(t, "the 14:00 run", func() bool { return g2.turns.count() == tc.turns+1 })
		})
	}
}

// TestCronInterruptedRun: a run that was in progress when the process died
// is recorded as failed at the next start.
func TestCronInterruptedRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "clawgate.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := mustTime(t, "2026-01-05T10:00:00Z")
	if err := db.PutCronJob(store.CronJob{ID: "j1", Name: "crashed", Enabled: true, CreatedAtMs: now.UnixMilli(),
		UpdatedAtMs: now.UnixMilli(), Schedule: store.CronSchedule{Kind: "every", EveryMs: 3600000},
		SessionTarget: "isolated", WakeMode: "now", Payload: store.CronPayload{Kind: "agentTurn", Message: "x"},
		State: store.CronJobState{NextRunAtMs: now.Add(time.Hour).UnixMilli(), RunningAtMs: now.Add(-time.Minute).UnixMilli()}}); err != nil {
		t.Fatal(err)
	}
	g := startCronGateway(t, newTestClock(now), func(o *Options) { o.Automation.Cron = db })
	op := g.dialClient(t, nil)
	var runs []map[string]any
	waitFor(t, "the interrupted run's record", func() bool { runs = g.runs(t, op, "j1"); return len(runs) == 1 })
	if runs[0]["status"] != "error" || runs[0]["error"] != "interrupted by a gateway restart" {
		t.Fatalf("record = %v", runs[0])
	}
	job := call(t, op, "cron.get", map[string]any{"jobId": "j1"})
	st := job["state"].(map[string]any)
	if st["runningAtMs"] != nil || st["lastRunStatus"] != "error" {
		t.Fatalf("state = %v", st)
	}
}

// TestCronHistoryBounded: a job keeps only its newest History runs.
func TestCronHistoryBounded(t *testing.T) {
	clock := newTestClock(mustTime(t, "2026-01-05T10:00:00Z"))
	g := startCronGateway(t, clock, func(o *Options) { o.Automation.History = 5 })
	op := g.dialClient(t, nil)
	id := call(t, op, "cron.add", map[string]any{"name": "often", "sessionTarget": "isolated", "wakeMode": "now",
		"schedule": map[string]any{"kind": "every", "everyMs": 60000},
		"payload":  map[string]any{"kind": "agentTurn", "message": "tick"}})["id"].(string)
	for i := 1; i <= 8; i++ {
		g.advance(clock.now().Add(time.Minute))
		waitFor(t, fmt.Sprintf("run %d", i), func() bool {
			r := g.runs(t, op, id)
			return g.turns.count() == i && len(r) == min(i, 5) && msOf(r[len(r)-1]["runAtMs"]) == clock.now().UnixMilli()
		})
	}
	waitFor(t, "the 8th record", func() bool {
		r := g.runs(t, op, id)
		return len(r) == 5 && msOf(r[4]["runAtMs"]) == clock.now().UnixMilli()
	})
	res := call(t, op, "cron.runs", map[string]any{"id": id})
	if msOf(res["total"]) != 5 || len(res["entries"].([]any)) != 5 {
		t.Fatalf("runs = %v", res)
	}
	// Newest first by default.
	first := res["entries"].([]any)[0].(map[string]any)
	if msOf(first["runAtMs"]) != clock.now().UnixMilli() || first["jobName"] != "often" {
		t.Fatalf("first entry %v", first)
	}
	// All jobs' history, paged.
	page := call(t, op, "cron.runs", map[string]any{"scope": "all", "limit": 2, "offset": 1})
	if msOf(page["total"]) != 5 || len(page["entries"].([]any)) != 2 || page["hasMore"] != true || msOf(page["nextOffset"]) != 3 {
		t.Fatalf("page = %v", page)
	}
}

// TestCronMethods covers add/get/update/list/status/remove/run and the
// refusals: what the schema rejects, what this gateway does not implement,
// and scope gating.
func TestCronMethods(t *testing.T) {
	clock := newTestClock(mustTime(t, "2026-01-05T10:00:00Z"))
	g := startCronGateway(t, clock, nil)
	ev := &nodeEvents{}
	op := g.dialClient(t, func(o *client.Options) { o.OnEvent = ev.add })
	valid := func() map[string]any {
		return map[string]any{"name": "job", "sessionTarget": "isolated", "wakeMode": "now",
			"schedule": map[string]any{"kind": "every", "everyMs": 60000},
			"payload":  map[string]any{"kind": "agentTurn", "message": "hi"}}
	}
	with := func(k string, v any) map[string]any { p := valid(); p[k] = v; return p }

	for _, tc := range []struct {
		name   string
		params map[string]any
		want   string
	}{
		{"missing name", func() map[string]any { p := valid(); delete(p, "name"); return p }(), "invalid cron.add params: must have required property 'name'"},
		{"unknown field", with("bogus", 1), "invalid cron.add params: at root: unexpected property 'bogus'"},
		{"bad schedule kind", with("schedule", map[string]any{"kind": "sometimes"}), "invalid cron.add params: at /schedule: must match a schema in anyOf"},
		{"on-exit", with("schedule", map[string]any{"kind": "on-exit", "command": "x"}), "invalid cron.add params: schedule.kind \"on-exit\" is not supported by this gateway (use at, every or cron)"},
		{"command payload", with("payload", map[string]any{"kind": "command", "argv": []string{"rm"}}), "invalid cron.add params: payload.kind \"command\" is not supported by this gateway (use systemEvent or agentTurn)"},
		{"webhook", with("delivery", map[string]any{"mode": "webhook", "to": "http://x"}), "invalid cron.add params: delivery mode webhook is not supported by this gateway (use announce)"},
		{"announce without provider", with("delivery", map[string]any{"mode": "announce", "channel": "telegram", "to": "1"}), "invalid cron.add params: delivery announce needs a messaging provider, and none is configured"},
		{"trigger", with("trigger", map[string]any{"script": "x"}), "invalid cron.add params: trigger is not supported by this gateway"},
		{"main agent turn", with("sessionTarget", "main"), "invalid cron.add params: main cron jobs require payload.kind \"systemEvent\" (use sessionTarget \"isolated\" for an agent turn)"},
		{"bad tz", with("schedule", map[string]any{"kind": "cron", "expr": "0 9 * * *", "tz": "Mars/Olympus"}), "invalid cron.add params: schedule.tz: unknown time zone \"Mars/Olympus\" (use an IANA name such as America/New_York)"},
		{"bad expr", with("schedule", map[string]any{"kind": "cron", "expr": "0 25 * * *"}), "invalid cron.add params: schedule.expr: schedule: bad cron expression \"0 25 * * *\": hour: 25 is outside 0-23"},
		{"too fast", with("schedule", map[string]any{"kind": "every", "everyMs": 10}), "invalid cron.add params: schedule.everyMs must be between 1000 and 315360000000"},
		{"past at", with("schedule", map[string]any{"kind": "at", "at": "2026-01-05T09:00:00Z"}), "invalid cron.add params: schedule.at is in the past: 2026-01-05T09:00:00Z"},
		{"bad at", with("schedule", map[string]any{"kind": "at", "at": "tomorrow"}), "invalid cron.add params: invalid schedule.at: expected an ISO-8601 timestamp (got \"tomorrow\")"},
		{"unknown agent", with("agentId", "ops"), "invalid cron.add params: unknown agentId \"ops\" (this gateway runs one agent, \"main\")"},
		{"model", with("payload", map[string]any{"kind": "agentTurn", "message": "x", "model": "gpt"}), "invalid cron.add params: payload.model and payload.fallbacks are not supported by this gateway (its agent backend is configured on the gateway)"},
		{"current without session", with("sessionTarget", "current"), "invalid cron.add params: sessionTarget \"current\" needs the job's sessionKey"},
	} {
		re := callErr(t, op, "cron.add", tc.params)
		if re.Code != protocol.ErrInvalidRequest || re.Message != tc.want {
			t.Errorf("%s: %s %q, want %q", tc.name, re.Code, re.Message, tc.want)
		}
	}
	if jobs := call(t, op, "cron.list", map[string]any{"includeDisabled": true}); msOf(jobs["total"]) != 0 {
		t.Fatalf("a refused add stored a job: %v", jobs)
	}

	a := call(t, op, "cron.add", valid())
	validateOfficial(t, "CronJob", a)
	id := a["id"].(string)
	if a["enabled"] != true || msOf(a["state"].(map[string]any)["nextRunAtMs"]) != clock.now().Add(time.Minute).UnixMilli() {
		t.Fatalf("added %v", a)
	}
	b := call(t, op, "cron.add", map[string]any{"name": "nightly", "sessionTarget": "main", "wakeMode": "next-heartbeat",
		"enabled": false, "schedule": map[string]any{"kind": "cron", "expr": "0 3 * * *", "tz": "UTC"},
		"payload": map[string]any{"kind": "systemEvent", "text": "night"}})
	// get, list (enabled only by default), status.
	if got := call(t, op, "cron.get", map[string]any{"jobId": id}); got["name"] != "job" {
		t.Fatalf("get %v", got)
	}
	re := callErr(t, op, "cron.get", map[string]any{"id": "nope"})
	if re.Code != protocol.ErrInvalidRequest || re.DetailCode() != "CRON_JOB_NOT_FOUND" {
		t.Fatalf("get missing: %v", re)
	}
	if l := call(t, op, "cron.list", nil); msOf(l["total"]) != 1 {
		t.Fatalf("list %v", l)
	}
	l := call(t, op, "cron.list", map[string]any{"enabled": "all", "sortBy": "name"})
	if jobs := l["jobs"].([]any); len(jobs) != 2 || jobs[0].(map[string]any)["name"] != "job" {
		t.Fatalf("list all %v", l)
	}
	if l := call(t, op, "cron.list", map[string]any{"enabled": "all", "query": "NIGHT"}); msOf(l["total"]) != 1 {
		t.Fatalf("query %v", l)
	}
	if l := call(t, op, "cron.list", map[string]any{"enabled": "all", "scheduleKind": "cron"}); msOf(l["total"]) != 1 {
		t.Fatalf("kind filter %v", l)
	}
	st := call(t, op, "cron.status", nil)
	if msOf(st["jobs"]) != 2 || msOf(st["nextWakeAtMs"]) != clock.now().Add(time.Minute).UnixMilli() || st["storage"] != "memory" {
		t.Fatalf("status %v", st)
	}
	// update: reschedule, rename, and a patch that would break the job.
	u := call(t, op, "cron.update", map[string]any{"id": id, "patch": map[string]any{"name": "renamed",
		"schedule": map[string]any{"kind": "cron", "expr": "15 10 * * *", "tz": "UTC"}}})
	if u["name"] != "renamed" || msOf(u["state"].(map[string]any)["nextRunAtMs"]) != mustTime(t, "2026-01-05T10:15:00Z").UnixMilli() {
		t.Fatalf("update %v", u)
	}
	validateOfficial(t, "CronJob", u)
	re = callErr(t, op, "cron.update", map[string]any{"id": id, "patch": map[string]any{"sessionTarget": "main"}})
	if !strings.Contains(re.Message, "main cron jobs require") {
		t.Fatalf("bad patch: %v", re)
	}
	re = callErr(t, op, "cron.update", map[string]any{"id": id, "patch": map[string]any{"state": map[string]any{"nextRunAtMs": 1}}})
	if re.Message != "invalid cron.update params: patch.state is not supported by this gateway" {
		t.Fatalf("state patch: %v", re)
	}
	if got := call(t, op, "cron.get", map[string]any{"id": id}); got["name"] != "renamed" || got["sessionTarget"] != "isolated" {
		t.Fatalf("a refused patch changed the job: %v", got)
	}
	// run: disabled jobs only by force; if-enabled says why not.
	bid := b["id"].(string)
	if r := call(t, op, "cron.run", map[string]any{"id": bid, "mode": "if-enabled"}); r["ran"] != false || r["reason"] != "disabled" {
		t.Fatalf("run if-enabled %v", r)
	}
	if r := call(t, op, "cron.run", map[string]any{"id": id, "mode": "due"}); r["ran"] != false || r["reason"] != "not-due" {
		t.Fatalf("run due %v", r)
	}
	r := call(t, op, "cron.run", map[string]any{"id": id})
	if r["enqueued"] != true || r["runId"] == "" {
		t.Fatalf("run %v", r)
	}
	waitFor(t, "the manual run", func() bool { return len(g.runs(t, op, id)) == 1 })
	if run := g.runs(t, op, id)[0]; run["runId"] != r["runId"] || run["status"] != "ok" || run["summary"] != "done" || run["sessionKey"] != "cron:"+id {
		t.Fatalf("manual run record %v", run)
	}
	// A manual run leaves the schedule alone.
	if got := call(t, op, "cron.get", map[string]any{"id": id}); msOf(got["state"].(map[string]any)["nextRunAtMs"]) != mustTime(t, "2026-01-05T10:15:00Z").UnixMilli() {
		t.Fatalf("manual run moved the schedule: %v", got)
	}
	// remove
	if rm := call(t, op, "cron.remove", map[string]any{"id": id}); rm["removed"] != true {
		t.Fatalf("remove %v", rm)
	}
	re = callErr(t, op, "cron.remove", map[string]any{"id": id})
	if re.DetailCode() != "CRON_JOB_NOT_FOUND" {
		t.Fatalf("remove again: %v", re)
	}
	re = callErr(t, op, "cron.runs", map[string]any{"id": id})
	if re.DetailCode() != "CRON_JOB_NOT_FOUND" {
		t.Fatalf("runs of a removed job: %v", re)
	}
	// The operator saw added, updated, started, finished and removed.
	seen := map[string]bool{}
	for _, p := range ev.named("cron") {
		seen[p["action"].(string)] = true
	}
	for _, a := range []string{"added", "updated", "started", "finished", "removed"} {
		if !seen[a] {
			t.Errorf("no cron %s event", a)
		}
	}

	// Scopes: a read-only operator lists but cannot change; without read
	// no cron events arrive.
	ro := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeRead} })
	call(t, ro, "cron.list", nil)
	call(t, ro, "cron.status", nil)
	_, err := ro.Call(context.Background(), "cron.add", valid())
	wantRemote(t, err, protocol.ErrForbidden, "missing scope: operator.admin", protocol.DetailMissingScope)
	_, err = ro.Call(context.Background(), "cron.run", map[string]any{"id": bid})
	wantRemote(t, err, protocol.ErrForbidden, "missing scope: operator.admin", protocol.DetailMissingScope)
	wev := &nodeEvents{}
	wo := g.dialClient(t, func(o *client.Options) { o.Scopes = []string{protocol.ScopeApprovals}; o.OnEvent = wev.add })
	call(t, op, "cron.run", map[string]any{"id": bid})
	waitFor(t, "the second manual run", func() bool { return len(g.runs(t, op, bid)) == 1 })
	call(t, wo, "health", nil) // a round trip after the run: its events would be queued before this answer
	if n := len(wev.named("cron")); n != 0 {
		t.Fatalf("a connection without operator.read got %d cron events", n)
	}
}

// TestCronAgentTurnDelivery: an agentTurn job announces its reply through
// the provider hook; a failed delivery fails the run unless best effort.
// A one-shot that succeeds is deleted.
func TestCronAgentTurnDelivery(t *testing.T) {
	clock := newTestClock(mustTime(t, "2026-01-05T10:00:00Z"))
	g := startCronGateway(t, clock, nil)
	g.turns.reply = "the weather is fine"
	var mu sync.Mutex
	var sent []string
	sendErr := error(nil)
	g.srv.auto.setHooks(g.srv.agentTurn, func(_ context.Context, d store.CronDelivery, text string) error {
		mu.Lock()
		defer mu.Unlock()
		if sendErr != nil {
			return sendErr
		}
		sent = append(sent, d.Channel+"/"+d.AccountID+"/"+d.To+"/"+d.ThreadID+": "+text)
		return nil
	})
	op := g.dialClient(t, nil)
	at := clock.now().Add(30 * time.Second).Format(time.RFC3339)
	j := call(t, op, "cron.add", map[string]any{"name": "once", "sessionTarget": "session:telegram:default:42", "wakeMode": "now",
		"schedule": map[string]any{"kind": "at", "at": at},
		"payload":  map[string]any{"kind": "agentTurn", "message": "weather?", "timeoutSeconds": 30},
		"delivery": map[string]any{"mode": "announce", "channel": "telegram", "to": "42", "threadId": 7}})
	id := j["id"].(string)
	validateOfficial(t, "CronJob", j)
	g.advance(clock.now().Add(30 * time.Second))
	waitFor(t, "the one-shot to run and go", func() bool {
		l := call(t, op, "cron.list", map[string]any{"enabled": "all"})
		return msOf(l["total"]) == 0
	})
	mu.Lock()
	got := append([]string(nil), sent...)
	mu.Unlock()
	if len(got) != 1 || got[0] != "telegram//42/7: the weather is fine" {
		t.Fatalf("sent %q", got)
	}
	if c := g.turns.all(); len(c) != 1 || c[0].session != "telegram:default:42" {
		t.Fatalf("turns %+v", c)
	}
	_ = id

	// Delivery fails: the run fails (not best effort) and the one-shot is
	// kept, disabled, for inspection.
	mu.Lock()
	sendErr = errors.New("chat not found")
	mu.Unlock()
	at = clock.now().Add(time.Minute).Format(time.RFC3339)
	id = call(t, op, "cron.add", map[string]any{"name": "once more", "sessionTarget": "isolated", "wakeMode": "now",
		"schedule": map[string]any{"kind": "at", "at": at},
		"payload":  map[string]any{"kind": "agentTurn", "message": "weather?"},
		"delivery": map[string]any{"mode": "announce", "channel": "telegram", "to": "42"}})["id"].(string)
	g.advance(clock.now().Add(time.Minute))
	var runs []map[string]any
	waitFor(t, "the failed delivery", func() bool { runs = g.runs(t, op, id); return len(runs) == 1 })
	if runs[0]["status"] != "error" || runs[0]["deliveryStatus"] != "not-delivered" || runs[0]["error"] != "delivery failed: chat not found" || runs[0]["delivered"] != false {
		t.Fatalf("run %v", runs[0])
	}
	if job := call(t, op, "cron.get", map[string]any{"id": id}); job["enabled"] != false || job["state"].(map[string]any)["lastDeliveryStatus"] != "not-delivered" {
		t.Fatalf("job %v", job)
	}
}

// TestCronAgentUnavailable: with no agent backend an agentTurn run fails
// with a clear error instead of hanging.
func TestCronAgentUnavailable(t *testing.T) {
	clock := newTestClock(mustTime(t, "2026-01-05T10:00:00Z"))
	g := startCronGateway(t, clock, func(o *Options) { o.Agent.Backend = nil })
	op := g.dialClient(t, nil)
	id := call(t, op, "cron.add", map[string]any{"name": "x", "sessionTarget": "isolated", "wakeMode": "now",
		"schedule": map[string]any{"kind": "every", "everyMs": 60000},
		"payload":  map[string]any{"kind": "agentTurn", "message": "hi"}})["id"].(string)
	call(t, op, "cron.run", map[string]any{"id": id})
	var runs []map[string]any
	waitFor(t, "the run", func() bool { runs = g.runs(t, op, id); return len(runs) == 1 })
	if runs[0]["status"] != "error" || runs[0]["error"] != "agent runs are not configured on this gateway" {
		t.Fatalf("run %v", runs[0])
	}
}

// TestCronShutdownCancelsRun: stopping the gateway cancels a running turn
// and Serve returns.
func TestCronShutdownCancelsRun(t *testing.T) {
	clock := newTestClock(mustTime(t, "2026-01-05T10:00:00Z"))
	g := startCronGateway(t, clock, nil)
	g.turns.block = make(chan struct{})
	op := g.dialClient(t, nil)
	id := call(t, op, "cron.add", map[string]any{"name": "slow", "sessionTarget": "isolated", "wakeMode": "now",
		"schedule": map[string]any{"kind": "every", "everyMs": 60000},
		"payload":  map[string]any{"kind": "agentTurn", "message": "hi"}})["id"].(string)
	call(t, op, "cron.run", map[string]any{"id": id})
	waitFor(t, "the turn to start", func() bool { return g.turns.count() == 1 })
	if r := call(t, op, "cron.run", map[string]any{"id": id}); r["ran"] != false || r["reason"] != "already-running" {
		t.Fatalf("second run %v", r)
	}
	g.stop() // fails the test if Serve does not return
}
