package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Cron is a parsed 5-field cron expression (minute hour day-of-month month
// day-of-week) evaluated in a time zone.
//
// Daylight-saving rules, chosen to match what people expect of a wall
// clock: a time that does not exist on a spring-forward day (02:30 when
// clocks jump from 02:00 to 03:00) fires once, right after the jump; a
// time that happens twice on a fall-back day (01:30) fires once, at its
// first occurrence.
type Cron struct {
	expr                          string
	loc                           *time.Location
	minute, hour, dom, month, dow uint64 // bit sets
	domStar, dowStar              bool
}

// ErrBadCron is wrapped by every parse error.
var ErrBadCron = errors.New("schedule: bad cron expression")

var monthNames = map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
	"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}
var dowNames = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// maxExprLen bounds what ParseCron will look at.
const maxExprLen = 256

// ParseCron parses expr ("*/15 9-17 * * mon-fri") for the zone loc (nil
// means UTC). Fields take *, numbers, names (jan, mon), ranges a-b, lists
// a,b and steps */n or a-b/n; day-of-week 7 is Sunday. As in classic cron,
// when both day fields are restricted a day matching either one fires.
func ParseCron(expr string, loc *time.Location) (*Cron, error) {
	if loc == nil {
		loc = time.UTC
	}
	if len(expr) > maxExprLen {
		return nil, fmt.Errorf("%w: longer than %d characters", ErrBadCron, maxExprLen)
	}
	f := strings.Fields(expr)
	if len(f) != 5 {
		return nil, fmt.Errorf("%w %q: want 5 fields (minute hour day month weekday), got %d", ErrBadCron, expr, len(f))
	}
	c := &Cron{expr: expr, loc: loc, domStar: f[2] == "*", dowStar: f[4] == "*"}
	var err error
	specs := []struct {
		dst    *uint64
		field  string
		name   string
		lo, hi int
		names  map[string]int
	}{
		{&c.minute, f[0], "minute", 0, 59, nil},
		{&c.hour, f[1], "hour", 0, 23, nil},
		{&c.dom, f[2], "day of month", 1, 31, nil},
		{&c.month, f[3], "month", 1, 12, monthNames},
		{&c.dow, f[4], "day of week", 0, 7, dowNames},
	}
	for _, s := range specs {
		if *s.dst, err = parseField(s.field, s.lo, s.hi, s.names); err != nil {
			return nil, fmt.Errorf("%w %q: %s: %v", ErrBadCron, expr, s.name, err)
		}
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday
		c.dow |= 1
	}
	return c, nil
}

// String returns the expression.
func (c *Cron) String() string { return c.expr }

func parseField(field string, lo, hi int, names map[string]int) (uint64, error) {
	var set uint64
	for _, part := range strings.Split(field, ",") {
		step := 1
		if base, s, ok := strings.Cut(part, "/"); ok {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 || n > hi {
				return 0, fmt.Errorf("bad step %q", s)
			}
			part, step = base, n
		}
		a, b := lo, hi
		switch {
		case part == "*":
		case strings.Contains(part, "-"):
			x, y, _ := strings.Cut(part, "-")
			var err error
			if a, err = atom(x, lo, hi, names); err != nil {
				return 0, err
			}
			if b, err = atom(y, lo, hi, names); err != nil {
				return 0, err
			}
			if a > b {
				return 0, fmt.Errorf("range %q runs backwards", part)
			}
		default:
			n, err := atom(part, lo, hi, names)
			if err != nil {
				return 0, err
			}
			a, b = n, n
			if step > 1 { // "5/15" means 5-hi/15
				b = hi
			}
		}
		for i := a; i <= b; i += step {
			set |= 1 << uint(i)
		}
	}
	return set, nil
}

func atom(s string, lo, hi int, names map[string]int) (int, error) {
	if n, ok := names[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is outside %d-%d", n, lo, hi)
	}
	return n, nil
}

func (c *Cron) dayMatches(d time.Time) bool {
	if c.month&(1<<uint(d.Month())) == 0 {
		return false
	}
	dom := c.dom&(1<<uint(d.Day())) != 0
	dow := c.dow&(1<<uint(d.Weekday())) != 0
	switch {
	case c.domStar && c.dowStar:
		return true
	case c.domStar:
		return dow
	case c.dowStar:
		return dom
	}
	return dom || dow
}

// maxSearchDays bounds Next's search (Feb 29 on a Monday, say, is rare).
const maxSearchDays = 366 * 8

// Next implements Schedule: the first activation strictly after t.
func (c *Cron) Next(t time.Time) time.Time {
	local := t.In(c.loc)
	y, m, d := local.Date()
	day := time.Date(y, m, d, 12, 0, 0, 0, c.loc) // noon: safe from DST edges
	for i := 0; i < maxSearchDays; i++ {
		if c.dayMatches(day) {
			dy, dm, dd := day.Date()
			for h := 0; h < 24; h++ {
				if c.hour&(1<<uint(h)) == 0 {
					continue
				}
				for mi := 0; mi < 60; mi++ {
					if c.minute&(1<<uint(mi)) == 0 {
						continue
					}
					cand := c.wallTime(dy, dm, dd, h, mi)
					if cand.After(t) {
						return cand
					}
				}
			}
		}
		day = day.AddDate(0, 0, 1)
	}
	return time.Time{}
}

// wallTime resolves a wall-clock time in the zone: a time in a
// spring-forward gap becomes the first instant after the gap; an
// ambiguous fall-back time becomes its first occurrence (time.Date's
// choice, made explicit here).
func (c *Cron) wallTime(y int, m time.Month, d, h, mi int) time.Time {
	t := time.Date(y, m, d, h, mi, 0, 0, c.loc)
	if t.Hour() == h && t.Minute() == mi {
		// Exists; prefer the earlier of two occurrences.
		if earlier := t.Add(-time.Hour); earlier.Hour() == h && earlier.Minute() == mi && earlier.Day() == d {
			return earlier
		}
		return t
	}
	// In a gap: the first instant whose wall clock is past the requested
	// one is the instant the clocks jumped.
	want := h*60 + mi
	u := time.Date(y, m, d, 0, 0, 0, 0, c.loc)
	for i := 0; i < 26*60; i++ {
		w := u.In(c.loc)
		if w.Day() != d || w.Hour()*60+w.Minute() > want {
			return u
		}
		u = u.Add(time.Minute)
	}
	return t
}
