package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/store"
)

// BenchmarkCronQueueDue: one scheduler pass over 500 jobs (the default
// MaxJobs), none due: what each wake of the scheduler costs.
func BenchmarkCronQueueDue(b *testing.B) {
	secret, err := authn.NewSharedSecret(testToken)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	s, err := New(Options{Token: secret, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	cs := s.auto.cron
	cs.mu.Lock()
	_ = cs.loadLocked()
	for i := range 500 {
		j := store.CronJob{ID: fmt.Sprintf("job-%03d", i), Name: "j", Enabled: true, CreatedAtMs: now.UnixMilli(),
			Schedule:      store.CronSchedule{Kind: "cron", Expr: fmt.Sprintf("%d 9 * * *", i%60), TZ: "America/New_York"},
			SessionTarget: "main", WakeMode: "now", Payload: store.CronPayload{Kind: "systemEvent", Text: "x"}}
		sched, err := s.auto.buildSchedule(j.ID, j.Schedule, now)
		if err != nil {
			b.Fatal(err)
		}
		j.State.NextRunAtMs = sched.Next(now).UnixMilli()
		cs.jobs[j.ID] = &cronEntry{job: j, sched: sched}
	}
	cs.mu.Unlock()
	b.ReportAllocs()
	for b.Loop() {
		if d := cs.queueDue(); d <= 0 {
			b.Fatal("nothing should be due")
		}
	}
}
