package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestLaunchdPlists(t *testing.T) {
	for _, system := range []bool{false, true} {
		data := LaunchdPlist(system)
		if err := CheckPlist(data, system); err != nil {
			t.Errorf("system=%v: %v", system, err)
		}
		// On a Mac, Apple's own parser has the last word.
		if plutil, err := exec.LookPath("plutil"); err == nil {
			f := filepath.Join(t.TempDir(), Label+".plist")
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(plutil, "-lint", f).CombinedOutput(); err != nil {
				t.Errorf("plutil -lint (system=%v): %v\n%s", system, err, out)
			}
		}
	}
}

// TestPlistParserRejects: the checker fails on broken property lists, so a
// pass above means something.
func TestPlistParserRejects(t *testing.T) {
	good := string(LaunchdPlist(false))
	for name, mutate := range map[string]func(string) string{
		"double dash in comment": func(s string) string {
			return strings.Replace(s, "<!-- Start at login. -->", "<!-- run with --flag -->", 1)
		},
		"key without value": func(s string) string {
			return strings.Replace(s, "<key>RunAtLoad</key>\n\t<true/>", "<key>RunAtLoad</key>", 1)
		},
		"duplicate key": func(s string) string {
			return strings.Replace(s, "<key>RunAtLoad</key>", "<key>Label</key>", 1)
		},
		"unclosed dict": func(s string) string { return strings.Replace(s, "</dict>\n</plist>", "</plist>", 1) },
		"unknown element": func(s string) string {
			return strings.Replace(s, "<integer>10</integer>", "<int>10</int>", 1)
		},
		"no doctype": func(s string) string {
			return strings.Replace(s, `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`, "", 1)
		},
		"bad integer": func(s string) string {
			return strings.Replace(s, "<integer>63</integer>", "<integer>sixty</integer>", 1)
		},
		"no keepalive": func(s string) string {
			return strings.Replace(s, "<key>SuccessfulExit</key>\n\t\t<false/>", "", 1)
		},
	} {
		bad := mutate(good)
		if bad == good {
			t.Fatalf("%s: mutation did not apply", name)
		}
		if err := CheckPlist([]byte(bad), false); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
