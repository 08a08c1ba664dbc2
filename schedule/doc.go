// Package schedule computes when scheduled work is due: 5-field cron
// expressions in an IANA time zone (DST aware), fixed intervals with an
// anchor, and one-shot times, plus the policy for activations missed while
// the gateway was down. It is pure: callers pass the clock in.
package schedule
