package protocol

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"regexp"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The contract is split by feature: schema/gateway.schema.json holds the
// frames and core methods, and each feature adds its own file of
// definitions and x-methods. Names must not collide across files.
//
//go:embed schema/*.json
var schemaFS embed.FS

// Schema is the subset of JSON Schema (draft-07) that clawgate's embedded
// contract uses: types, properties, required, additionalProperties,
// patternProperties, items, enum, const, string and array lengths, numeric
// bounds, patterns, anyOf and local $ref.
type Schema struct {
	Ref                  string             `json:"$ref"`
	Type                 typeList           `json:"type"`
	Properties           map[string]*Schema `json:"properties"`
	Required             []string           `json:"required"`
	AdditionalProperties *boolOrSchema      `json:"additionalProperties"`
	PatternProperties    map[string]*Schema `json:"patternProperties"`
	Items                *Schema            `json:"items"`
	Enum                 []string           `json:"enum"`
	Const                *string            `json:"const"`
	MinLength            *int               `json:"minLength"`
	MaxLength            *int               `json:"maxLength"`
	Minimum              *float64           `json:"minimum"`
	Maximum              *float64           `json:"maximum"`
	MinItems             *int               `json:"minItems"`
	MaxItems             *int               `json:"maxItems"`
	Pattern              string             `json:"pattern"`
	AnyOf                []*Schema          `json:"anyOf"`
	Definitions          map[string]*Schema `json:"definitions"`
	Description          string             `json:"description"`
	Methods              map[string]string  `json:"x-methods"`

	pattern  *regexp.Regexp
	ascii    *asciiClass // set when pattern is ^[class]*$ and asciiMatch decides it
	patterns []compiledPattern
}

type compiledPattern struct {
	re     *regexp.Regexp
	schema *Schema
}

type typeList []string

func (t *typeList) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '[' {
		var l []string
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		*t = l
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*t = []string{s}
	return nil
}

type boolOrSchema struct {
	allowed bool
	schema  *Schema
}

func (b *boolOrSchema) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "true":
		b.allowed = true
		return nil
	case "false":
		return nil
	}
	b.allowed = true
	b.schema = new(Schema)
	return json.Unmarshal(data, b.schema)
}

// ValidationError is the first violation found, phrased like Ajv so that
// messages match the real gateway's ("at /client/id: must be equal to one
// of the allowed values").
type ValidationError struct {
	Path    string // JSON pointer of the offending value, "" for the root
	Message string

	// While being built: an unexpected property (finish phrases it).
	unexpected    bool
	unexpectedKey string
}

// Error formats the violation the way OpenClaw's formatValidationErrors
// does: "at /client/id: must be ...", "at root: unexpected property 'x'",
// "must have required property 'client'".
func (e *ValidationError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return "at " + e.Path + ": " + e.Message
}

// Contract is the embedded schema: frame and method params definitions.
type Contract struct {
	root *Schema
}

// LoadContract parses, merges and compiles the embedded schema files.
func LoadContract() (*Contract, error) {
	files, err := fs.Glob(schemaFS, "schema/*.json")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("protocol: no embedded schema files")
	}
	root := &Schema{Definitions: map[string]*Schema{}, Methods: map[string]string{}}
	for _, name := range files {
		data, err := schemaFS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("protocol: read %s: %w", name, err)
		}
		part := new(Schema)
		if err := json.Unmarshal(data, part); err != nil {
			return nil, fmt.Errorf("protocol: parse %s: %w", name, err)
		}
		for k, v := range part.Definitions {
			if _, dup := root.Definitions[k]; dup {
				return nil, fmt.Errorf("protocol: %s redefines %s", name, k)
			}
			root.Definitions[k] = v
		}
		for k, v := range part.Methods {
			if _, dup := root.Methods[k]; dup {
				return nil, fmt.Errorf("protocol: %s redeclares method %s", name, k)
			}
			root.Methods[k] = v
		}
	}
	c := &Contract{root: root}
	for name, s := range root.Definitions {
		if err := c.compile(s); err != nil {
			return nil, fmt.Errorf("protocol: compile %s: %w", name, err)
		}
	}
	for m, ref := range root.Methods {
		if c.resolve(ref) == nil {
			return nil, fmt.Errorf("protocol: method %s: unknown ref %s", m, ref)
		}
	}
	internOnce.Do(func() { interned.Store(buildIntern(c)) })
	return c, nil
}

