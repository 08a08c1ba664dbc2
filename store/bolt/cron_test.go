package bolt

import (
	"errors"
	"fmt"
	"testing"

	"github.com/clawgate/clawgate/store"
)

func TestCronJobsAndRuns(t *testing.T) {
	path := statePath(t)
	db := mustOpen(t, path)
	if jobs, err := db.CronJobs(); err != nil || len(jobs) != 0 {
		t.Fatalf("jobs of a fresh file: %v %v", jobs, err)
	}
	if runs, err := db.CronRuns(""); err != nil || len(runs) != 0 {
		t.Fatalf("runs of a fresh file: %v %v", runs, err)
	}
	if err := db.DeleteCronJob("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete of a missing job: %v", err)
	}
	job := store.CronJob{ID: "j1", Name: "daily", Enabled: true, CreatedAtMs: 1, UpdatedAtMs: 1,
		Schedule:      store.CronSchedule{Kind: "cron", Expr: "0 9 * * *", TZ: "America/New_York"},
		SessionTarget: "main", WakeMode: "now", Payload: store.CronPayload{Kind: "systemEvent", Text: "hi"}}
	if err := db.PutCronJob(job); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordCronRun(store.CronJob{ID: "gone"}, store.CronRun{JobID: "gone"}, 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("run of a missing job: %v", err)
	}
	for i := 1; i <= 5; i++ {
		job.State.LastRunAtMs = int64(i)
		if err := db.RecordCronRun(job, store.CronRun{Ts: int64(i), JobID: "j1", Action: "finished", Status: "ok",
			Summary: fmt.Sprint(i), JobName: "not stored"}, 3); err != nil {
			t.Fatal(err)
		}
	}
	other := job
	other.ID, other.Name = "j2", "other"
	if err := db.PutCronJob(other); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordCronRun(other, store.CronRun{Ts: 9, JobID: "j2", Action: "finished", Status: "error", Error: "boom"}, 3); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = mustOpen(t, path)
	jobs, err := db.CronJobs()
	if err != nil || len(jobs) != 2 || jobs[0].ID != "j1" || jobs[0].State.LastRunAtMs != 5 || jobs[0].Schedule.TZ != "America/New_York" {
		t.Fatalf("jobs after reopen: %+v %v", jobs, err)
	}
	runs, err := db.CronRuns("j1")
	if err != nil || len(runs) != 3 || runs[0].Summary != "3" || runs[2].Summary != "5" || runs[0].JobName != "" {
		t.Fatalf("bounded history: %+v %v", runs, err)
	}
	all, err := db.CronRuns("")
	if err != nil || len(all) != 4 {
		t.Fatalf("all runs: %+v %v", all, err)
	}
	if err := db.DeleteCronJob("j1"); err != nil {
		t.Fatal(err)
	}
	if runs, _ := db.CronRuns("j1"); len(runs) != 0 {
		t.Fatalf("history survived its job: %+v", runs)
	}
	if jobs, _ := db.CronJobs(); len(jobs) != 1 || jobs[0].ID != "j2" {
		t.Fatalf("jobs after delete: %+v", jobs)
	}
	if err := db.PutCronJob(store.CronJob{}); err == nil {
		t.Fatal("a job without an id was stored")
	}
}
