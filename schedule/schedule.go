package schedule

import (
	"errors"
	"fmt"
	"time"
)

// Schedule says when work is next due.
type Schedule interface {
	// Next returns the first activation strictly after t, or the zero
	// time when there is none.
	Next(t time.Time) time.Time
}

// Every fires every Interval, at Anchor + k·Interval.
type Every struct {
	Interval time.Duration
	Anchor   time.Time
}

// Next implements Schedule.
func (e Every) Next(t time.Time) time.Time {
	if e.Interval <= 0 {
		return time.Time{}
	}
	if t.Before(e.Anchor) {
		return e.Anchor
	}
	k := t.Sub(e.Anchor)/e.Interval + 1
	return e.Anchor.Add(k * e.Interval)
}

// At fires once, at Time.
type At struct{ Time time.Time }

// Next implements Schedule.
func (a At) Next(t time.Time) time.Time {
	if a.Time.After(t) {
		return a.Time
	}
	return time.Time{}
}

// MissedPolicy says what to do with activations that fell while the
// gateway was not running.
type MissedPolicy string

// Missed-run policies.
const (
	MissedSkip    MissedPolicy = "skip"     // forget them; wait for the next one
	MissedRunOnce MissedPolicy = "run-once" // run once now if any were missed
	MissedRunAll  MissedPolicy = "run-all"  // run each (bounded by max)
)

// ErrBadPolicy is returned for an unknown missed-run policy.
var ErrBadPolicy = errors.New("schedule: unknown missed-run policy")

// ParsePolicy validates a policy name; "" means MissedRunOnce.
func ParsePolicy(s string) (MissedPolicy, error) {
	switch p := MissedPolicy(s); p {
	case "":
		return MissedRunOnce, nil
	case MissedSkip, MissedRunOnce, MissedRunAll:
		return p, nil
	}
	return "", fmt.Errorf("%w %q (use skip, run-once or run-all)", ErrBadPolicy, s)
}

// Missed returns the activations in (last, now] that a policy says to run
// now, at most max of them.
func Missed(s Schedule, last, now time.Time, policy MissedPolicy, max int) []time.Time {
	if policy == MissedSkip || max <= 0 {
		return nil
	}
	var out []time.Time
	for t := s.Next(last); !t.IsZero() && !t.After(now); t = s.Next(t) {
		out = append(out, t)
		if policy == MissedRunOnce {
			return out[:1]
		}
		if len(out) >= max {
			break
		}
	}
	return out
}
