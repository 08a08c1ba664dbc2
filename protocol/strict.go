package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxJSONDepth bounds the nesting of any inbound JSON document. Deeper
// documents are rejected before they are walked.
const MaxJSONDepth = 64

// Strict decoding errors.
var (
	ErrDuplicateKey = errors.New("duplicate key")
	ErrCaseVariant  = errors.New("case-variant key")
	ErrTooDeep      = errors.New("nesting too deep")
	ErrNotJSON      = errors.New("not valid JSON")
)

// ParseStrict decodes one JSON document into a generic tree of
// map[string]any, []any, string, json.Number, bool and nil. Unlike
// encoding/json it rejects duplicate keys, keys that differ only in case
// within one object, nesting deeper than MaxJSONDepth, invalid UTF-8 and
// trailing data, so that what the schema validates is exactly what the
// typed decoder later sees. It is a single-pass recursive-descent parser;
// FuzzParseStrict checks it against encoding/json.
func ParseStrict(data []byte) (any, error) {
	return parseStrict(data, interned.Load())
}

// parseStrict is ParseStrict with the intern table t (nil: none).
func parseStrict(data []byte, t *internTable) (any, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: invalid UTF-8", ErrNotJSON)
	}
	var keys [32]string // room for the keys of a usual frame's open objects
	p := parser{data: data, keys: keys[:0]}
	if t != nil {
		p.strs, p.nums = t.strs, t.nums
	}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, fmt.Errorf("%w: trailing data", ErrNotJSON)
	}
	return v, nil
}

type parser struct {
	data []byte
	pos  int
	strs map[string]any // interned strings and numbers (internTable); nil
	nums map[string]any // before LoadContract
	keys []string       // the keys of the objects being parsed, innermost last
}

// internTable holds the strings that recur in every frame, boxed as the
// values ParseStrict returns: the contract's property names, enum and const
// values and method names (strs), and small integers as json.Number (nums).
// A string or number found in it costs the parser no allocation.
// LoadContract fills it once; until then nothing is interned (the result is
// the same either way).
type internTable struct{ strs, nums map[string]any }

var (
	interned   atomic.Pointer[internTable]
	internOnce sync.Once
)

// maxInternLen bounds the strings worth interning.
const maxInternLen = 64

// eachSchema calls f once for every schema of the contract: each
// definition and every schema nested in one.
func (c *Contract) eachSchema(f func(*Schema)) {
	seen := make(map[*Schema]bool)
	var walk func(s *Schema)
	walk = func(s *Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		f(s)
		for _, ps := range s.Properties {
			walk(ps)
		}
		walk(s.Items)
		for _, ps := range s.PatternProperties {
			walk(ps)
		}
		for _, a := range s.AnyOf {
			walk(a)
		}
		if s.AdditionalProperties != nil {
			walk(s.AdditionalProperties.schema)
		}
	}
	for _, d := range c.root.Definitions {
		walk(d)
	}
}

// buildIntern collects the contract's recurring strings.
func buildIntern(c *Contract) *internTable {
	t := &internTable{strs: make(map[string]any), nums: make(map[string]any)}
	add := func(s string) {
		if len(s) <= maxInternLen {
			t.strs[s] = s
		}
	}
	c.eachSchema(func(s *Schema) {
		for k := range s.Properties {
			add(k)
		}
		for _, e := range s.Enum {
			add(e)
		}
		if s.Const != nil {
			add(*s.Const)
		}
	})
	for m := range c.root.Methods {
		add(m)
	}
	for i := 0; i <= 16; i++ {
		n := strconv.Itoa(i)
		t.nums[n] = json.Number(n)
	}
	return t
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format+" at offset %d", append([]any{ErrNotJSON}, append(args, p.pos)...)...)
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (any, error) {
	if depth > MaxJSONDepth {
		return nil, ErrTooDeep
	}
	if p.pos >= len(p.data) {
		return nil, p.errorf("unexpected end")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, boxed, err := p.scanString()
		if boxed != nil {
			return boxed, err
		}
		return s, err
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	default:
		return nil, p.errorf("unexpected %q", c)
	}
}

