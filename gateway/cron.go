package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // cron time zones work on hosts without zoneinfo

	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/schedule"
	"github.com/clawgate/clawgate/store"
)

// Cron (protocol §4.1 Automation): cron.list|get|status|add|update|
// remove|run|runs. Jobs are kept in the store, one transaction per change;
// a scheduler goroutine (owned by Serve) queues due jobs and one worker
// runs them in order. A job either queues a system event for the agent's
// next heartbeat (payload systemEvent, session "main") or runs an agent
// turn (payload agentTurn, session "cron:<jobId>", "session:<key>" or the
// creating session), optionally announcing the reply through a messaging
// provider. Activations that fell while the gateway was down follow the
// configured missed-run policy at start. Every run is recorded in the
// job's bounded history and announced with cron events (started, then
// finished with status ok, error or skipped).

// AutomationOptions configure cron jobs and heartbeats.
type AutomationOptions struct {
	// Cron persists jobs and run history; nil keeps them in memory (lost
	// on restart; tests of the bare core).
	Cron store.CronStore
	// Missed is what happens to activations that fell while the gateway
	// was not running: skip, run-once (default) or run-all.
	Missed schedule.MissedPolicy
	// MaxMissed bounds the catch-up runs of run-all per job (default 10).
	MaxMissed int
	// History is how many runs each job keeps (default 200).
	History int
	// MaxJobs bounds the number of jobs (default 500).
	MaxJobs int
	// Location is the zone of cron expressions without a tz (default
	// time.Local).
	Location *time.Location
	// HeartbeatEvery is the heartbeat period; 0 turns periodic heartbeats
	// off (wake "now" still runs one).
	HeartbeatEvery time.Duration
	// HeartbeatPrompt opens each heartbeat turn.
	HeartbeatPrompt string
}

func (o *AutomationOptions) setDefaults() {
	if o.Missed == "" {
		o.Missed = schedule.MissedRunOnce
	}
	if o.MaxMissed <= 0 {
		o.MaxMissed = 10
	}
	if o.History <= 0 {
		o.History = 200
	}
	if o.MaxJobs <= 0 {
		o.MaxJobs = 500
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.HeartbeatPrompt == "" {
		o.HeartbeatPrompt = defaultHeartbeatPrompt
	}
}

// Cron limits.
const (
	cronMinEvery        = time.Second
	cronMaxEvery        = 10 * 365 * 24 * time.Hour
	cronMaxAhead        = 10 * 365 * 24 * time.Hour
	cronAtGrace         = time.Minute // an "at" this far in the past still runs at once
	cronDefaultTimeout  = 10 * time.Minute
	cronMaxTimeout      = 24 * time.Hour
	cronMaxQueue        = 1000
	cronMaxText         = 100000 // runes of a message or event text
	cronMaxName         = 256
	cronMaxDescription  = 4096
	cronPreviewRunes    = 200
	cronRecheckInterval = time.Minute // the scheduler wakes at least this often
	mainSessionKey      = "main"
	mainAgentID         = "main"
)

// Cron run triggers.
const (
	triggerSchedule = "schedule"
	triggerManual   = "manual"
	triggerMissed   = "missed"
)

// Run statuses (CronRunLogEntry.status).
const (
	cronOK      = "ok"
	cronError   = "error"
	cronSkipped = "skipped"
)

// automation holds cron and heartbeats and the two ways they reach out:
// turn runs an agent turn to its end, send delivers a message through a
// provider. Both are nil until wired (wireAutomation); jobs that need them
// then fail with a clear error.
type automation struct {
	srv   *Server
	opts  AutomationOptions
	cron  *cronService
	beats *heartbeats

	hookMu sync.RWMutex
	turn   turnFunc
	send   sendFunc
}

// turnFunc runs one agent turn in sessionKey and returns the reply.
type turnFunc func(ctx context.Context, sessionKey, message string, timeout time.Duration) (string, error)

// sendFunc delivers text as d says.
type sendFunc func(ctx context.Context, d store.CronDelivery, text string) error

func (a *automation) hooks() (turnFunc, sendFunc) {
	a.hookMu.RLock()
	defer a.hookMu.RUnlock()
	return a.turn, a.send
}

// setHooks replaces the hooks (wiring, and tests).
func (a *automation) setHooks(turn turnFunc, send sendFunc) {
	a.hookMu.Lock()
	a.turn, a.send = turn, send
	a.hookMu.Unlock()
}

// registerAutomation builds cron and heartbeats and registers their
// methods (called from registerMethods).
func (s *Server) registerAutomation() {
	o := s.opts.Automation
	o.setDefaults()
	a := &automation{srv: s, opts: o}
	st := o.Cron
	if st == nil {
		st = newMemCron()
	}
	a.cron = &cronService{a: a, st: st, persistent: o.Cron != nil, jobs: map[string]*cronEntry{},
		kick: make(chan struct{}, 1), work: make(chan struct{}, 1)}
	a.beats = newHeartbeats(a)
	s.auto = a
	cs := a.cron
	s.handle("cron.list", false, cs.methodList)
	s.handle("cron.get", false, cs.methodGet)
	s.handle("cron.status", false, cs.methodStatus)
	s.handle("cron.add", false, cs.methodAdd)
	s.handle("cron.update", false, cs.methodUpdate)
	s.handle("cron.remove", false, cs.methodRemove)
	s.handle("cron.run", false, cs.methodRun)
	s.handle("cron.runs", false, cs.methodRuns)
	a.beats.register()
	s.wireAutomation()
}

// automationEvents are the events cron and heartbeats emit.
func (s *Server) automationEvents() []string {
	if s.auto == nil {
		return nil
	}
	return []string{protocol.EventHeartbeat, eventCron}
}

const eventCron = "cron"

// startAutomation starts the scheduler, the cron worker and the heartbeat
// loop; stop cancels them and waits (running turns are canceled).
func (s *Server) startAutomation() (stop func()) {
	a := s.auto
	if a == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	a.cron.start(ctx, &wg)
	a.beats.start(ctx, &wg)
	return func() {
		cancel()
		wg.Wait()
	}
}

// ---------------------------------------------------------------------------
// The service.

type cronService struct {
	a          *automation
	st         store.CronStore
	persistent bool

	mu      sync.Mutex
	loaded  bool
	loadErr error
	jobs    map[string]*cronEntry
	queue   []cronTask
	running string // job id of the run in progress
	kick    chan struct{}
	work    chan struct{}
}

type cronEntry struct {
	job   store.CronJob
	sched schedule.Schedule
	// scheduled: a schedule-triggered run is queued; manual: a manual or
	// catch-up run is queued.
	scheduled bool
	manual    int
}

type cronTask struct {
	jobID   string
	runID   string
	trigger string
	note    string
}

func (cs *cronService) now() time.Time { return cs.a.srv.opts.Now() }

// poke wakes the scheduler to look again (after a change, or when a test
// moved the clock).
func (cs *cronService) poke() {
	select {
	case cs.kick <- struct{}{}:
	default:
	}
}

func (cs *cronService) signalWork() {
	select {
	case cs.work <- struct{}{}:
	default:
	}
}

// loadLocked reads the jobs once.
func (cs *cronService) loadLocked() error {
	if cs.loaded {
		return cs.loadErr
	}
	cs.loaded = true
	jobs, err := cs.st.CronJobs()
	if err != nil {
		cs.loadErr = fmt.Errorf("cron: load jobs: %w", err)
		cs.a.srv.log.Error("cron jobs unavailable", "err", err)
		return cs.loadErr
	}
	for _, j := range jobs {
		sched, err := cs.a.buildSchedule(j.ID, j.Schedule, time.UnixMilli(j.CreatedAtMs))
		if err != nil {
			// A stored job whose schedule no longer parses (a zone removed
			// from tzdata, say) stays listed but never runs.
			cs.a.srv.log.Warn("cron job schedule unusable", "job", j.ID, "err", err)
		}
		cs.jobs[j.ID] = &cronEntry{job: j, sched: sched}
	}
	return nil
}

func (cs *cronService) ready() *protocol.Error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if err := cs.loadLocked(); err != nil {
		return &protocol.Error{Code: protocol.ErrUnavailable, Message: "cron store unavailable", Retryable: true, RetryAfterMs: 5000}
	}
	return nil
}

