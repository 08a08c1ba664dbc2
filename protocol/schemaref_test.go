package protocol

// The validator as it was before JSON pointers were built lazily and object
// members checked unsorted on success: FuzzValidate checks that the current
// one returns exactly the same errors.

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

func (c *Contract) refValidate(s *Schema, v any, path string) error {
	if s.Ref != "" {
		return c.refValidate(c.resolve(s.Ref), v, path)
	}
	if len(s.AnyOf) > 0 {
		var first error
		for _, alt := range s.AnyOf {
			err := c.refValidate(alt, v, path)
			if err == nil {
				first = nil
				break
			}
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return &ValidationError{Path: path, Message: "must match a schema in anyOf"}
		}
	}
	if len(s.Type) > 0 && !typeMatches(s.Type, v) {
		return &ValidationError{Path: path, Message: "must be " + strings.Join(s.Type, ",")}
	}
	switch x := v.(type) {
	case string:
		return refValidateString(s, x, path)
	case json.Number:
		return refValidateNumber(s, x, path)
	case []any:
		return c.refValidateArray(s, x, path)
	case map[string]any:
		return c.refValidateObject(s, x, path)
	}
	if s.Const != nil || len(s.Enum) > 0 {
		return &ValidationError{Path: path, Message: "must be equal to one of the allowed values"}
	}
	return nil
}

func refValidateString(s *Schema, x, path string) error {
	if s.Const != nil && x != *s.Const {
		return &ValidationError{Path: path, Message: "must be equal to constant"}
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
			return &ValidationError{Path: path, Message: "must be equal to one of the allowed values"}
		}
	}
	n := utf8.RuneCountInString(x)
	if s.MinLength != nil && n < *s.MinLength {
		return &ValidationError{Path: path, Message: fmt.Sprintf("must NOT have fewer than %d characters", *s.MinLength)}
	}
	if s.MaxLength != nil && n > *s.MaxLength {
		return &ValidationError{Path: path, Message: fmt.Sprintf("must NOT have more than %d characters", *s.MaxLength)}
	}
	if s.pattern != nil && !s.pattern.MatchString(x) {
		return &ValidationError{Path: path, Message: fmt.Sprintf("must match pattern %q", s.Pattern)}
	}
	return nil
}

func refValidateNumber(s *Schema, x json.Number, path string) error {
	f, err := strconv.ParseFloat(string(x), 64)
	if err != nil {
		return &ValidationError{Path: path, Message: "must be number"}
	}
	if s.Minimum != nil && f < *s.Minimum {
		return &ValidationError{Path: path, Message: fmt.Sprintf("must be >= %v", *s.Minimum)}
	}
	if s.Maximum != nil && f > *s.Maximum {
		return &ValidationError{Path: path, Message: fmt.Sprintf("must be <= %v", *s.Maximum)}
	}
	if len(s.Enum) > 0 || s.Const != nil {
		return &ValidationError{Path: path, Message: "must be equal to one of the allowed values"}
	}
	return nil
}

func (c *Contract) refValidateArray(s *Schema, x []any, path string) error {
	if s.MinItems != nil && len(x) < *s.MinItems {
		return &ValidationError{Path: path, Message: fmt.Sprintf("must NOT have fewer than %d items", *s.MinItems)}
	}
	if s.MaxItems != nil && len(x) > *s.MaxItems {
		return &ValidationError{Path: path, Message: fmt.Sprintf("must NOT have more than %d items", *s.MaxItems)}
	}
	if s.Items == nil {
		return nil
	}
	for i, el := range x {
		if err := c.refValidate(s.Items, el, path+"/"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	return nil
}

func (c *Contract) refValidateObject(s *Schema, x map[string]any, path string) error {
	for _, r := range s.Required {
		if _, ok := x[r]; !ok {
			return &ValidationError{Path: path, Message: fmt.Sprintf("must have required property '%s'", r)}
		}
	}
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic first error
	for _, k := range keys {
		child := path + "/" + escapePointer(k)
		if ps, ok := s.Properties[k]; ok {
			if err := c.refValidate(ps, x[k], child); err != nil {
				return err
			}
			continue
		}
		matched := false
		for _, p := range s.patterns {
			if p.re.MatchString(k) {
				matched = true
				if err := c.refValidate(p.schema, x[k], child); err != nil {
					return err
				}
			}
		}
		if matched {
			continue
		}
		ap := s.AdditionalProperties
		switch {
		case ap == nil:
			// JSON Schema: additional members are allowed unless forbidden.
		case !ap.allowed:
			return unexpectedProperty(path, k)
		case ap.schema != nil:
			if err := c.refValidate(ap.schema, x[k], child); err != nil {
				return err
			}
		}
	}
	return nil
}

func unexpectedProperty(path, key string) *ValidationError {
	where := "root"
	if path != "" {
		where = path
	}
	return &ValidationError{Message: "at " + where + ": unexpected property '" + key + "'"}
}