func (p *parser) literal(lit string) error {
	if !strings.HasPrefix(string(p.data[p.pos:min(len(p.data), p.pos+len(lit))]), lit) {
		return p.errorf("bad literal")
	}
	p.pos += len(lit)
	return nil
}

func (p *parser) object(depth int) (any, error) {
	p.pos++ // '{'
	obj := make(map[string]any)
	base := len(p.keys)
	defer p.popKeys(base)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return obj, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.errorf("object key is not a string")
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		if err := checkKey(p.keys[base:], key); err != nil {
			return nil, err
		}
		p.keys = append(p.keys, key)
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.errorf("missing ':'")
		}
		p.pos++
		p.skipSpace()
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		obj[key] = v
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unterminated object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return obj, nil
		default:
			return nil, p.errorf("expected ',' or '}'")
		}
	}
}

// popKeys forgets the keys of the object whose keys started at base.
func (p *parser) popKeys(base int) { p.keys = p.keys[:base] }

// checkKey rejects a key already among the object's keys, or there in
// another case. The keys are pairwise distinct under case folding, so at
// most one of them can match.
func checkKey(keys []string, key string) error {
	for _, k := range keys {
		switch {
		case k == key:
			return fmt.Errorf("%w: %q", ErrDuplicateKey, key)
		case strings.EqualFold(k, key):
			return fmt.Errorf("%w: %q and %q", ErrCaseVariant, k, key)
		}
	}
	return nil
}

func (p *parser) array(depth int) (any, error) {
	p.pos++ // '['
	arr := make([]any, 0, 4)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return arr, nil
	}
	for {
		p.skipSpace()
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unterminated array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return arr, nil
		default:
			return nil, p.errorf("expected ',' or ']'")
		}
	}
}

// str parses a string starting at the opening quote.
func (p *parser) str() (string, error) {
	s, _, err := p.scanString()
	return s, err
}

// scanString parses a string starting at the opening quote; boxed is the
// interned value when the string is one (then s is that string too).
func (p *parser) scanString() (s string, boxed any, err error) {
	p.pos++ // '"'
	start := p.pos
	// Fast path: no escapes.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			raw := p.data[start:p.pos]
			p.pos++
			if len(raw) <= maxInternLen {
				if b, ok := p.strs[string(raw)]; ok {
					return b.(string), b, nil
				}
			}
			return string(raw), nil, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", nil, p.errorf("control character in string")
		}
		p.pos++
	}
	buf := make([]byte, 0, p.pos-start+16)
	buf = append(buf, p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil, nil
		case c < 0x20:
			return "", nil, p.errorf("control character in string")
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		p.pos++ // backslash
		if p.pos >= len(p.data) {
			break
		}
		e := p.data[p.pos]
		p.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", nil, p.errorf("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// A valid pair combines; anything else becomes U+FFFD,
				// as encoding/json does.
				if p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
					save := p.pos
					p.pos += 2
					if r2, ok := p.hex4(); ok {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							buf = utf8.AppendRune(buf, dec)
							continue
						}
					}
					p.pos = save
				}
				r = utf8.RuneError
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", nil, p.errorf("bad escape")
		}
	}
	return "", nil, p.errorf("unterminated string")
}

func (p *parser) hex4() (rune, bool) {
	if p.pos+4 > len(p.data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.data[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.pos += 4
	return rune(n), true
}

// number scans a JSON number and returns it as json.Number.
func (p *parser) number() (any, error) {
	start := p.pos
	if p.data[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.pos < len(p.data) && p.data[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return nil, p.errorf("bad number")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return nil, p.errorf("bad number")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return nil, p.errorf("bad number")
		}
	}
	if b, ok := p.nums[string(p.data[start:p.pos])]; ok {
		return b, nil
	}
	return json.Number(p.data[start:p.pos]), nil
}