// start applies the missed-run policy, then runs the scheduler and worker.
func (cs *cronService) start(ctx context.Context, wg *sync.WaitGroup) {
	cs.recover()
	wg.Add(2)
	go func() { defer wg.Done(); cs.scheduleLoop(ctx) }()
	go func() { defer wg.Done(); cs.workLoop(ctx) }()
}

// recover handles what the last process left: runs it was in the middle
// of are recorded as failed, and activations it missed follow the policy.
func (cs *cronService) recover() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.loadLocked() != nil {
		return
	}
	now := cs.now()
	policy := cs.a.opts.Missed
	ids := make([]string, 0, len(cs.jobs))
	for id := range cs.jobs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		e := cs.jobs[id]
		j := &e.job
		if j.State.RunningAtMs != 0 {
			started := j.State.RunningAtMs
			const msg = "interrupted by a gateway restart"
			errs := 1
			if c := j.State.ConsecutiveErrors; c != nil {
				errs += *c
			}
			j.State.RunningAtMs, j.State.LastRunAtMs, j.State.LastRunStatus, j.State.LastError = 0, started, cronError, msg
			j.State.ConsecutiveErrors = &errs
			cs.recordLocked(e, store.CronRun{Ts: now.UnixMilli(), JobID: id, Action: "finished", Status: cronError,
				Error: msg, RunAtMs: started, RunID: newUUID(), NextRunAtMs: j.State.NextRunAtMs}, false)
		}
		if !j.Enabled || e.sched == nil {
			continue
		}
		next := time.UnixMilli(j.State.NextRunAtMs)
		if j.State.NextRunAtMs == 0 || next.After(now) {
			if j.State.NextRunAtMs == 0 && j.Schedule.Kind != "at" {
				j.State.NextRunAtMs = msOrZero(e.sched.Next(now))
				cs.putLocked(e)
			}
			continue
		}
		// Activations in [next, now] were missed.
		total := countActivations(e.sched, next.Add(-time.Millisecond), now, 100000)
		runs := schedule.Missed(e.sched, next.Add(-time.Millisecond), now, policy, cs.a.opts.MaxMissed)
		j.State.NextRunAtMs = msOrZero(e.sched.Next(now))
		cs.putLocked(e)
		note := fmt.Sprintf("%d run(s) missed while the gateway was down; missed-run policy %s", total, policy)
		cs.a.srv.log.Info("cron job missed runs", "job", id, "missed", total, "policy", string(policy), "catchUp", len(runs))
		for range runs {
			if len(cs.queue) >= cronMaxQueue {
				break
			}
			e.manual++
			cs.queue = append(cs.queue, cronTask{jobID: id, runID: newUUID(), trigger: triggerMissed, note: note})
		}
		if skipped := total - len(runs); skipped > 0 {
			cs.recordLocked(e, store.CronRun{Ts: now.UnixMilli(), JobID: id, Action: "finished", Status: cronSkipped,
				Summary: fmt.Sprintf("%d run(s) skipped: %s", skipped, note), RunID: newUUID(),
				NextRunAtMs: j.State.NextRunAtMs}, true)
		}
		if j.Schedule.Kind == "at" && len(runs) == 0 {
			j.Enabled = false
			cs.putLocked(e)
		}
	}
	if len(cs.queue) > 0 {
		cs.signalWork()
	}
}

// countActivations counts activations in (after, until], up to limit.
func countActivations(s schedule.Schedule, after, until time.Time, limit int) int {
	n := 0
	for t := s.Next(after); !t.IsZero() && !t.After(until) && n < limit; t = s.Next(t) {
		n++
	}
	return n
}

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// scheduleLoop queues due jobs, then sleeps until the next is due (at most
// cronRecheckInterval, so clock changes are noticed) or until poked.
func (cs *cronService) scheduleLoop(ctx context.Context) {
	for {
		wait := cs.queueDue()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-cs.kick:
			t.Stop()
		}
	}
}

// queueDue queues every enabled job whose time has come and returns how
// long to sleep.
func (cs *cronService) queueDue() time.Duration {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.loadLocked() != nil {
		return cronRecheckInterval
	}
	now := cs.now()
	nowMs := now.UnixMilli()
	wait := cronRecheckInterval
	ids := make([]string, 0)
	for id, e := range cs.jobs {
		j := &e.job
		if !j.Enabled || e.sched == nil || j.State.NextRunAtMs == 0 || e.scheduled {
			continue
		}
		if j.State.NextRunAtMs <= nowMs {
			ids = append(ids, id)
			continue
		}
		if d := time.Duration(j.State.NextRunAtMs-nowMs) * time.Millisecond; d < wait {
			wait = d
		}
	}
	// Earliest first, so one busy minute keeps its order.
	sort.Slice(ids, func(a, b int) bool {
		ja, jb := cs.jobs[ids[a]].job.State.NextRunAtMs, cs.jobs[ids[b]].job.State.NextRunAtMs
		if ja != jb {
			return ja < jb
		}
		return ids[a] < ids[b]
	})
	for _, id := range ids {
		if len(cs.queue) >= cronMaxQueue {
			cs.a.srv.log.Warn("cron queue full; job waits", "job", id)
			break
		}
		cs.jobs[id].scheduled = true
		cs.queue = append(cs.queue, cronTask{jobID: id, runID: newUUID(), trigger: triggerSchedule})
	}
	if len(ids) > 0 {
		cs.signalWork()
	}
	return max(wait, time.Millisecond)
}

