package deploy

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ParsePlist decodes an XML property list (Apple's PropertyList-1.0 DTD)
// into Go values: map[string]any, []any, string, int64, float64, bool,
// time.Time and []byte (data stays base64 text). It is strict: one root
// <plist version="1.0"> with exactly one value, dict keys unique and each
// followed by exactly one value, no text outside strings.
func ParsePlist(data []byte) (any, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var sawDoctype bool
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("before <plist>: %w", err)
		}
		switch tk := tok.(type) {
		case xml.ProcInst, xml.Comment:
		case xml.Directive:
			if !strings.HasPrefix(string(tk), `DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN"`) {
				return nil, fmt.Errorf("unexpected directive %q", tk)
			}
			sawDoctype = true
		case xml.CharData:
			if len(bytes.TrimSpace(tk)) > 0 {
				return nil, fmt.Errorf("text before <plist>: %q", tk)
			}
		case xml.StartElement:
			if tk.Name.Local != "plist" {
				return nil, fmt.Errorf("root element <%s>, want <plist>", tk.Name.Local)
			}
			if !sawDoctype {
				return nil, errors.New("no plist DOCTYPE")
			}
			if v := attr(tk, "version"); v != "1.0" {
				return nil, fmt.Errorf("plist version %q, want 1.0", v)
			}
			root, end, err := plistValue(d)
			if err != nil {
				return nil, err
			}
			if end {
				return nil, errors.New("empty <plist>")
			}
			if _, end, err := plistValue(d); err != nil || !end {
				return nil, fmt.Errorf("<plist> must hold exactly one value (err %v)", err)
			}
			for {
				tok, err := d.Token()
				if err == io.EOF {
					return root, nil
				}
				if err != nil {
					return nil, err
				}
				switch tk := tok.(type) {
				case xml.Comment, xml.ProcInst:
				case xml.CharData:
					if len(bytes.TrimSpace(tk)) > 0 {
						return nil, fmt.Errorf("text after </plist>: %q", tk)
					}
				default:
					return nil, fmt.Errorf("content after </plist>: %T", tok)
				}
			}
		default:
			return nil, fmt.Errorf("unexpected %T before <plist>", tok)
		}
	}
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// plistValue reads the next value element. end reports that the enclosing
// element closed instead.
func plistValue(d *xml.Decoder) (v any, end bool, err error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, false, err
		}
		switch tk := tok.(type) {
		case xml.Comment:
			continue
		case xml.CharData:
			if len(bytes.TrimSpace(tk)) > 0 {
				return nil, false, fmt.Errorf("stray text %q", tk)
			}
			continue
		case xml.EndElement:
			return nil, true, nil
		case xml.StartElement:
			v, err := plistElement(d, tk)
			return v, false, err
		default:
			return nil, false, fmt.Errorf("unexpected %T", tok)
		}
	}
}

func plistElement(d *xml.Decoder, se xml.StartElement) (any, error) {
	switch se.Name.Local {
	case "dict":
		m := map[string]any{}
		for {
			k, end, err := plistValue(d)
			if err != nil {
				return nil, err
			}
			if end {
				return m, nil
			}
			key, ok := k.(plistKey)
			if !ok {
				return nil, fmt.Errorf("dict entry %v is not a <key>", k)
			}
			if _, dup := m[string(key)]; dup {
				return nil, fmt.Errorf("duplicate key %q", key)
			}
			v, end, err := plistValue(d)
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", key, err)
			}
			if end {
				return nil, fmt.Errorf("key %q has no value", key)
			}
			if _, isKey := v.(plistKey); isKey {
				return nil, fmt.Errorf("key %q is followed by another key", key)
			}
			m[string(key)] = v
		}
	case "array":
		var a []any
		for {
			v, end, err := plistValue(d)
			if err != nil {
				return nil, err
			}
			if end {
				return a, nil
			}
			if _, isKey := v.(plistKey); isKey {
				return nil, errors.New("<key> inside <array>")
			}
			a = append(a, v)
		}
	case "true", "false":
		var s string
		if err := d.DecodeElement(&s, &se); err != nil || s != "" {
			return nil, fmt.Errorf("<%s/> must be empty (err %v)", se.Name.Local, err)
		}
		return se.Name.Local == "true", nil
	}
	var text string
	if err := d.DecodeElement(&text, &se); err != nil {
		return nil, err
	}
	switch se.Name.Local {
	case "key":
		return plistKey(text), nil
	case "string":
		return text, nil
	case "integer":
		return strconv.ParseInt(strings.TrimSpace(text), 10, 64)
	case "real":
		return strconv.ParseFloat(strings.TrimSpace(text), 64)
	case "date":
		return time.Parse(time.RFC3339, strings.TrimSpace(text))
	case "data":
		return []byte(strings.TrimSpace(text)), nil
	}
	return nil, fmt.Errorf("unknown plist element <%s>", se.Name.Local)
}

type plistKey string

// CheckPlist parses data as a property list and checks the keys
// clawgate's launchd jobs rely on; system selects the LaunchDaemon rules.
func CheckPlist(data []byte, system bool) error {
	v, err := ParsePlist(data)
	if err != nil {
		return err
	}
	root, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("root is %T, want dict", v)
	}
	if root["Label"] != Label {
		return fmt.Errorf("Label = %v, want %s", root["Label"], Label)
	}
	args, _ := root["ProgramArguments"].([]any)
	if len(args) < 2 || args[1] != "gateway" {
		return fmt.Errorf("ProgramArguments = %v, want [<clawgate> gateway ...]", root["ProgramArguments"])
	}
	if bin, _ := args[0].(string); !filepath.IsAbs(bin) {
		return fmt.Errorf("ProgramArguments[0] = %v, want an absolute path", args[0])
	}
	if ka, _ := root["KeepAlive"].(map[string]any); ka["SuccessfulExit"] != false {
		return fmt.Errorf("KeepAlive = %v, want {SuccessfulExit: false}", root["KeepAlive"])
	}
	if root["RunAtLoad"] != true {
		return errors.New("RunAtLoad is not true")
	}
	if pt, _ := root["ProcessType"].(string); pt == "" {
		return errors.New("no ProcessType")
	}
	if root["Umask"] != int64(0o077) {
		return fmt.Errorf("Umask = %v, want 63 (077)", root["Umask"])
	}
	env, _ := root["EnvironmentVariables"].(map[string]any)
	state, _ := env["CLAWGATE_STATE_DIR"].(string)
	if !strings.HasSuffix(state, "/Library/Application Support/clawgate") {
		return fmt.Errorf("CLAWGATE_STATE_DIR = %q, want .../Library/Application Support/clawgate", state)
	}
	for _, k := range []string{"StandardOutPath", "StandardErrorPath"} {
		p, _ := root[k].(string)
		if !strings.HasPrefix(p, "/") || !strings.Contains(p, "/Library/Logs/clawgate/") {
			return fmt.Errorf("%s = %q, want a file under Library/Logs/clawgate", k, p)
		}
	}
	user, _ := root["UserName"].(string)
	switch {
	case system && (user == "" || user == "root"):
		return fmt.Errorf("LaunchDaemon UserName = %q, want a dedicated unprivileged user", user)
	case !system && user != "":
		return fmt.Errorf("LaunchAgent sets UserName %q; agents run as the logged-in user", user)
	}
	return nil
}
