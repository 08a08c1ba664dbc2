package schedule

import (
	"errors"
	"testing"
	"time"
	_ "time/tzdata" // hermetic zone data
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestParseCronErrors(t *testing.T) {
	for _, expr := range []string{
		"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
		"* * * * 8", "5-1 * * * *", "*/0 * * * *", "a * * * *", "* * * foo *", "1,,2 * * * *",
	} {
		if _, err := ParseCron(expr, nil); !errors.Is(err, ErrBadCron) {
			t.Errorf("ParseCron(%q) = %v, want ErrBadCron", expr, err)
		}
	}
}

func TestCronNext(t *testing.T) {
	utc := time.UTC
	cases := []struct {
		expr  string
		after string
		want  []string
	}{
		{"*/15 * * * *", "2026-01-05T10:07:00Z", []string{"2026-01-05T10:15:00Z", "2026-01-05T10:30:00Z"}},
		{"0 9 * * mon-fri", "2026-01-09T09:00:00Z", []string{"2026-01-12T09:00:00Z", "2026-01-13T09:00:00Z"}}, // Fri → Mon
		{"0 0 1 jan *", "2026-06-01T00:00:00Z", []string{"2027-01-01T00:00:00Z"}},
		{"0 12 13 * 5", "2026-02-01T00:00:00Z", []string{"2026-02-06T12:00:00Z", "2026-02-13T12:00:00Z"}}, // Fridays or the 13th
		{"0 0 29 2 *", "2026-03-01T00:00:00Z", []string{"2028-02-29T00:00:00Z"}},
		{"30 4 * * 7", "2026-01-01T00:00:00Z", []string{"2026-01-04T04:30:00Z"}}, // 7 is Sunday
		{"5/20 * * * *", "2026-01-01T00:00:00Z", []string{"2026-01-01T00:05:00Z", "2026-01-01T00:25:00Z", "2026-01-01T00:45:00Z", "2026-01-01T01:05:00Z"}},
	}
	for _, tc := range cases {
		c, err := ParseCron(tc.expr, utc)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		at, _ := time.Parse(time.RFC3339, tc.after)
		for _, w := range tc.want {
			at = c.Next(at)
			if got := at.UTC().Format(time.RFC3339); got != w {
				t.Fatalf("%s: next = %s, want %s", tc.expr, got, w)
			}
		}
	}
}

// TestCronDST: across New York's 2026 changes (Mar 8 spring forward at
// 02:00, Nov 1 fall back at 02:00) a daily job fires exactly once a day.
func TestCronDST(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	cases := []struct {
		expr string
		from time.Time
		want []string // local RFC3339
	}{
		{"30 2 * * *", time.Date(2026, 3, 7, 3, 0, 0, 0, ny), []string{
			"2026-03-08T03:00:00-04:00", // 02:30 does not exist: right after the jump
			"2026-03-09T02:30:00-04:00",
		}},
		{"30 1 * * *", time.Date(2026, 10, 31, 2, 0, 0, 0, ny), []string{
			"2026-11-01T01:30:00-04:00", // first of the two 01:30s only
			"2026-11-02T01:30:00-05:00",
		}},
		{"0 * * * *", time.Date(2026, 11, 1, 0, 30, 0, 0, ny), []string{
			"2026-11-01T01:00:00-04:00",
			"2026-11-01T02:00:00-05:00", // the second 01:00 is not a new wall hour
		}},
		{"*/30 2 * * *", time.Date(2026, 3, 8, 1, 0, 0, 0, ny), []string{
			"2026-03-08T03:00:00-04:00", // 02:00 and 02:30 collapse into one run
			"2026-03-09T02:00:00-04:00",
		}},
	}
	for _, tc := range cases {
		c, err := ParseCron(tc.expr, ny)
		if err != nil {
			t.Fatal(err)
		}
		at := tc.from
		for _, w := range tc.want {
			at = c.Next(at)
			if got := at.In(ny).Format(time.RFC3339); got != w {
				t.Fatalf("%s from %s: next = %s, want %s", tc.expr, tc.from, got, w)
			}
		}
	}
}

func TestEveryAndAt(t *testing.T) {
	anchor := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := Every{Interval: 10 * time.Minute, Anchor: anchor}
	if got := e.Next(anchor.Add(-time.Hour)); !got.Equal(anchor) {
		t.Fatalf("before anchor: %v", got)
	}
	if got := e.Next(anchor); !got.Equal(anchor.Add(10 * time.Minute)) {
		t.Fatalf("at anchor: %v", got)
	}
	if got := e.Next(anchor.Add(25 * time.Minute)); !got.Equal(anchor.Add(30 * time.Minute)) {
		t.Fatalf("mid interval: %v", got)
	}
	a := At{Time: anchor}
	if !a.Next(anchor.Add(-1)).Equal(anchor) || !a.Next(anchor).IsZero() {
		t.Fatal("At fires once, strictly after")
	}
	if !(Every{}).Next(anchor).IsZero() {
		t.Fatal("zero interval must never fire")
	}
}

func TestMissedPolicies(t *testing.T) {
	anchor := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := Every{Interval: time.Hour, Anchor: anchor}
	last, now := anchor, anchor.Add(5*time.Hour+30*time.Minute) // 5 missed
	if got := Missed(e, last, now, MissedSkip, 10); len(got) != 0 {
		t.Fatalf("skip: %v", got)
	}
	if got := Missed(e, last, now, MissedRunOnce, 10); len(got) != 1 || !got[0].Equal(anchor.Add(time.Hour)) {
		t.Fatalf("run-once: %v", got)
	}
	if got := Missed(e, last, now, MissedRunAll, 10); len(got) != 5 {
		t.Fatalf("run-all: %v", got)
	}
	if got := Missed(e, last, now, MissedRunAll, 3); len(got) != 3 {
		t.Fatalf("run-all bounded: %v", got)
	}
	if got := Missed(e, now, now, MissedRunAll, 3); len(got) != 0 {
		t.Fatalf("nothing missed: %v", got)
	}
	if _, err := ParsePolicy("sometimes"); !errors.Is(err, ErrBadPolicy) {
		t.Fatal("unknown policy accepted")
	}
}

// FuzzParseCron: parsing never panics, and Next always moves forward.
func FuzzParseCron(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/15 9-17 * * mon-fri", "0 0 29 2 *", "5/20 1,2,3 1-31/2 jan-dec sun-sat", "59 23 31 12 7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := ParseCron(expr, time.UTC)
		if err != nil {
			return
		}
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if n := c.Next(from); !n.IsZero() && !n.After(from) {
			t.Fatalf("%q: Next(%v) = %v is not after", expr, from, n)
		}
	})
}