// workLoop runs queued tasks one at a time.
func (cs *cronService) workLoop(ctx context.Context) {
	for {
		task, ok := cs.dequeue()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-cs.work:
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		cs.runTask(ctx, task)
	}
}

func (cs *cronService) dequeue() (cronTask, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.queue) == 0 {
		return cronTask{}, false
	}
	t := cs.queue[0]
	cs.queue = cs.queue[1:]
	return t, true
}

// runTask starts, executes and records one run.
func (cs *cronService) runTask(ctx context.Context, task cronTask) {
	cs.mu.Lock()
	e := cs.jobs[task.jobID]
	if e == nil {
		cs.mu.Unlock()
		return
	}
	switch task.trigger {
	case triggerSchedule:
		e.scheduled = false
	default:
		e.manual--
	}
	now := cs.now()
	j := &e.job
	if task.trigger == triggerSchedule {
		if !j.Enabled || j.State.NextRunAtMs == 0 || j.State.NextRunAtMs > now.UnixMilli() {
			cs.mu.Unlock() // disabled or rescheduled since it was queued
			return
		}
		if j.Schedule.Kind == "at" {
			j.State.NextRunAtMs = 0
		} else {
			j.State.NextRunAtMs = msOrZero(e.sched.Next(now))
		}
	}
	j.State.RunningAtMs = now.UnixMilli()
	cs.running = task.jobID
	cs.putLocked(e)
	job := e.job
	cs.mu.Unlock()

	cs.emit(map[string]any{"jobId": job.ID, "action": "started", "runAtMs": now.UnixMilli(), "runId": task.runID,
		"job": publicJob(job)})
	out := cs.execute(ctx, job, task)
	end := cs.now()
	dur := max(0, end.Sub(now).Milliseconds())
	run := store.CronRun{Ts: end.UnixMilli(), JobID: job.ID, Action: "finished", Status: out.status, Error: out.err,
		Summary: joinNote(out.summary, task.note), RunID: task.runID, RunAtMs: now.UnixMilli(), DurationMs: &dur,
		SessionKey: out.sessionKey, DeliveryStatus: out.deliveryStatus, DeliveryError: out.deliveryErr}
	if out.deliveryStatus == "delivered" || out.deliveryStatus == "not-delivered" {
		d := out.deliveryStatus == "delivered"
		run.Delivered = &d
	}

	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.running = ""
	e = cs.jobs[job.ID]
	if e == nil {
		return // removed while it ran; its history went with it
	}
	j = &e.job
	j.State.RunningAtMs = 0
	j.State.LastRunAtMs = now.UnixMilli()
	j.State.LastRunStatus = out.status
	j.State.LastDurationMs = &dur
	errs := 0
	if j.State.ConsecutiveErrors != nil {
		errs = *j.State.ConsecutiveErrors
	}
	if out.status == cronError {
		j.State.LastError = out.err
		errs++
	} else {
		j.State.LastError = ""
		errs = 0
	}
	j.State.ConsecutiveErrors = &errs
	if out.deliveryStatus != "" {
		j.State.LastDeliveryStatus = out.deliveryStatus
		j.State.LastDelivered = run.Delivered
		j.State.LastDeliveryError = out.deliveryErr
	}
	remove := false
	if j.Schedule.Kind == "at" && task.trigger != triggerManual {
		// A one-shot is done: deleted after success unless told to keep
		// it, disabled otherwise (so a failure can be inspected).
		if out.status == cronOK && (j.DeleteAfterRun == nil || *j.DeleteAfterRun) {
			remove = true
		} else {
			j.Enabled = false
		}
	}
	run.NextRunAtMs = j.State.NextRunAtMs
	cs.recordLocked(e, run, true)
	if remove {
		if err := cs.st.DeleteCronJob(job.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			cs.a.srv.log.Error("cron: delete finished one-shot", "job", job.ID, "err", err)
			return
		}
		delete(cs.jobs, job.ID)
		cs.emit(map[string]any{"jobId": job.ID, "action": "removed", "job": publicJob(e.job)})
	}
}

func joinNote(summary, note string) string {
	switch {
	case note == "":
		return summary
	case summary == "":
		return note
	}
	return summary + " (" + note + ")"
}

// recordLocked stores the job with its new state and the run, and (when
// announce) sends the finished event.
func (cs *cronService) recordLocked(e *cronEntry, run store.CronRun, announce bool) {
	if err := cs.st.RecordCronRun(e.job, run, cs.a.opts.History); err != nil {
		cs.a.srv.log.Error("cron: record run", "job", e.job.ID, "err", err)
	}
	if !announce {
		return
	}
	ev := map[string]any{"jobId": run.JobID, "action": "finished", "status": run.Status, "runId": run.RunID,
		"job": publicJob(e.job)}
	if run.RunAtMs != 0 {
		ev["runAtMs"] = run.RunAtMs
	}
	if run.DurationMs != nil {
		ev["durationMs"] = *run.DurationMs
	}
	if run.NextRunAtMs != 0 {
		ev["nextRunAtMs"] = run.NextRunAtMs
	}
	for k, v := range map[string]string{"error": run.Error, "summary": run.Summary, "sessionKey": run.SessionKey,
		"deliveryStatus": run.DeliveryStatus, "deliveryError": run.DeliveryError} {
		if v != "" {
			ev[k] = v
		}
	}
	cs.emit(ev)
}

func (cs *cronService) putLocked(e *cronEntry) {
	if err := cs.st.PutCronJob(e.job); err != nil {
		cs.a.srv.log.Error("cron: store job", "job", e.job.ID, "err", err)
	}
}

// emit broadcasts a cron event (operator.read by the event gate).
func (cs *cronService) emit(payload map[string]any) {
	cs.a.srv.bus.broadcast(eventCron, payload, nil, nil)
}

// ---------------------------------------------------------------------------
// Execution.

type runOutcome struct {
	status, err, summary string
	sessionKey           string
	deliveryStatus       string // "", delivered, not-delivered, not-requested
	deliveryErr          string
}