func (c *Contract) compile(s *Schema) error {
	if s == nil {
		return nil
	}
	if s.Ref != "" && c.resolve(s.Ref) == nil {
		return fmt.Errorf("unknown ref %s", s.Ref)
	}
	if s.Pattern != "" {
		re, err := regexp.Compile(s.Pattern)
		if err != nil {
			return err
		}
		s.pattern = re
		s.ascii = starOfClass(s.Pattern)
	}
	keys := make([]string, 0, len(s.PatternProperties))
	for k := range s.PatternProperties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		re, err := regexp.Compile(k)
		if err != nil {
			return err
		}
		s.patterns = append(s.patterns, compiledPattern{re, s.PatternProperties[k]})
	}
	children := []*Schema{s.Items}
	for _, p := range s.Properties {
		children = append(children, p)
	}
	for _, p := range s.PatternProperties {
		children = append(children, p)
	}
	children = append(children, s.AnyOf...)
	if s.AdditionalProperties != nil {
		children = append(children, s.AdditionalProperties.schema)
	}
	for _, ch := range children {
		if err := c.compile(ch); err != nil {
			return err
		}
	}
	return nil
}

func (c *Contract) resolve(ref string) *Schema {
	name, ok := strings.CutPrefix(ref, "#/definitions/")
	if !ok {
		return nil
	}
	return c.root.Definitions[name]
}

// Definition returns a named definition, or nil.
func (c *Contract) Definition(name string) *Schema { return c.root.Definitions[name] }

// HasParams reports whether the contract declares params for method.
func (c *Contract) HasParams(method string) bool {
	_, ok := c.root.Methods[method]
	return ok
}

// Validate checks a parsed document (from ParseStrict) against the named
// definition.
func (c *Contract) Validate(def string, v any) error {
	s := c.root.Definitions[def]
	if s == nil {
		return fmt.Errorf("protocol: no definition %q", def)
	}
	return finish(c.validate(s, v))
}

// ValidateParams checks a method's params (nil when absent) against its
// declared params definition. Methods without a declaration accept nothing
// but an absent params or an empty object.
func (c *Contract) ValidateParams(method string, v any) error {
	ref, ok := c.root.Methods[method]
	if !ok {
		if v == nil {
			return nil
		}
		m, isObj := v.(map[string]any)
		if !isObj {
			return &ValidationError{Message: "must be object"}
		}
		for k := range m {
			return finish(&ValidationError{unexpected: true, unexpectedKey: k})
		}
		return nil
	}
	if v == nil {
		v = map[string]any{}
	}
	return finish(c.validate(c.resolve(ref), v))
}

// Violations are built where they are found with the path relative to
// that value (""); each enclosing member and element prefixes its own
// segment on the way out (within), and Validate and ValidateParams finish
// the message (finish). So validating a valid document builds no path.

// fail is a violation at the value being checked.
func fail(msg string) *ValidationError { return &ValidationError{Message: msg} }

// within prefixes err's path with the element (or escaped member) seg.
func within(err error, seg string) error {
	if ve, ok := err.(*ValidationError); ok {
		ve.Path = "/" + seg + ve.Path
	}
	return err
}

// withinMember prefixes err's path with the member k, if err is not nil.
func withinMember(err error, k string) error {
	if err == nil {
		return nil
	}
	return within(err, escapePointer(k))
}

