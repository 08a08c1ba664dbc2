package protocol

import (
	"errors"
	"fmt"
	"sort"
	"testing"
)

// FuzzValidate: the validator reports exactly what the reference (the
// validator before paths were built lazily, schemaref_test.go) reports,
// for every definition and every declared method's params. Its seeds are
// the transcripts' frames, their params and FuzzConnectFrame's corpus
// shapes: mostly valid documents, whose members a mutation breaks.
func FuzzValidate(f *testing.F) {
	c, err := LoadContract()
	if err != nil {
		f.Fatal(err)
	}
	defs := make([]string, 0, len(c.root.Definitions))
	for name := range c.root.Definitions {
		defs = append(defs, name)
	}
	sort.Strings(defs)
	methods := make([]string, 0, len(c.root.Methods))
	for m := range c.root.Methods {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, s := range transcriptFrames(f) {
		f.Add(s)
	}
	f.Add([]byte(benchConnectFrame))
	f.Add([]byte(`{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"l|x","mode":"cli","extra":1},"scopes":["a","b\u0001"],"zz":1}`))
	f.Add([]byte(`{"permissions":{"a/b~c":1,"":true},"caps":[1,"x",""]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseStrict(data)
		if err != nil {
			return
		}
		docs := []any{v}
		if obj, ok := v.(map[string]any); ok && obj["params"] != nil {
			docs = append(docs, obj["params"])
		}
		for _, doc := range docs {
			for _, name := range defs {
				got := c.Validate(name, doc)
				want := c.refValidate(c.root.Definitions[name], doc, "")
				same(t, name, got, want)
			}
			for _, m := range methods {
				got := c.ValidateParams(m, doc)
				want := c.refValidate(c.resolve(c.root.Methods[m]), doc, "")
				same(t, "params of "+m, got, want)
			}
		}
	})
}

func same(t *testing.T, what string, got, want error) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Fatalf("%s: got %v, reference %v", what, got, want)
	}
	if got == nil {
		return
	}
	var g, w *ValidationError
	if !errors.As(got, &g) || !errors.As(want, &w) || *g != *w {
		t.Fatalf("%s: got %#v, reference %#v", what, got, want)
	}
}

// TestValidationErrorPaths pins the messages clients see for violations at
// several depths (the phrasing of Ajv as the real gateway formats it).
func TestValidationErrorPaths(t *testing.T) {
	c, err := LoadContract()
	if err != nil {
		t.Fatal(err)
	}
	base := `"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"}`
	for _, tc := range []struct{ doc, want string }{
		{`{` + base + `}`, ""},
		{`{` + base + `,"zz":1}`, "at root: unexpected property 'zz'"},
		{`{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli","x":1}}`, "at /client: unexpected property 'x'"},
		{`{"minProtocol":4,"maxProtocol":4,"client":{"id":"nope","version":"1","platform":"linux","mode":"cli"}}`, "at /client/id: must be equal to one of the allowed values"},
		{`{` + base + `,"scopes":["operator.read","a|b"]}`, `at /scopes/1: must match pattern "^[^|\\x00-\\x1f\\x7f]*$"`},
		{`{` + base + `,"permissions":{"a/b~c":1}}`, "at /permissions/a~1b~0c: must be boolean"},
		{`{` + base + `,"caps":[""],"scopes":[1]}`, "at /caps/0: must NOT have fewer than 1 characters"},
		{`{"minProtocol":4,"client":{}}`, "must have required property 'maxProtocol'"},
	} {
		v, err := ParseStrict([]byte(tc.doc))
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if err := c.Validate("ConnectParams", v); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.doc, got, tc.want)
		}
	}
	if err := c.ValidateParams("no-such-method", map[string]any{"k": 1}); err == nil || err.Error() != "at root: unexpected property 'k'" {
		t.Errorf("undeclared method's params: %v", err)
	}
}