func (cs *cronService) execute(ctx context.Context, job store.CronJob, task cronTask) (out runOutcome) {
	defer func() {
		if r := recover(); r != nil {
			cs.a.srv.log.Error("cron run panicked", "job", job.ID, "panic", fmt.Sprint(r))
			out = runOutcome{status: cronError, err: "internal error"}
		}
	}()
	switch job.Payload.Kind {
	case "systemEvent":
		woke := cs.a.beats.enqueue(mainSessionKey, job.Payload.Text, job.WakeMode == "now")
		out = runOutcome{status: cronOK, sessionKey: mainSessionKey, summary: "queued for the next heartbeat"}
		if woke {
			out.summary = "queued; heartbeat woken"
		}
		return out
	case "agentTurn":
	default:
		return runOutcome{status: cronError, err: "unsupported payload kind " + job.Payload.Kind}
	}
	key := cronSessionKey(job)
	out.sessionKey = key
	turn, send := cs.a.hooks()
	if turn == nil {
		out.status, out.err = cronError, "agent runs are not configured on this gateway"
		return out
	}
	timeout := cronDefaultTimeout
	if ts := job.Payload.TimeoutSeconds; ts != nil && *ts > 0 {
		timeout = cronMaxTimeout
		if *ts < cronMaxTimeout.Seconds() {
			timeout = time.Duration(*ts * float64(time.Second))
		}
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	text, err := turn(rctx, key, job.Payload.Message, timeout)
	cancel()
	if err != nil {
		out.status, out.err = cronError, err.Error()
		return out
	}
	out.status, out.summary = cronOK, previewText(text, cronPreviewRunes)
	d := job.Delivery
	if d == nil || d.Mode != "announce" {
		out.deliveryStatus = "not-requested"
		return out
	}
	if strings.TrimSpace(text) == "" {
		out.deliveryStatus, out.deliveryErr = "not-delivered", "empty reply"
		return out
	}
	if send == nil {
		out.deliveryStatus, out.deliveryErr = "not-delivered", "no messaging provider is configured"
	} else {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = send(sctx, *d, text)
		cancel()
		if err != nil {
			out.deliveryStatus, out.deliveryErr = "not-delivered", err.Error()
		} else {
			out.deliveryStatus = "delivered"
		}
	}
	if out.deliveryStatus != "delivered" && (d.BestEffort == nil || !*d.BestEffort) {
		out.status, out.err = cronError, "delivery failed: "+out.deliveryErr
	}
	return out
}

// cronSessionKey is where an agentTurn job runs.
func cronSessionKey(j store.CronJob) string {
	switch {
	case j.SessionTarget == "isolated":
		return "cron:" + j.ID
	case strings.HasPrefix(j.SessionTarget, "session:"):
		return strings.TrimPrefix(j.SessionTarget, "session:")
	case j.SessionTarget == "current" && j.SessionKey != "":
		return j.SessionKey
	}
	return mainSessionKey
}

func previewText(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// ---------------------------------------------------------------------------
// Job validation.

// buildSchedule turns a stored schedule into a schedule.Schedule.
func (a *automation) buildSchedule(jobID string, s store.CronSchedule, created time.Time) (schedule.Schedule, error) {
	switch s.Kind {
	case "at":
		t, err := parseAt(s.At)
		if err != nil {
			return nil, err
		}
		return schedule.At{Time: t}, nil
	case "every":
		iv := time.Duration(s.EveryMs) * time.Millisecond
		if s.EveryMs < cronMinEvery.Milliseconds() || s.EveryMs > cronMaxEvery.Milliseconds() {
			return nil, fmt.Errorf("schedule.everyMs must be between %d and %d", cronMinEvery.Milliseconds(), cronMaxEvery.Milliseconds())
		}
		anchor := created
		if s.AnchorMs != nil {
			anchor = time.UnixMilli(*s.AnchorMs)
		}
		return schedule.Every{Interval: iv, Anchor: anchor}, nil
	case "cron":
		loc := a.opts.Location
		if tz := strings.TrimSpace(s.TZ); tz != "" {
			l, err := time.LoadLocation(tz)
			if err != nil || tz == "Local" {
				return nil, fmt.Errorf("schedule.tz: unknown time zone %q (use an IANA name such as America/New_York)", s.TZ)
			}
			loc = l
		}
		c, err := schedule.ParseCron(s.Expr, loc)
		if err != nil {
			return nil, fmt.Errorf("schedule.expr: %v", err)
		}
		if s.StaggerMs != nil && *s.StaggerMs > 0 {
			if *s.StaggerMs > time.Hour.Milliseconds()*24 {
				return nil, errors.New("schedule.staggerMs must be at most one day")
			}
			h := fnv.New64a()
			_, _ = h.Write([]byte(jobID))
			off := time.Duration(h.Sum64()%uint64(*s.StaggerMs)) * time.Millisecond
			return staggered{inner: c, off: off}, nil
		}
		return c, nil
	case "on-exit", "stream":
		return nil, fmt.Errorf("schedule.kind %q is not supported by this gateway (use at, every or cron)", s.Kind)
	}
	return nil, fmt.Errorf("unknown schedule.kind %q", s.Kind)
}

// staggered shifts every activation of inner by a fixed offset.
type staggered struct {
	inner schedule.Schedule
	off   time.Duration
}

func (s staggered) Next(t time.Time) time.Time {
	n := s.inner.Next(t.Add(-s.off))
	if n.IsZero() {
		return n
	}
	return n.Add(s.off)
}

// parseAt accepts RFC 3339 (with or without fractional seconds) and, as
// UTC, a date-time without a zone.
func parseAt(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid schedule.at: expected an ISO-8601 timestamp (got %q)", s)
}

// validateJob checks a complete job (after add defaults or an update
// patch) and returns its schedule. now is the time of the change.
func (a *automation) validateJob(j *store.CronJob, now time.Time, atChanged bool) (schedule.Schedule, error) {
	if strings.TrimSpace(j.Name) == "" || len([]rune(j.Name)) > cronMaxName {
		return nil, fmt.Errorf("name must be 1-%d characters", cronMaxName)
	}
	if len([]rune(j.Description)) > cronMaxDescription {
		return nil, fmt.Errorf("description is longer than %d characters", cronMaxDescription)
	}
	if j.AgentID != "" && j.AgentID != mainAgentID {
		return nil, fmt.Errorf("unknown agentId %q (this gateway runs one agent, %q)", j.AgentID, mainAgentID)
	}
	if j.SessionKey != "" {
		if perr := checkCronSessionKey(j.SessionKey); perr != nil {
			return nil, perr
		}
	}
	sched, err := a.buildSchedule(j.ID, j.Schedule, time.UnixMilli(j.CreatedAtMs))
	if err != nil {
		return nil, err
	}
	if j.Schedule.Kind == "at" && atChanged {
		at, _ := parseAt(j.Schedule.At)
		if at.Before(now.Add(-cronAtGrace)) {
			return nil, fmt.Errorf("schedule.at is in the past: %s", at.UTC().Format(time.RFC3339))
		}
		if at.After(now.Add(cronMaxAhead)) {
			return nil, fmt.Errorf("schedule.at is too far in the future: %s", at.UTC().Format(time.RFC3339))
		}
	}
	p := j.Payload
	switch p.Kind {
	case "systemEvent":
		if strings.TrimSpace(p.Text) == "" || len([]rune(p.Text)) > cronMaxText {
			return nil, fmt.Errorf("payload.text must be 1-%d characters", cronMaxText)
		}
		if j.SessionTarget != "main" {
			return nil, errors.New(`systemEvent jobs require sessionTarget "main"`)
		}
	case "agentTurn":
		if strings.TrimSpace(p.Message) == "" || len([]rune(p.Message)) > cronMaxText {
			return nil, fmt.Errorf("payload.message must be 1-%d characters", cronMaxText)
		}
		switch {
		case j.SessionTarget == "main":
			return nil, errors.New(`main cron jobs require payload.kind "systemEvent" (use sessionTarget "isolated" for an agent turn)`)
		case j.SessionTarget == "current" && j.SessionKey == "":
			return nil, errors.New(`sessionTarget "current" needs the job's sessionKey`)
		case strings.HasPrefix(j.SessionTarget, "session:"):
			if perr := checkCronSessionKey(strings.TrimPrefix(j.SessionTarget, "session:")); perr != nil {
				return nil, perr
			}
		}
	case "command", "script":
		return nil, fmt.Errorf("payload.kind %q is not supported by this gateway (use systemEvent or agentTurn)", p.Kind)
	default:
		return nil, fmt.Errorf("unknown payload.kind %q", p.Kind)
	}
	if d := j.Delivery; d != nil {
		switch d.Mode {
		case "none":
		case "announce":
			if p.Kind != "agentTurn" {
				return nil, errors.New("delivery announce needs an agentTurn payload")
			}
			if d.Channel == "" || d.Channel == "last" || d.To == "" {
				return nil, errors.New(`delivery announce needs an explicit channel and to ("last" is not supported)`)
			}
			if _, send := a.hooks(); send == nil {
				return nil, errors.New("delivery announce needs a messaging provider, and none is configured")
			}
		case "webhook":
			return nil, errors.New("delivery mode webhook is not supported by this gateway (use announce)")
		default:
			return nil, fmt.Errorf("unknown delivery.mode %q", d.Mode)
		}
	}
	return sched, nil
}

func checkCronSessionKey(key string) error {
	if strings.TrimSpace(key) == "" || len(key) > 512 {
		return errors.New("invalid sessionKey: must be 1-512 characters")
	}
	for _, c := range key {
		if c < 0x20 || c == 0x7f {
			return errors.New("invalid sessionKey: control characters are not allowed")
		}
	}
	return nil
}

// initialNext is the first activation of a new or rescheduled job.
func initialNext(j store.CronJob, sched schedule.Schedule, now time.Time) int64 {
	if at, ok := sched.(schedule.At); ok {
		if at.Time.Before(now.Add(-cronAtGrace)) {
			return 0
		}
		return at.Time.UnixMilli() // due at once when within the grace
	}
	return msOrZero(sched.Next(now))
}

// publicJob is the wire view of a job.
func publicJob(j store.CronJob) store.CronJob {
	if j.Delivery != nil {
		d := *j.Delivery
		j.Delivery = &d
	}
	return j
}

// ---------------------------------------------------------------------------
// Params.

func cronInvalid(method, reason string) *protocol.Error {
	return protocol.InvalidRequest("invalid " + method + " params: " + reason)
}

func cronNotFound(id string) *protocol.Error {
	return &protocol.Error{Code: protocol.ErrInvalidRequest,
		Message: "cron job not found: " + id + ". List automations and retry with a current job id.",
		Details: map[string]any{"code": "CRON_JOB_NOT_FOUND", "jobId": id}}
}

type cronScheduleParams struct {
	Kind      string          `json:"kind"`
	At        string          `json:"at"`
	EveryMs   *int64          `json:"everyMs"`
	AnchorMs  *int64          `json:"anchorMs"`
	Expr      string          `json:"expr"`
	TZ        string          `json:"tz"`
	StaggerMs *int64          `json:"staggerMs"`
	Command   json.RawMessage `json:"command"`
}

func (p cronScheduleParams) toStore() store.CronSchedule {
	s := store.CronSchedule{Kind: p.Kind, At: p.At, AnchorMs: p.AnchorMs, Expr: p.Expr, TZ: p.TZ, StaggerMs: p.StaggerMs}
	if p.EveryMs != nil {
		s.EveryMs = *p.EveryMs
	}
	return s
}

type cronPayloadParams struct {
	Kind                       string          `json:"kind"`
	Text                       *string         `json:"text"`
	Message                    *string         `json:"message"`
	Model                      json.RawMessage `json:"model"`
	Fallbacks                  json.RawMessage `json:"fallbacks"`
	Thinking                   json.RawMessage `json:"thinking"`
	TimeoutSeconds             *float64        `json:"timeoutSeconds"`
	AllowUnsafeExternalContent *bool           `json:"allowUnsafeExternalContent"`
	LightContext               *bool           `json:"lightContext"`
	ToolsAllow                 json.RawMessage `json:"toolsAllow"`
	ToolsAllowIsDefault        *bool           `json:"toolsAllowIsDefault"`
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// apply merges p into dst (replacing it when the kind changes).
func (p cronPayloadParams) apply(dst *store.CronPayload) error {
	if !isNull(p.Model) || !isNull(p.Fallbacks) {
		return errors.New("payload.model and payload.fallbacks are not supported by this gateway (its agent backend is configured on the gateway)")
	}
	if p.AllowUnsafeExternalContent != nil && *p.AllowUnsafeExternalContent {
		return errors.New("payload.allowUnsafeExternalContent is not supported by this gateway")
	}
	if p.Kind != dst.Kind {
		*dst = store.CronPayload{Kind: p.Kind}
	}
	if p.Text != nil {
		dst.Text = *p.Text
	}
	if p.Message != nil {
		dst.Message = *p.Message
	}
	if p.TimeoutSeconds != nil {
		if math.IsNaN(*p.TimeoutSeconds) || *p.TimeoutSeconds < 0 {
			return errors.New("payload.timeoutSeconds must be >= 0")
		}
		ts := *p.TimeoutSeconds
		dst.TimeoutSeconds = &ts
	}
	if !isNull(p.Thinking) {
		var s string
		if json.Unmarshal(p.Thinking, &s) == nil {
			dst.Thinking = s
		}
	} else if p.Thinking != nil {
		dst.Thinking = ""
	}
	if p.LightContext != nil {
		dst.LightContext = p.LightContext
	}
	if !isNull(p.ToolsAllow) {
		var l []string
		if json.Unmarshal(p.ToolsAllow, &l) == nil {
			dst.ToolsAllow = l
		}
	} else if p.ToolsAllow != nil {
		dst.ToolsAllow = nil
	}
	if p.ToolsAllowIsDefault != nil {
		dst.ToolsAllowIsDefault = p.ToolsAllowIsDefault
	}
	return nil
}

type cronDeliveryParams struct {
	Mode                  *string         `json:"mode"`
	Channel               json.RawMessage `json:"channel"`
	To                    json.RawMessage `json:"to"`
	AccountID             json.RawMessage `json:"accountId"`
	ThreadID              json.RawMessage `json:"threadId"`
	BestEffort            *bool           `json:"bestEffort"`
	FailureDestination    json.RawMessage `json:"failureDestination"`
	CompletionDestination json.RawMessage `json:"completionDestination"`
}

// apply merges p into dst.
func (p cronDeliveryParams) apply(dst *store.CronDelivery) error {
	if !isNull(p.FailureDestination) || !isNull(p.CompletionDestination) {
		return errors.New("delivery.failureDestination and delivery.completionDestination are not supported by this gateway")
	}
	if p.Mode != nil {
		dst.Mode = *p.Mode
	}
	str := func(raw json.RawMessage, dst *string) {
		if raw == nil {
			return
		}
		if isNull(raw) {
			*dst = ""
			return
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			*dst = s
			return
		}
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			*dst = n.String()
		}
	}
	str(p.Channel, &dst.Channel)
	str(p.To, &dst.To)
	str(p.AccountID, &dst.AccountID)
	str(p.ThreadID, &dst.ThreadID)
	if p.BestEffort != nil {
		dst.BestEffort = p.BestEffort
	}
	return nil
}

// unsupportedKey returns the first job field this gateway refuses rather
// than ignore (null, and false for failureAlert, mean "none" and pass).
func unsupportedKey(fields map[string]json.RawMessage) string {
	for _, k := range []string{"declarationKey", "owner", "pacing", "trigger", "failureAlert", "state"} {
		raw := fields[k]
		if isNull(raw) || (k == "failureAlert" && string(raw) == "false") {
			continue
		}
		return k
	}
	return ""
}

// ---------------------------------------------------------------------------
// Methods.

func (cs *cronService) methodAdd(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	const m = "cron.add"
	if perr := cs.ready(); perr != nil {
		return nil, perr
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, cronInvalid(m, err.Error())
	}
	if k := unsupportedKey(fields); k != "" {
		return nil, cronInvalid(m, k+" is not supported by this gateway")
	}
	var p struct {
		Name           string              `json:"name"`
		DisplayName    string              `json:"displayName"`
		AgentID        *string             `json:"agentId"`
		SessionKey     *string             `json:"sessionKey"`
		Description    string              `json:"description"`
		Enabled        *bool               `json:"enabled"`
		DeleteAfterRun *bool               `json:"deleteAfterRun"`
		Schedule       cronScheduleParams  `json:"schedule"`
		SessionTarget  string              `json:"sessionTarget"`
		WakeMode       string              `json:"wakeMode"`
		Payload        cronPayloadParams   `json:"payload"`
		Delivery       *cronDeliveryParams `json:"delivery"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, cronInvalid(m, err.Error())
	}
	now := cs.now()
	j := store.CronJob{ID: newUUID(), Name: strings.TrimSpace(p.Name), DisplayName: p.DisplayName, Description: p.Description,
		Enabled: p.Enabled == nil || *p.Enabled, DeleteAfterRun: p.DeleteAfterRun,
		CreatedAtMs: now.UnixMilli(), UpdatedAtMs: now.UnixMilli(), Schedule: p.Schedule.toStore(),
		SessionTarget: p.SessionTarget, WakeMode: p.WakeMode}
	if p.AgentID != nil {
		j.AgentID = *p.AgentID
	}
	if p.SessionKey != nil {
		j.SessionKey = *p.SessionKey
	}
	if err := p.Payload.apply(&j.Payload); err != nil {
		return nil, cronInvalid(m, err.Error())
	}
	if p.Delivery != nil {
		j.Delivery = &store.CronDelivery{}
		if err := p.Delivery.apply(j.Delivery); err != nil {
			return nil, cronInvalid(m, err.Error())
		}
	}
	sched, err := cs.a.validateJob(&j, now, true)
	if err != nil {
		return nil, cronInvalid(m, err.Error())
	}
	if j.Enabled {
		j.State.NextRunAtMs = initialNext(j, sched, now)
	}

	cs.mu.Lock()
	if len(cs.jobs) >= cs.a.opts.MaxJobs {
		cs.mu.Unlock()
		return nil, cronInvalid(m, fmt.Sprintf("too many cron jobs (at most %d)", cs.a.opts.MaxJobs))
	}
	if err := cs.st.PutCronJob(j); err != nil {
		cs.mu.Unlock()
		cs.a.srv.log.Error("cron: store job", "err", err)
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "cron store unavailable", Retryable: true, RetryAfterMs: 1000}
	}
	cs.jobs[j.ID] = &cronEntry{job: j, sched: sched}
	cs.mu.Unlock()
	cs.a.srv.log.Info("cron job added", "job", j.ID, "kind", j.Schedule.Kind, "payload", j.Payload.Kind)
	cs.emit(map[string]any{"jobId": j.ID, "action": "added", "job": publicJob(j), "nextRunAtMs": j.State.NextRunAtMs})
	cs.poke()
	return publicJob(j), nil
}

// jobIDParam returns id, else jobId.
func jobIDParam(raw json.RawMessage) string {
	var p struct {
		ID    string `json:"id"`
		JobID string `json:"jobId"`
	}
	_ = json.Unmarshal(raw, &p)
	if p.ID != "" {
		return p.ID
	}
	return p.JobID
}

func (cs *cronService) methodUpdate(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	const m = "cron.update"
	if perr := cs.ready(); perr != nil {
		return nil, perr
	}
	var p struct {
		Patch map[string]json.RawMessage `json:"patch"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, cronInvalid(m, err.Error())
	}
	id := jobIDParam(raw)
	if k := unsupportedKey(p.Patch); k != "" {
		return nil, cronInvalid(m, "patch."+k+" is not supported by this gateway")
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	e := cs.jobs[id]
	if e == nil {
		return nil, cronNotFound(id)
	}
	j := e.job
	if j.Delivery != nil {
		d := *j.Delivery
		j.Delivery = &d
	}
	now := cs.now()
	str := func(key string, dst *string) error {
		raw, ok := p.Patch[key]
		if !ok {
			return nil
		}
		if isNull(raw) {
			*dst = ""
			return nil
		}
		return json.Unmarshal(raw, dst)
	}
	for _, k := range []struct {
		key string
		dst *string
	}{{"name", &j.Name}, {"displayName", &j.DisplayName}, {"description", &j.Description}, {"agentId", &j.AgentID},
		{"sessionKey", &j.SessionKey}, {"sessionTarget", &j.SessionTarget}, {"wakeMode", &j.WakeMode}} {
		if err := str(k.key, k.dst); err != nil {
			return nil, cronInvalid(m, k.key+": "+err.Error())
		}
	}
	if raw, ok := p.Patch["enabled"]; ok {
		if err := json.Unmarshal(raw, &j.Enabled); err != nil {
			return nil, cronInvalid(m, "enabled: "+err.Error())
		}
	}
	if raw, ok := p.Patch["deleteAfterRun"]; ok {
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, cronInvalid(m, "deleteAfterRun: "+err.Error())
		}
		j.DeleteAfterRun = &b
	}
	rescheduled := false
	if raw, ok := p.Patch["schedule"]; ok {
		var sp cronScheduleParams
		if err := json.Unmarshal(raw, &sp); err != nil {
			return nil, cronInvalid(m, "schedule: "+err.Error())
		}
		j.Schedule, rescheduled = sp.toStore(), true
	}
	if raw, ok := p.Patch["payload"]; ok {
		var pp cronPayloadParams
		if err := json.Unmarshal(raw, &pp); err != nil {
			return nil, cronInvalid(m, "payload: "+err.Error())
		}
		if err := pp.apply(&j.Payload); err != nil {
			return nil, cronInvalid(m, err.Error())
		}
	}
	if raw, ok := p.Patch["delivery"]; ok {
		var dp cronDeliveryParams
		if err := json.Unmarshal(raw, &dp); err != nil {
			return nil, cronInvalid(m, "delivery: "+err.Error())
		}
		if j.Delivery == nil {
			j.Delivery = &store.CronDelivery{Mode: "none"}
		}
		if err := dp.apply(j.Delivery); err != nil {
			return nil, cronInvalid(m, err.Error())
		}
	}
	sched, err := cs.a.validateJob(&j, now, rescheduled)
	if err != nil {
		return nil, cronInvalid(m, err.Error())
	}
	switch {
	case !j.Enabled:
		j.State.NextRunAtMs = 0
	case rescheduled || !e.job.Enabled || j.State.NextRunAtMs == 0:
		j.State.NextRunAtMs = initialNext(j, sched, now)
	}
	j.UpdatedAtMs = now.UnixMilli()
	if err := cs.st.PutCronJob(j); err != nil {
		cs.a.srv.log.Error("cron: store job", "err", err)
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "cron store unavailable", Retryable: true, RetryAfterMs: 1000}
	}
	e.job, e.sched = j, sched
	cs.emit(map[string]any{"jobId": j.ID, "action": "updated", "job": publicJob(j), "nextRunAtMs": j.State.NextRunAtMs})
	cs.poke()
	return publicJob(j), nil
}

func (cs *cronService) methodRemove(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	if perr := cs.ready(); perr != nil {
		return nil, perr
	}
	id := jobIDParam(raw)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	e := cs.jobs[id]
	if e == nil {
		return nil, cronNotFound(id)
	}
	if err := cs.st.DeleteCronJob(id); err != nil && !errors.Is(err, store.ErrNotFound) {
		cs.a.srv.log.Error("cron: delete job", "err", err)
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "cron store unavailable", Retryable: true, RetryAfterMs: 1000}
	}
	delete(cs.jobs, id)
	// Queued runs of the job find it gone and are dropped.
	cs.emit(map[string]any{"jobId": id, "action": "removed", "job": publicJob(e.job)})
	return map[string]any{"ok": true, "removed": true}, nil
}