// finish completes a violation for the caller of Validate: an unexpected
// property names its place in the message, like Ajv's.
func finish(err error) error {
	if ve, ok := err.(*ValidationError); ok && ve.unexpected {
		where := "root"
		if ve.Path != "" {
			where = ve.Path
		}
		// The message carries its own location; Path stays empty so Error()
		// does not prefix it twice.
		*ve = ValidationError{Message: "at " + where + ": unexpected property '" + ve.unexpectedKey + "'"}
	}
	return err
}

func (c *Contract) validate(s *Schema, v any) error {
	if s.Ref != "" {
		return c.validate(c.resolve(s.Ref), v)
	}
	if len(s.AnyOf) > 0 {
		var first error
		for _, alt := range s.AnyOf {
			err := c.validate(alt, v)
			if err == nil {
				first = nil
				break
			}
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return fail("must match a schema in anyOf")
		}
	}
	if len(s.Type) > 0 && !typeMatches(s.Type, v) {
		return fail("must be " + strings.Join(s.Type, ","))
	}
	switch x := v.(type) {
	case string:
		return s.validateString(x)
	case json.Number:
		return s.validateNumber(x)
	case []any:
		return c.validateArray(s, x)
	case map[string]any:
		return c.validateObject(s, x)
	}
	if s.Const != nil || len(s.Enum) > 0 {
		return fail("must be equal to one of the allowed values")
	}
	return nil
}

func typeMatches(types []string, v any) bool {
	for _, t := range types {
		switch t {
		case "string":
			if _, ok := v.(string); ok {
				return true
			}
		case "boolean":
			if _, ok := v.(bool); ok {
				return true
			}
		case "null":
			if v == nil {
				return true
			}
		case "object":
			if _, ok := v.(map[string]any); ok {
				return true
			}
		case "array":
			if _, ok := v.([]any); ok {
				return true
			}
		case "number":
			if n, ok := v.(json.Number); ok {
				if _, err := strconv.ParseFloat(string(n), 64); err == nil {
					return true
				}
			}
		case "integer":
			if n, ok := v.(json.Number); ok && isInteger(n) {
				return true
			}
		}
	}
	return false
}

// maxSafeInteger is the largest integer a JavaScript peer can hold exactly.
const maxSafeInteger = 1<<53 - 1

func isInteger(n json.Number) bool {
	if _, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return true
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return false
	}
	return f == math.Trunc(f) && math.Abs(f) <= maxSafeInteger
}

func (s *Schema) validateString(x string) error {
	if s.Const != nil && x != *s.Const {
		return fail("must be equal to constant")
	}
	if len(s.Enum) > 0 {
		found := false
		for _, e := range s.Enum {
			if e == x {
				found = true
				break
			}
		}
		if !found {
			return fail("must be equal to one of the allowed values")
		}
	}
	n := utf8.RuneCountInString(x)
	if s.MinLength != nil && n < *s.MinLength {
		return fail(fmt.Sprintf("must NOT have fewer than %d characters", *s.MinLength))
	}
	if s.MaxLength != nil && n > *s.MaxLength {
		return fail(fmt.Sprintf("must NOT have more than %d characters", *s.MaxLength))
	}
	if s.ascii != nil && !s.ascii.all(x) || s.ascii == nil && s.pattern != nil && !s.pattern.MatchString(x) {
		return fail(fmt.Sprintf("must match pattern %q", s.Pattern))
	}
	return nil
}

func (s *Schema) validateNumber(x json.Number) error {
	f, err := strconv.ParseFloat(string(x), 64)
	if err != nil {
		return fail("must be number")
	}
	if s.Minimum != nil && f < *s.Minimum {
		return fail(fmt.Sprintf("must be >= %v", *s.Minimum))
	}
	if s.Maximum != nil && f > *s.Maximum {
		return fail(fmt.Sprintf("must be <= %v", *s.Maximum))
	}
	if len(s.Enum) > 0 || s.Const != nil {
		return fail("must be equal to one of the allowed values")
	}
	return nil
}

