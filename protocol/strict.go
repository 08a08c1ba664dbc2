package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
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
// typed decoder later sees.
func ParseStrict(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: invalid UTF-8", ErrNotJSON)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data", ErrNotJSON)
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (any, error) {
	if depth > MaxJSONDepth {
		return nil, ErrTooDeep
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return parseObject(dec, depth)
		case '[':
			return parseArray(dec, depth)
		}
		return nil, fmt.Errorf("%w: unexpected %q", ErrNotJSON, t)
	default:
		return t, nil
	}
}

func parseObject(dec *json.Decoder, depth int) (any, error) {
	obj := make(map[string]any)
	var folded map[string]string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: object key is not a string", ErrNotJSON)
		}
		if _, dup := obj[key]; dup {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateKey, key)
		}
		if folded == nil {
			folded = make(map[string]string)
		}
		lk := strings.ToLower(key)
		if prev, seen := folded[lk]; seen {
			return nil, fmt.Errorf("%w: %q and %q", ErrCaseVariant, prev, key)
		}
		folded[lk] = key
		v, err := parseValue(dec, depth+1)
		if err != nil {
			return nil, err
		}
		obj[key] = v
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	return obj, nil
}

func parseArray(dec *json.Decoder, depth int) (any, error) {
	arr := make([]any, 0, 4)
	for dec.More() {
		v, err := parseValue(dec, depth+1)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	if _, err := dec.Token(); err != nil { // closing ']'
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	return arr, nil
}