func (cs *cronService) methodGet(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	if perr := cs.ready(); perr != nil {
		return nil, perr
	}
	id := jobIDParam(raw)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	e := cs.jobs[id]
	if e == nil {
		return nil, cronNotFound(id)
	}
	return publicJob(e.job), nil
}

func (cs *cronService) methodStatus(_ context.Context, _ *Conn, _ json.RawMessage) (any, error) {
	if perr := cs.ready(); perr != nil {
		return nil, perr
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var next int64
	enabled := 0
	for _, e := range cs.jobs {
		if !e.job.Enabled {
			continue
		}
		enabled++
		if n := e.job.State.NextRunAtMs; n != 0 && (next == 0 || n < next) {
			next = n
		}
	}
	storage := "memory"
	if cs.persistent {
		storage = "bbolt"
	}
	out := map[string]any{"enabled": true, "jobs": len(cs.jobs), "enabledJobs": enabled, "storage": storage,
		"missedPolicy": string(cs.a.opts.Missed), "queued": len(cs.queue), "nextWakeAtMs": nil}
	if next != 0 {
		out["nextWakeAtMs"] = next
	}
	if cs.running != "" {
		out["runningJobId"] = cs.running
	}
	return out, nil
}

func (cs *cronService) methodList(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	if perr := cs.ready(); perr != nil {
		return nil, perr
	}
	var p struct {
		IncludeDisabled bool   `json:"includeDisabled"`
		Limit           *int   `json:"limit"`
		Offset          int    `json:"offset"`
		Query           string `json:"query"`
		Enabled         string `json:"enabled"`
		ScheduleKind    string `json:"scheduleKind"`
		LastRunStatus   string `json:"lastRunStatus"`
		Trigger         string `json:"trigger"`
		SortBy          string `json:"sortBy"`
		SortDir         string `json:"sortDir"`
		AgentID         string `json:"agentId"`
	}
	if err := json.Unmarshal(raw, &p); err != nil && len(raw) > 0 {
		return nil, cronInvalid("cron.list", err.Error())
	}
	enabled := p.Enabled
	if enabled == "" {
		enabled = "enabled"
		if p.IncludeDisabled {
			enabled = "all"
		}
	}
	q := strings.ToLower(strings.TrimSpace(p.Query))
	cs.mu.Lock()
	var jobs []store.CronJob
	for _, e := range cs.jobs {
		j := e.job
		switch {
		case enabled == "enabled" && !j.Enabled, enabled == "disabled" && j.Enabled:
			continue
		case p.ScheduleKind != "" && p.ScheduleKind != "all" && j.Schedule.Kind != p.ScheduleKind:
			continue
		case p.Trigger == "conditional": // no job here has a trigger
			continue
		case p.AgentID != "" && p.AgentID != mainAgentID:
			continue
		}
		if s := p.LastRunStatus; s != "" && s != "all" {
			got := j.State.LastRunStatus
			if got == "" {
				got = "unknown"
			}
			if got != s {
				continue
			}
		}
		if q != "" && !strings.Contains(strings.ToLower(strings.Join([]string{j.ID, j.Name, j.Description, j.AgentID, j.DisplayName}, " ")), q) {
			continue
		}
		jobs = append(jobs, publicJob(j))
	}
	cs.mu.Unlock()
	sortJobs(jobs, p.SortBy, p.SortDir == "desc")
	total := len(jobs)
	limit := total
	if limit == 0 {
		limit = 50
	}
	if p.Limit != nil {
		limit = *p.Limit
	}
	limit = min(max(limit, 1), 200)
	off := min(max(p.Offset, 0), total)
	page := jobs[off:min(off+limit, total)]
	if page == nil {
		page = []store.CronJob{}
	}
	next := off + len(page)
	out := map[string]any{"jobs": page, "total": total, "offset": off, "limit": limit, "hasMore": next < total, "nextOffset": nil}
	if next < total {
		out["nextOffset"] = next
	}
	return out, nil
}

func sortJobs(jobs []store.CronJob, by string, desc bool) {
	key := func(j store.CronJob) (int64, string) {
		switch by {
		case "updatedAtMs":
			return j.UpdatedAtMs, j.ID
		case "name":
			return 0, strings.ToLower(j.Name) + "\x00" + j.ID
		}
		n := j.State.NextRunAtMs
		if n == 0 {
			n = math.MaxInt64 // no next run: last
		}
		return n, j.ID
	}
	sort.SliceStable(jobs, func(a, b int) bool {
		na, sa := key(jobs[a])
		nb, sb := key(jobs[b])
		less := na < nb || (na == nb && sa < sb)
		if desc {
			return !less && (na != nb || sa != sb)
		}
		return less
	})
}

func (cs *cronService) methodRun(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	if perr := cs.ready(); perr != nil {
		return nil, perr
	}
	var p struct {
		Mode                      string `json:"mode"`
		ExpectedProcessInstanceID string `json:"expectedProcessInstanceId"`
	}
	_ = json.Unmarshal(raw, &p)
	id := jobIDParam(raw)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	e := cs.jobs[id]
	if e == nil {
		return nil, cronNotFound(id)
	}
	if p.ExpectedProcessInstanceID != "" && p.ExpectedProcessInstanceID != cs.a.srv.bootID {
		return nil, cronInvalid("cron.run", "Gateway process changed after preflight")
	}
	notRun := func(reason string) (any, error) {
		return map[string]any{"ok": true, "ran": false, "reason": reason, "processInstanceId": cs.a.srv.bootID}, nil
	}
	switch p.Mode {
	case "due":
		if !e.job.Enabled || e.job.State.NextRunAtMs == 0 || e.job.State.NextRunAtMs > cs.now().UnixMilli() {
			return notRun("not-due")
		}
	case "if-enabled":
		if !e.job.Enabled {
			return notRun("disabled")
		}
	}
	if cs.running == id || e.manual > 0 {
		return notRun("already-running")
	}
	if len(cs.queue) >= cronMaxQueue {
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "cron queue full", Retryable: true, RetryAfterMs: 1000}
	}
	runID := newUUID()
	e.manual++
	cs.queue = append(cs.queue, cronTask{jobID: id, runID: runID, trigger: triggerManual})
	cs.signalWork()
	return map[string]any{"ok": true, "enqueued": true, "runId": runID, "processInstanceId": cs.a.srv.bootID}, nil
}

