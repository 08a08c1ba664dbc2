package compat

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// kind names a JSON type for shape checks.
type kind string

const (
	kBool   kind = "boolean"
	kInt    kind = "integer"
	kNumber kind = "number"
	kString kind = "string"
	kObject kind = "object"
	kArray  kind = "array"
	kNull   kind = "null"
)

// kindOf reports the JSON kind of a value decoded with UseNumber (or with
// jsonschema.UnmarshalJSON, which also yields json.Number).
func kindOf(v any) kind {
	switch x := v.(type) {
	case nil:
		return kNull
	case bool:
		return kBool
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return kInt
		}
		return kNumber
	case float64:
		if x == float64(int64(x)) {
			return kInt
		}
		return kNumber
	case string:
		return kString
	case map[string]any:
		return kObject
	case []any:
		return kArray
	}
	return kind(fmt.Sprintf("%T", v))
}

// is reports whether v has kind k (an integer is also a number).
func is(v any, k kind) bool {
	got := kindOf(v)
	return got == k || (k == kNumber && got == kInt)
}

// shape describes the fields of a JSON object: which must be present, and
// the kind each field must have when it is present.
type shape struct {
	required []string
	fields   map[string]kind
	// nullable fields may also be null (e.g. degradedSinceMs).
	nullable map[string]bool
}

// check asserts the required fields, asserts the kind of every field that
// is present, and logs which fields of the reference shape are absent (the
// real gateway prints them; clawgate may omit optional ones).
func (s shape) check(t *testing.T, what string, obj map[string]any) {
	t.Helper()
	for _, k := range s.required {
		if _, ok := obj[k]; !ok {
			t.Errorf("%s: missing required field %q (got fields %v)", what, k, keys(obj))
		}
	}
	var absent []string
	for k, want := range s.fields {
		v, ok := obj[k]
		if !ok {
			absent = append(absent, k)
			continue
		}
		if v == nil && s.nullable[k] {
			continue
		}
		if !is(v, want) {
			t.Errorf("%s: field %q is %s (%s), want %s", what, k, kindOf(v), truncate(compactJSON(v), 120), want)
		}
	}
	if len(absent) > 0 {
		sort.Strings(absent)
		t.Logf("%s: fields the real OpenClaw gateway also returns but this response omits: %s", what, strings.Join(absent, ", "))
	}
}

func asObject(t *testing.T, what string, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: got %s %s, want a JSON object", what, kindOf(v), truncate(compactJSON(v), 300))
	}
	return m
}

func asArray(t *testing.T, what string, v any) []any {
	t.Helper()
	a, ok := v.([]any)
	if !ok {
		t.Fatalf("%s: got %s %s, want a JSON array", what, kindOf(v), truncate(compactJSON(v), 300))
	}
	return a
}

// dig walks nested objects: dig(v, "error", "details", "code").
func dig(v any, path ...string) (any, bool) {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[p]; !ok {
			return nil, false
		}
	}
	return v, true
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	case float64:
		if x == float64(int64(x)) {
			return int64(x), true
		}
	}
	return 0, false
}

// checkRecentMillis asserts v is an integer epoch-milliseconds timestamp
// within the last 10 minutes (health results may be cached) and not ahead
// of now by more than a minute.
func checkRecentMillis(t *testing.T, what string, v any) {
	t.Helper()
	ms, ok := asInt(v)
	if !ok {
		t.Errorf("%s: got %s %s, want integer epoch milliseconds", what, kindOf(v), truncate(compactJSON(v), 80))
		return
	}
	now := time.Now().UnixMilli()
	if ms < now-10*60*1000 || ms > now+60*1000 {
		t.Errorf("%s = %d (%v), want a recent epoch-millisecond time (now %d)", what, ms, time.UnixMilli(ms).UTC(), now)
	}
}

func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}
