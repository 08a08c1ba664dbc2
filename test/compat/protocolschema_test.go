package compat

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// protocolSchema is protocol.schema.json from @openclaw/gateway-protocol:
// draft-07, frame root (oneOf RequestFrame/ResponseFrame/EventFrame),
// "definitions" (params, results, events, shared types) and "methods"
// (name -> {since, scope}).
type protocolSchema struct {
	path    string
	id      string
	doc     map[string]any
	defs    map[string]any
	methods map[string]map[string]any
	c       *jsonschema.Compiler
	root    *jsonschema.Schema

	mu    sync.Mutex
	cache map[string]*jsonschema.Schema
}

const defaultSchemaID = "https://openclaw.ai/protocol.schema.json"

func loadProtocolSchema(t *testing.T, path string) *protocolSchema {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := jsonschema.UnmarshalJSON(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	doc, ok := raw.(map[string]any)
	if !ok {
		t.Fatalf("%s: not a JSON object", path)
	}
	ps := &protocolSchema{path: path, doc: doc, cache: map[string]*jsonschema.Schema{}}
	ps.id, _ = doc["$id"].(string)
	if ps.id == "" {
		ps.id = defaultSchemaID
	}
	if ps.defs, ok = doc["definitions"].(map[string]any); !ok || len(ps.defs) == 0 {
		t.Fatalf("%s: no definitions", path)
	}
	ms, ok := doc["methods"].(map[string]any)
	if !ok || len(ms) == 0 {
		t.Fatalf("%s: no methods map", path)
	}
	ps.methods = map[string]map[string]any{}
	for name, v := range ms {
		m, _ := v.(map[string]any)
		ps.methods[name] = m
	}
	ps.c = jsonschema.NewCompiler()
	ps.c.UseRegexpEngine(compileECMARegexp)
	if err := ps.c.AddResource(ps.id, doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if ps.root, err = ps.c.Compile(ps.id); err != nil {
		t.Fatalf("compile %s root: %v", path, err)
	}
	return ps
}

// healthSummaryPtr locates the HealthSummary schema: it has no definition of
// its own but is spelled out as hello-ok's snapshot.health. The health
// method's result and the health event's payload use it too.
const healthSummaryPtr = "HelloOk/properties/snapshot/properties/health"

// def returns the compiled schema for #/definitions/name (name may continue
// with a JSON pointer below the definition, e.g. healthSummaryPtr), or nil if
// there is no such definition. A definition that does not compile fails the
// test.
func (ps *protocolSchema) def(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	top, _, _ := strings.Cut(name, "/")
	if _, ok := ps.defs[top]; !ok {
		return nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if s, ok := ps.cache[name]; ok {
		return s
	}
	s, err := ps.c.Compile(ps.id + "#/definitions/" + name)
	if err != nil {
		t.Fatalf("compile definition %s: %v", name, err)
	}
	ps.cache[name] = s
	return s
}

// methodScope is the scope the schema's methods map gives name ("" if none).
func (ps *protocolSchema) methodScope(name string) string {
	s, _ := ps.methods[name]["scope"].(string)
	return s
}

// pascal maps a method or event name to its definition stem:
// "system-presence" -> "SystemPresence", "device.pair.list" -> "DevicePairList",
// "progressCard.changed" -> "ProgressCardChanged".
func pascal(name string) string {
	var b strings.Builder
	for _, seg := range strings.FieldsFunc(name, func(r rune) bool { return r == '.' || r == '-' || r == '_' }) {
		b.WriteString(strings.ToUpper(seg[:1]) + seg[1:])
	}
	return b.String()
}

// validationError renders a jsonschema error compactly for a test log.
func validationError(err error) string {
	s := strings.TrimSpace(err.Error())
	lines := strings.Split(s, "\n")
	if len(lines) > 12 {
		lines = append(lines[:12], fmt.Sprintf("  … (%d more lines)", len(lines)-12))
	}
	return strings.Join(lines, "\n")
}

// readNameList reads a testdata list: one name per line, '#' comments.
func readNameList(t *testing.T, file string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		set[line] = true
	}
	return set
}

// --- minimal params ---------------------------------------------------------

// synthesizer builds the smallest params object a definition accepts: only
// required properties (plus timeoutMs at its minimum, so wait-style methods
// answer fast), each with the simplest value its sub-schema allows. The
// result is always checked against the definition by the caller.
type synthesizer struct {
	ps      *protocolSchema
	reCache map[string]*regexp.Regexp
}

var stringCandidates = []string{
	"main", "a", "A", "0", "a1", "00000000-0000-4000-8000-000000000000",
	"agent:main:main", "session:main", "provider-auto:a", "https://example.invalid/", "/tmp",
	"AAAA-AAAA", "UTC+1", "2026-01-01", "a:a", "data:image/png;base64,",
	"conv_" + strings.Repeat("a", 32), "github-setup-" + strings.Repeat("a", 32),
	"github-device-" + strings.Repeat("a", 32),
	"hmac-sha256:v1:" + strings.Repeat("a", 32) + ":" + strings.Repeat("a", 64),
}

func (sy *synthesizer) value(s any, depth int) (any, bool) {
	m, ok := s.(map[string]any)
	if !ok || depth > 12 {
		return nil, false
	}
	if ref, ok := m["$ref"].(string); ok {
		name, found := strings.CutPrefix(ref, "#/definitions/")
		if !found {
			return nil, false
		}
		return sy.value(sy.ps.defs[name], depth+1)
	}
	if c, ok := m["const"]; ok {
		return c, true
	}
	if e, ok := m["enum"].([]any); ok && len(e) > 0 {
		return e[0], true
	}
	for _, key := range []string{"anyOf", "oneOf"} {
		if alts, ok := m[key].([]any); ok {
			for _, alt := range alts {
				if v, ok := sy.value(alt, depth+1); ok {
					return v, true
				}
			}
			return nil, false
		}
	}
	if all, ok := m["allOf"].([]any); ok && len(all) > 0 {
		return sy.value(all[0], depth+1)
	}
	typ := m["type"]
	if ts, ok := typ.([]any); ok && len(ts) > 0 {
		typ = ts[0]
		for _, x := range ts {
			if x != "null" {
				typ = x
				break
			}
		}
	}
	switch typ {
	case "object", nil:
		obj := map[string]any{}
		props, _ := m["properties"].(map[string]any)
		req, _ := m["required"].([]any)
		for _, r := range req {
			name, _ := r.(string)
			v, ok := sy.value(props[name], depth+1)
			if !ok {
				return nil, false
			}
			obj[name] = v
		}
		if tm, ok := props["timeoutMs"].(map[string]any); ok {
			if _, set := obj["timeoutMs"]; !set {
				if v, ok := sy.value(map[string]any{"type": tm["type"], "minimum": firstNonNil(tm["minimum"], 1)}, depth+1); ok {
					obj["timeoutMs"] = v
				}
			}
		}
		return obj, true
	case "string":
		return sy.str(m)
	case "integer", "number":
		n := int64(0)
		if v, ok := asInt(m["minimum"]); ok {
			n = v
		} else if v, ok := asInt(m["exclusiveMinimum"]); ok {
			n = v + 1
		}
		if v, ok := asInt(m["maximum"]); ok && n > v {
			n = v
		}
		return jsonNumber(n), true
	case "boolean":
		return false, true
	case "null":
		return nil, true
	case "array":
		minItems, _ := asInt(m["minItems"])
		arr := []any{}
		for i := int64(0); i < minItems; i++ {
			v, ok := sy.value(m["items"], depth+1)
			if !ok {
				return nil, false
			}
			if s, isStr := v.(string); isStr && i > 0 {
				v = s + strings.Repeat("a", int(i))
			}
			arr = append(arr, v)
		}
		return arr, true
	}
	return nil, false
}

func (sy *synthesizer) str(m map[string]any) (any, bool) {
	minLen, _ := asInt(m["minLength"])
	maxLen, hasMax := asInt(m["maxLength"])
	pattern, _ := m["pattern"].(string)
	var re jsonschema.Regexp
	if pattern != "" {
		var err error
		if re, err = compileECMARegexp(pattern); err != nil {
			return nil, false
		}
	}
	cands := append([]string{
		strings.Repeat("a", int(max(minLen, 1))),
		strings.Repeat("A", int(max(minLen, 1))),
		strings.Repeat("0", int(max(minLen, 1))),
	}, stringCandidates...)
	if m["format"] == "uuid" {
		cands = []string{"00000000-0000-4000-8000-000000000000"}
	}
	for _, c := range cands {
		n := int64(len([]rune(c)))
		if n < minLen || (hasMax && n > maxLen) {
			continue
		}
		if re != nil && !re.MatchString(c) {
			continue
		}
		return c, true
	}
	return nil, false
}

func firstNonNil(v, fallback any) any {
	if v != nil {
		return v
	}
	return fallback
}

// sortedKeys returns the keys of a set in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