func (cs *cronService) methodRuns(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	if perr := cs.ready(); perr != nil {
		return nil, perr
	}
	var p struct {
		AgentID          string   `json:"agentId"`
		Scope            string   `json:"scope"`
		RunID            string   `json:"runId"`
		Limit            *int     `json:"limit"`
		Offset           int      `json:"offset"`
		Statuses         []string `json:"statuses"`
		Status           string   `json:"status"`
		DeliveryStatuses []string `json:"deliveryStatuses"`
		DeliveryStatus   string   `json:"deliveryStatus"`
		Query            string   `json:"query"`
		SortDir          string   `json:"sortDir"`
	}
	if err := json.Unmarshal(raw, &p); err != nil && len(raw) > 0 {
		return nil, cronInvalid("cron.runs", err.Error())
	}
	id := jobIDParam(raw)
	scope := p.Scope
	if scope == "" {
		scope = "all"
		if id != "" {
			scope = "job"
		}
	}
	if scope == "job" && id == "" {
		return nil, cronInvalid("cron.runs", "missing id")
	}
	cs.mu.Lock()
	names := map[string]string{}
	for jid, e := range cs.jobs {
		names[jid] = e.job.Name
	}
	cs.mu.Unlock()
	if scope == "job" {
		if _, ok := names[id]; !ok {
			return nil, cronNotFound(id)
		}
	} else {
		id = ""
	}
	runs, err := cs.st.CronRuns(id)
	if err != nil {
		cs.a.srv.log.Error("cron: read runs", "err", err)
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "cron store unavailable", Retryable: true, RetryAfterMs: 1000}
	}
	statuses := p.Statuses
	if p.Status != "" && p.Status != "all" {
		statuses = append(statuses, p.Status)
	}
	dstatuses := p.DeliveryStatuses
	if p.DeliveryStatus != "" {
		dstatuses = append(dstatuses, p.DeliveryStatus)
	}
	q := strings.ToLower(strings.TrimSpace(p.Query))
	out := make([]store.CronRun, 0, len(runs))
	for _, r := range runs {
		r.JobName = names[r.JobID]
		ds := r.DeliveryStatus
		if ds == "" {
			ds = "not-requested"
		}
		switch {
		case p.AgentID != "" && p.AgentID != mainAgentID,
			p.RunID != "" && r.RunID != p.RunID,
			len(statuses) > 0 && !contains(statuses, r.Status),
			len(dstatuses) > 0 && !contains(dstatuses, ds),
			q != "" && !strings.Contains(strings.ToLower(r.Summary+" "+r.Error+" "+r.JobName+" "+r.JobID), q):
			continue
		}
		out = append(out, r)
	}
	// Oldest first by (ts, runAtMs), keeping stored order for ties; then
	// reversed for the default newest-first.
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].Ts != out[b].Ts {
			return out[a].Ts < out[b].Ts
		}
		return out[a].RunAtMs < out[b].RunAtMs
	})
	if p.SortDir != "asc" {
		slices.Reverse(out)
	}
	total := len(out)
	limit := 50
	if p.Limit != nil {
		limit = *p.Limit
	}
	limit = min(max(limit, 1), 200)
	off := min(max(p.Offset, 0), total)
	page := out[off:min(off+limit, total)]
	next := off + len(page)
	res := map[string]any{"entries": page, "total": total, "offset": off, "limit": limit, "hasMore": next < total, "nextOffset": nil}
	if next < total {
		res["nextOffset"] = next
	}
	return res, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// In-memory store (no persistent store configured).

