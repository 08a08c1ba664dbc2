package deploy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestReleaseBuild runs scripts/release.sh (one build per target) and
// checks what it made: static binaries for the right OS and CPU, built with
// CGO_ENABLED=0 and -trimpath, the version stamped, and SHA256SUMS that
// match. The native binary is run.
func TestReleaseBuild(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool")
	}
	const version = "v9.8.7-test"
	dist := t.TempDir()
	cmd := exec.Command("../scripts/release.sh", version)
	cmd.Env = append(os.Environ(), "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release.sh: %v\n%s", err, out)
	}
	targets := []struct {
		goos, goarch string
		elf          elf.Machine
		macho        macho.Cpu
	}{
		{"linux", "amd64", elf.EM_X86_64, 0},
		{"linux", "arm64", elf.EM_AARCH64, 0},
		{"darwin", "arm64", 0, macho.CpuArm64},
	}
	sums := readSums(t, filepath.Join(dist, "SHA256SUMS-"+version))
	if len(sums) != len(targets) {
		t.Errorf("SHA256SUMS lists %d files, want %d", len(sums), len(targets))
	}
	for _, tg := range targets {
		name := "clawgate-" + version + "-" + tg.goos + "-" + tg.goarch
		path := filepath.Join(dist, name)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		sum := sha256.Sum256(data)
		if sums[name] != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: SHA256SUMS says %q, file is %x", name, sums[name], sum)
		}
		bi, err := buildinfo.ReadFile(path)
		if err != nil {
			t.Errorf("%s: build info: %v", name, err)
			continue
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		for k, want := range map[string]string{"CGO_ENABLED": "0", "GOOS": tg.goos, "GOARCH": tg.goarch, "-trimpath": "true"} {
			if settings[k] != want {
				t.Errorf("%s: build setting %s = %q, want %q", name, k, settings[k], want)
			}
		}
		// -trimpath keeps -ldflags out of the build info; the stamped
		// string itself is in the binary's data.
		if !bytes.Contains(data, []byte(version)) {
			t.Errorf("%s: the version %q is not stamped into the binary", name, version)
		}
		if tg.goos == "linux" {
			checkStaticELF(t, path, tg.elf)
		} else {
			f, err := macho.Open(path)
			if err != nil {
				t.Errorf("%s: not Mach-O: %v", name, err)
				continue
			}
			if f.Cpu != tg.macho {
				t.Errorf("%s: Mach-O CPU %v, want %v", name, f.Cpu, tg.macho)
			}
			f.Close()
		}
		if tg.goos == runtime.GOOS && tg.goarch == runtime.GOARCH {
			out, err := exec.Command(path, "version").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "clawgate "+version {
				t.Errorf("%s version: %q (%v)", name, out, err)
			}
		}
	}
}

// checkStaticELF: no program interpreter and no shared libraries.
func checkStaticELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Errorf("%s: not ELF: %v", path, err)
		return
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: machine %v, want %v", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has %v: not a static binary", path, p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s: links %v", path, libs)
	}
}

func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		out[name] = sum
	}
	return out
}

func TestReleaseRefusesOddVersion(t *testing.T) {
	cmd := exec.Command("../scripts/release.sh", `1.0 -X main.evil=1`)
	cmd.Env = append(os.Environ(), "DIST="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "must match") {
		t.Fatalf("odd version: %v\n%s", err, out)
	}
}
