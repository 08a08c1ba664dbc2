package compat

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// protocol.schema.json is generated from TypeBox, so its "pattern" keywords
// are ECMA-262 regular expressions. Go's RE2 rejects some of them (\uXXXX
// escapes, (?! lookahead) and reads others differently (\s, .). ecmaRegexp
// translates the ECMA syntax the schema uses into RE2 and evaluates leading
// lookaheads (`^(?!X)Y`, `^(?=X)Y`) as separate anchored matches, which is
// exact for lookaheads at the start of the input.

// ecmaWhitespace is ECMA-262 \s (WhiteSpace + LineTerminator) as RE2 class items.
const ecmaWhitespace = `\t\n\v\f\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}`

type lookahead struct {
	re     *regexp.Regexp // anchored: ^(?:X)
	negate bool
}

type ecmaRegexp struct {
	src   string
	ahead []lookahead
	re    *regexp.Regexp
}

func (r *ecmaRegexp) MatchString(s string) bool {
	for _, la := range r.ahead {
		if la.re.MatchString(s) == la.negate {
			return false
		}
	}
	return r.re.MatchString(s)
}

func (r *ecmaRegexp) String() string { return r.src }

// compileECMARegexp is a jsonschema.RegexpEngine.
func compileECMARegexp(src string) (jsonschema.Regexp, error) {
	r := &ecmaRegexp{src: src}
	rest := src
	if strings.HasPrefix(rest, "^") {
		body := rest[1:]
		for strings.HasPrefix(body, "(?!") || strings.HasPrefix(body, "(?=") {
			end, err := groupEnd(body)
			if err != nil {
				return nil, fmt.Errorf("pattern %q: %w", src, err)
			}
			inner, err := translateECMA(body[3:end])
			if err != nil {
				return nil, fmt.Errorf("pattern %q: %w", src, err)
			}
			re, err := regexp.Compile(`^(?:` + inner + `)`)
			if err != nil {
				return nil, fmt.Errorf("pattern %q: lookahead: %w", src, err)
			}
			r.ahead = append(r.ahead, lookahead{re: re, negate: body[2] == '!'})
			body = body[end+1:]
		}
		rest = "^" + body
	}
	tr, err := translateECMA(rest)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", src, err)
	}
	if r.re, err = regexp.Compile(tr); err != nil {
		return nil, fmt.Errorf("pattern %q (as RE2 %q): %w", src, tr, err)
	}
	return r, nil
}

// groupEnd returns the index of the ')' closing the group that starts at s[0].
func groupEnd(s string) (int, error) {
	depth, inClass := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("unbalanced group")
}

// translateECMA rewrites ECMA-262 (no flags) syntax into RE2 syntax.
func translateECMA(p string) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			if i+1 >= len(p) {
				return "", fmt.Errorf("trailing backslash")
			}
			i++
			e := p[i]
			switch e {
			case 'u':
				if i+1 < len(p) && p[i+1] == '{' {
					j := strings.IndexByte(p[i:], '}')
					if j < 0 {
						return "", fmt.Errorf("bad \\u{...} escape")
					}
					b.WriteString(`\x{` + p[i+2:i+j] + `}`)
					i += j
					continue
				}
				if i+5 > len(p) {
					return "", fmt.Errorf("short \\u escape")
				}
				hex := p[i+1 : i+5]
				for _, h := range hex {
					if !strings.ContainsRune("0123456789abcdefABCDEF", h) {
						return "", fmt.Errorf("bad \\u escape %q", hex)
					}
				}
				b.WriteString(`\x{` + hex + `}`)
				i += 4
			case 's':
				if inClass {
					b.WriteString(ecmaWhitespace)
				} else {
					b.WriteString(`[` + ecmaWhitespace + `]`)
				}
			case 'S':
				if inClass {
					b.WriteString(`\S`) // approximation: RE2's ASCII \S
				} else {
					b.WriteString(`[^` + ecmaWhitespace + `]`)
				}
			case '/':
				b.WriteByte('/')
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		case inClass:
			if c == ']' {
				inClass = false
			}
			b.WriteByte(c)
		case c == '[':
			inClass = true
			b.WriteByte(c)
			// ECMA allows ']' first in a class only as [^] / []; RE2 reads a
			// leading ']' as a literal. Neither appears in the schema.
		case c == '.':
			b.WriteString(`[^\n\r\x{2028}\x{2029}]`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func TestECMARegexp(t *testing.T) {
	cases := []struct {
		pattern string
		match   []string
		nomatch []string
	}{
		{`^(?!\.{1,2}$)(?:[^\uD800-\uDFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])+$`,
			[]string{"a", "abc.def", "...", "é✓"}, []string{"", ".", ".."}},
		{`^(?!.*(?:^|/)\.{1,2}(?:/|$))[A-Za-z0-9][A-Za-z0-9._:/#-]{0,255}$`,
			[]string{"a", "a/b.c", "x:y#z"}, []string{"a/../b", "a/.", "-a", ""}},
		{`^(?!.*--)[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$`,
			[]string{"a", "a-b", "abc1"}, []string{"a--b", "-a", "a-"}},
		{`^[^\s\u0000-\u001f\u007f-\u009f]+$`,
			[]string{"abc", "a/b"}, []string{"a b", "a\u00a0b", "a\u2028", "\u0085", ""}},
		{`^\S(?:.*\S)?$`, []string{"a", "a b"}, []string{" a", "a ", "a\u3000", "a\nb"}},
		{`^[^\r\n]*\S[^\r\n]*$`, []string{" x "}, []string{"   ", "x\ny"}},
		{`^UTC[+-]\d{1,2}(?::[0-5]\d)?$`, []string{"UTC+1", "UTC-10:30"}, []string{"UTC", "UTC+1:60"}},
		{`^[A-Za-z0-9_./\[\]\-*]+$`, []string{"a.b[0]-*"}, []string{"a b"}},
		{`^[^/\\]+$`, []string{"abc"}, []string{"a/b", `a\b`}},
		{`~(?:[^01]|$)`, []string{"~", "~2"}, []string{"~0", "~1"}},
	}
	for _, c := range cases {
		re, err := compileECMARegexp(c.pattern)
		if err != nil {
			t.Errorf("compile %q: %v", c.pattern, err)
			continue
		}
		for _, s := range c.match {
			if !re.MatchString(s) {
				t.Errorf("%q should match %q", c.pattern, s)
			}
		}
		for _, s := range c.nomatch {
			if re.MatchString(s) {
				t.Errorf("%q should not match %q", c.pattern, s)
			}
		}
	}
}