type memCron struct {
	mu   sync.Mutex
	jobs map[string]store.CronJob
	runs map[string][]store.CronRun
}

func newMemCron() *memCron {
	return &memCron{jobs: map[string]store.CronJob{}, runs: map[string][]store.CronRun{}}
}

func (m *memCron) CronJobs() ([]store.CronJob, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]store.CronJob, 0, len(m.jobs))
	for _, j := range m.jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

func (m *memCron) PutCronJob(j store.CronJob) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs[j.ID] = j
	return nil
}

func (m *memCron) DeleteCronJob(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.jobs[id]; !ok {
		return store.ErrNotFound
	}
	delete(m.jobs, id)
	delete(m.runs, id)
	return nil
}

func (m *memCron) RecordCronRun(j store.CronJob, r store.CronRun, keep int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.jobs[j.ID]; !ok {
		return store.ErrNotFound
	}
	m.jobs[j.ID] = j
	l := append(m.runs[j.ID], r)
	if keep > 0 && len(l) > keep {
		l = append([]store.CronRun(nil), l[len(l)-keep:]...)
	}
	m.runs[j.ID] = l
	return nil
}

func (m *memCron) CronRuns(id string) ([]store.CronRun, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id != "" {
		return append([]store.CronRun(nil), m.runs[id]...), nil
	}
	var out []store.CronRun
	for _, l := range m.runs {
		out = append(out, l...)
	}
	return out, nil
}