func (c *Contract) validateArray(s *Schema, x []any) error {
	if s.MinItems != nil && len(x) < *s.MinItems {
		return fail(fmt.Sprintf("must NOT have fewer than %d items", *s.MinItems))
	}
	if s.MaxItems != nil && len(x) > *s.MaxItems {
		return fail(fmt.Sprintf("must NOT have more than %d items", *s.MaxItems))
	}
	if s.Items == nil {
		return nil
	}
	for i, el := range x {
		if err := c.validate(s.Items, el); err != nil {
			return within(err, strconv.Itoa(i))
		}
	}
	return nil
}

func (c *Contract) validateObject(s *Schema, x map[string]any) error {
	for _, r := range s.Required {
		if _, ok := x[r]; !ok {
			return fail(fmt.Sprintf("must have required property '%s'", r))
		}
	}
	// Members are checked in map order; only when one fails are they
	// checked again in key order, so that the error reported is always the
	// first in key order while a valid object costs no sort.
	for k, v := range x {
		if err := c.validateMember(s, k, v); err != nil {
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if err := c.validateMember(s, k, x[k]); err != nil {
					return err
				}
			}
			return err
		}
	}
	return nil
}

// validateMember checks the member k: v of an object against s.
func (c *Contract) validateMember(s *Schema, k string, v any) error {
	if ps, ok := s.Properties[k]; ok {
		return withinMember(c.validate(ps, v), k)
	}
	matched := false
	for _, p := range s.patterns {
		if p.re.MatchString(k) {
			matched = true
			if err := c.validate(p.schema, v); err != nil {
				return withinMember(err, k)
			}
		}
	}
	if matched {
		return nil
	}
	ap := s.AdditionalProperties
	switch {
	case ap == nil:
		// JSON Schema: additional members are allowed unless forbidden.
	case !ap.allowed:
		return &ValidationError{unexpected: true, unexpectedKey: k}
	case ap.schema != nil:
		return withinMember(c.validate(ap.schema, v), k)
	}
	return nil
}

func escapePointer(k string) string {
	k = strings.ReplaceAll(k, "~", "~0")
	return strings.ReplaceAll(k, "/", "~1")
}

// asciiClass is the ASCII half of a character class, one bit per byte.
type asciiClass [2]uint64

// all reports whether every ASCII byte of x is in the class.
func (c *asciiClass) all(x string) bool {
	for i := 0; i < len(x); i++ {
		if b := x[i]; b < utf8.RuneSelf && c[b>>6]&(1<<(b&63)) == 0 {
			return false
		}
	}
	return true
}

// starOfClass returns, for a pattern of the form ^[class]*$ whose class
// holds every rune from U+0080 up (like the contract's SafeText,
// ^[^|\x00-\x1f\x7f]*$), the class's ASCII half: the pattern then
// matches exactly the strings whose ASCII bytes are all in it. Bytes from
// 0x80 up are parts of multi-byte runes, or invalid UTF-8 that regexp reads
// as U+FFFD; both are in the class. It returns nil for any other pattern.
func starOfClass(pattern string) *asciiClass {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) != 3 ||
		re.Sub[0].Op != syntax.OpBeginText || re.Sub[2].Op != syntax.OpEndText ||
		re.Sub[1].Op != syntax.OpStar || re.Sub[1].Sub[0].Op != syntax.OpCharClass {
		return nil
	}
	ranges := re.Sub[1].Sub[0].Rune
	var c asciiClass
	upper := false
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		if lo <= utf8.RuneSelf && hi >= unicode.MaxRune {
			upper = true
		}
		for r := max(lo, 0); r <= hi && r < utf8.RuneSelf; r++ {
			c[r>>6] |= 1 << (r & 63)
		}
	}
	if !upper {
		return nil
	}
	return &c
}
