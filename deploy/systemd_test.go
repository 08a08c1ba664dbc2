package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// maxExposure is the highest `systemd-analyze security` exposure the units
// may have (the scale runs from 0.0, locked down, to 10.0).
const maxExposure = 2.0

// systemdAnalyze finds the tool, failing where the suite promises it
// (./test.sh installs Debian's systemd) and skipping elsewhere.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CLAWGATE_REQUIRE_COMPAT") == "1" {
			t.Fatalf("systemd-analyze not found (scripts/deps.sh installs Debian's systemd): %v", err)
		}
		t.Skip("systemd-analyze not found; run ./test.sh")
	}
	return p
}

// unitForAnalysis writes unit as clawgate.service into a temporary
// directory, with ExecStart pointing at an executable stub there:
// `systemd-analyze verify` checks that the binary exists and is executable.
func unitForAnalysis(t *testing.T, unit []byte) string {
	t.Helper()
	dir := t.TempDir()
	stub := filepath.Join(dir, "clawgate")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("ExecStart="+DefaultBinary+" ")) {
		t.Fatalf("unit has no ExecStart=%s", DefaultBinary)
	}
	unit = bytes.ReplaceAll(unit, []byte("ExecStart="+DefaultBinary), []byte("ExecStart="+stub))
	path := filepath.Join(dir, UnitName)
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+\.[0-9]+)`)

// exposure runs the offline security review and returns the overall level.
func exposure(t *testing.T, tool, unitPath string) (float64, string) {
	t.Helper()
	cmd := exec.Command(tool, "security", "--offline=yes", "--no-pager", unitPath)
	cmd.Env = append(os.Environ(), "SYSTEMD_COLORS=0", "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v, string(out)
}

func TestSystemdUnits(t *testing.T) {
	tool := systemdAnalyze(t)
	for _, tc := range []struct {
		name  string
		tsnet bool
	}{{"clawgate.service", false}, {"clawgate-tsnet.service", true}} {
		t.Run(tc.name, func(t *testing.T) {
			unit := SystemdUnit(tc.tsnet)
			path := unitForAnalysis(t, unit)

			cmd := exec.Command(tool, "verify", "--man=no", "--no-pager", path)
			cmd.Env = append(os.Environ(), "SYSTEMD_COLORS=0")
			out, err := cmd.CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify is not clean (err %v):\n%s", err, out)
			}

			level, report := exposure(t, tool, path)
			t.Logf("%s: overall exposure %.1f", tc.name, level)
			if level > maxExposure {
				t.Errorf("exposure %.1f > %.1f:\n%s", level, maxExposure, report)
			}

			settings := parseUnit(t, unit)
			for key, want := range map[string]string{
				"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "WatchdogSec": "30s",
				"DynamicUser": "yes", "StateDirectory": "clawgate", "StateDirectoryMode": "0700", "UMask": "0077",
				"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
				"CapabilityBoundingSet": "", "MemoryDenyWriteExecute": "yes", "Environment": "CLAWGATE_STATE_DIR=%S/clawgate",
			} {
				got, ok := settings["Service."+key]
				if !ok || got[0] != want {
					t.Errorf("[Service] %s = %q, want %q", key, got, want)
				}
			}
			if got := settings["Service.SystemCallFilter"]; len(got) == 0 || got[0] != "@system-service" {
				t.Errorf("SystemCallFilter = %q, want @system-service first", got)
			}
			fams := settings["Service.RestrictAddressFamilies"]
			wantFams := "AF_UNIX AF_INET AF_INET6"
			if tc.tsnet {
				wantFams += " AF_NETLINK"
			}
			if len(fams) != 1 || fams[0] != wantFams {
				t.Errorf("RestrictAddressFamilies = %q, want %q", fams, wantFams)
			}
			execStart := settings["Service.ExecStart"][0]
			if strings.Contains(execStart, "--tailnet") != tc.tsnet {
				t.Errorf("ExecStart %q: --tailnet present = %v, want %v", execStart, !tc.tsnet, tc.tsnet)
			}
		})
	}
}

// TestSystemdExposureParses guards the check itself: a unit without the
// sandbox must come out far above the limit, so a broken parser or a
// silently ignored unit cannot pass.
func TestSystemdExposureParses(t *testing.T) {
	tool := systemdAnalyze(t)
	bare := []byte("[Unit]\nDescription=bare\n\n[Service]\nType=notify\nExecStart=" + DefaultBinary + " gateway\n")
	level, report := exposure(t, tool, unitForAnalysis(t, bare))
	if level <= maxExposure+5 {
		t.Fatalf("an unsandboxed unit scored %.1f; the check cannot tell:\n%s", level, report)
	}
}

// TestSystemdSettingsCommented: every setting in [Service] sits in a block
// introduced by a comment that says why it is there.
func TestSystemdSettingsCommented(t *testing.T) {
	for _, tsnet := range []bool{false, true} {
		sc := bufio.NewScanner(bytes.NewReader(SystemdUnit(tsnet)))
		section, prev, line := "", "", 0
		for sc.Scan() {
			line++
			s := strings.TrimSpace(sc.Text())
			switch {
			case strings.HasPrefix(s, "["):
				section = s
			case section == "[Service]" && s != "" && !strings.HasPrefix(s, "#"):
				if prev == "" || strings.HasPrefix(prev, "[") {
					t.Errorf("tsnet=%v line %d: %q has no comment explaining it", tsnet, line, s)
				}
			}
			prev = s
		}
	}
}

// parseUnit returns "Section.Key" → values, in order.
func parseUnit(t *testing.T, unit []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") || strings.HasPrefix(s, ";") {
			continue
		}
		if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			section = strings.Trim(s, "[]")
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			t.Fatalf("unit line %q is not key=value", s)
		}
		out[section+"."+k] = append(out[section+"."+k], v)
	}
	return out
}
