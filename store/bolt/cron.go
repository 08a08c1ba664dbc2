package bolt

import (
	"encoding/json"
	"fmt"

	"github.com/clawgate/clawgate/store"
	"go.etcd.io/bbolt"
)

// Cron state lives in one bucket, created on first write (older state
// files have none, so reads treat a missing bucket as empty):
//
//	cron
//	  jobs   id → store.CronJob (JSON)
//	  runs   id → bucket of 8-byte big-endian sequence → store.CronRun (JSON)
var (
	bucketCron     = []byte("cron")
	bucketCronJobs = []byte("jobs")
	bucketCronRuns = []byte("runs")
)

// maxCronIDLen bounds job ids in bytes.
const maxCronIDLen = 256

var _ store.CronStore = (*DB)(nil)

func checkCronID(id string) error {
	if id == "" || len(id) > maxCronIDLen {
		return fmt.Errorf("store/bolt: invalid cron job id length %d", len(id))
	}
	return nil
}

// cronBuckets returns the nested buckets, creating them in a write
// transaction. In a read transaction they are nil when absent.
func cronBuckets(tx *bbolt.Tx) (jobs, runs *bbolt.Bucket, err error) {
	if !tx.Writable() {
		top := tx.Bucket(bucketCron)
		if top == nil {
			return nil, nil, nil
		}
		return top.Bucket(bucketCronJobs), top.Bucket(bucketCronRuns), nil
	}
	top, err := tx.CreateBucketIfNotExists(bucketCron)
	if err != nil {
		return nil, nil, err
	}
	if jobs, err = top.CreateBucketIfNotExists(bucketCronJobs); err != nil {
		return nil, nil, err
	}
	runs, err = top.CreateBucketIfNotExists(bucketCronRuns)
	return jobs, runs, err
}

// CronJobs returns every job, by id.
func (d *DB) CronJobs() ([]store.CronJob, error) {
	var out []store.CronJob
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		jobs, _, _ := cronBuckets(tx)
		if jobs == nil {
			return nil
		}
		return jobs.ForEach(func(k, v []byte) error {
			var j store.CronJob
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("%w: %s: cron job %q: %v", store.ErrCorrupt, d.path, k, err)
			}
			out = append(out, j)
			return nil
		})
	})
	return out, mapErr(err)
}

// PutCronJob creates or replaces a job.
func (d *DB) PutCronJob(job store.CronJob) error {
	if err := checkCronID(job.ID); err != nil {
		return err
	}
	raw, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("store/bolt: encode cron job: %w", err)
	}
	return mapErr(d.bolt.Update(func(tx *bbolt.Tx) error {
		jobs, _, err := cronBuckets(tx)
		if err != nil {
			return err
		}
		return jobs.Put([]byte(job.ID), raw)
	}))
}

// DeleteCronJob removes a job and its history.
func (d *DB) DeleteCronJob(id string) error {
	if err := checkCronID(id); err != nil {
		return err
	}
	return mapErr(d.bolt.Update(func(tx *bbolt.Tx) error {
		jobs, runs, err := cronBuckets(tx)
		if err != nil {
			return err
		}
		if jobs.Get([]byte(id)) == nil {
			return store.ErrNotFound
		}
		if err := jobs.Delete([]byte(id)); err != nil {
			return err
		}
		if runs.Bucket([]byte(id)) != nil {
			return runs.DeleteBucket([]byte(id))
		}
		return nil
	}))
}

// RecordCronRun replaces the job and appends one history entry, trimming
// the history to keep, in one transaction.
func (d *DB) RecordCronRun(job store.CronJob, run store.CronRun, keep int) error {
	if err := checkCronID(job.ID); err != nil {
		return err
	}
	rawJob, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("store/bolt: encode cron job: %w", err)
	}
	run.JobName = ""
	rawRun, err := json.Marshal(run)
	if err != nil {
		return fmt.Errorf("store/bolt: encode cron run: %w", err)
	}
	return mapErr(d.bolt.Update(func(tx *bbolt.Tx) error {
		jobs, runs, err := cronBuckets(tx)
		if err != nil {
			return err
		}
		if jobs.Get([]byte(job.ID)) == nil {
			return store.ErrNotFound
		}
		if err := jobs.Put([]byte(job.ID), rawJob); err != nil {
			return err
		}
		b, err := runs.CreateBucketIfNotExists([]byte(job.ID))
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(seq), rawRun); err != nil {
			return err
		}
		if keep <= 0 {
			return nil
		}
		n := 0
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		for ; n > keep; n-- {
			c := b.Cursor()
			if k, _ := c.First(); k == nil {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	}))
}

// CronRuns returns one job's history, or every job's, oldest first (by
// job id, then sequence, for all jobs; callers sort by time).
func (d *DB) CronRuns(jobID string) ([]store.CronRun, error) {
	var out []store.CronRun
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		_, runs, _ := cronBuckets(tx)
		if runs == nil {
			return nil
		}
		read := func(id []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				var r store.CronRun
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("%w: %s: cron run %q/%x: %v", store.ErrCorrupt, d.path, id, k, err)
				}
				out = append(out, r)
				return nil
			})
		}
		if jobID != "" {
			b := runs.Bucket([]byte(jobID))
			if b == nil {
				return nil
			}
			return read([]byte(jobID), b)
		}
		return runs.ForEach(func(k, v []byte) error {
			if v != nil {
				return nil
			}
			return read(k, runs.Bucket(k))
		})
	})
	return out, mapErr(err)
}