// BenchmarkValidateConnect validates the CLI's connect frame and params, as
// the handshake does (no violation: no path is built).
func BenchmarkValidateConnect(b *testing.B) {
	c, err := LoadContract()
	if err != nil {
		b.Fatal(err)
	}
	v, err := ParseStrict([]byte(benchConnectFrame))
	if err != nil {
		b.Fatal(err)
	}
	params := v.(map[string]any)["params"]
	b.ReportAllocs()
	for b.Loop() {
		if c.Validate("RequestFrame", v) != nil || c.Validate("ConnectParams", params) != nil {
			b.Fatal("invalid")
		}
	}
}

// FuzzPatternFastPath: for every pattern of the contract that is decided
// without regexp (starOfClass), the decision is regexp's, for any string,
// valid UTF-8 or not.
func FuzzPatternFastPath(f *testing.F) {
	c, err := LoadContract()
	if err != nil {
		f.Fatal(err)
	}
	var fast []*Schema
	c.eachSchema(func(s *Schema) {
		if s.ascii != nil {
			fast = append(fast, s)
		}
	})
	if len(fast) == 0 {
		f.Fatal("no pattern takes the fast path")
	}
	for _, s := range []string{"", "operator.read", "a|b", "x\x00", "\x7f", "é", "\xff\xfe", "\u2028", "~{}", "\x1f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, x string) {
		for _, s := range fast {
			if got, want := s.ascii.all(x), s.pattern.MatchString(x); got != want {
				t.Fatalf("pattern %q on %q: fast %v, regexp %v", s.Pattern, x, got, want)
			}
		}
	})
}

// TestStarOfClass: only ^[class]*$ with every non-ASCII rune in the class
// takes the fast path.
func TestStarOfClass(t *testing.T) {
	for p, want := range map[string]bool{
		`^[^|\x00-\x1f\x7f]*$`:       true,
		`^[^a]*$`:                    true,
		`^[a-z]*$`:                   false, // non-ASCII runes outside the class
		`^[^|\x00-\x1f\x7f]+$`:       false,
		`[^|]*$`:                     false,
		`^[^|]*`:                     false,
		`\S`:                         false,
		`^[^/\\]+$`:                  false,
		`^[^|\x00-\x1f\x7f\x{80}]*$`: false, // U+0080 excluded
	} {
		if got := starOfClass(p) != nil; got != want {
			t.Errorf("starOfClass(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestParseStrictKeys: duplicate and case-variant keys are refused within
// one object only, at any depth, however objects nest and follow each other.
func TestParseStrictKeys(t *testing.T) {
	for doc, want := range map[string]string{
		`{"a":{"a":1},"b":{"a":1,"b":[{"a":1},{"a":2}]}}`:                           "",
		`{"a":{"x":1},"x":2,"y":{"x":{"x":{"x":1}}}}`:                               "",
		`{"a":{"x":1},"A":2}`:                                                       `case-variant key: "a" and "A"`,
		`{"a":{"x":1,"b":2,"X":3}}`:                                                 `case-variant key: "x" and "X"`,
		`{"a":[{"k":1,"k":2}]}`:                                                     `duplicate key: "k"`,
		`{"a":1,"b":{"c":{}},"b":2}`:                                                `duplicate key: "b"`,
		`{"p":{"q":{"r":1,"s":2,"t":3,"u":4,"v":5,"w":6,"x":7,"y":8,"z":9,"Z":0}}}`: `case-variant key: "z" and "Z"`,
	} {
		_, err := ParseStrict([]byte(doc))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if want == "" && err != nil || want != "" && got != want {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
	// Many keys (past the parser's stack buffer), then one repeated.
	doc := []byte("{")
	for i := range 40 {
		doc = fmt.Appendf(doc, `"k%d":{"k%d":%d},`, i, i, i)
	}
	if _, err := ParseStrict(append(doc, `"k0":1}`...)); err == nil || err.Error() != `duplicate key: "k0"` {
		t.Errorf("40 keys then k0 again: %v", err)
	}
}
