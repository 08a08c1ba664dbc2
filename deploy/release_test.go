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
// checks what it made: for each target a directory with the gateway and its
// helpers, static binaries for the right OS and CPU, built with
// CGO_ENABLED=0 and -trimpath, the version stamped, and SHA256SUMS that
// match. The native gateway is run.
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
	commands := []string{"clawgate", "clawgate-tailnet", "clawgate-whatsapp"}
	sums := readSums(t, filepath.Join(dist, "SHA256SUMS-"+version))
	if len(sums) != len(targets)*len(commands) {
		t.Errorf("SHA256SUMS lists %d files, want %d", len(sums), len(targets)*len(commands))
	}
	for _, tg := range targets {
		for _, command := range commands {
			checkReleaseBinary(t, dist, command, version, tg.goos, tg.goarch, tg.elf, tg.macho, sums)
		}
	}
}

// checkReleaseBinary checks one binary of the release; the native gateway
// is run.
func checkReleaseBinary(t *testing.T, dist, command, version, goos, goarch string, machine elf.Machine, cpu macho.Cpu, sums map[string]string) {
	t.Helper()
	name := "clawgate-" + version + "-" + goos + "-" + goarch + "/" + command
	path := filepath.Join(dist, filepath.FromSlash(name))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	sum := sha256.Sum256(data)
	if sums[name] != hex.EncodeToString(sum[:]) {
		t.Errorf("%s: SHA256SUMS says %q, file is %x", name, sums[name], sum)
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Errorf("%s: build info: %v", name, err)
		return
	}
	if want := "github.com/clawgate/clawgate/cmd/" + command; bi.Path != want {
		t.Errorf("%s: built from %s, want %s", name, bi.Path, want)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "GOOS": goos, "GOARCH": goarch, "-trimpath": "true"} {
		if settings[k] != want {
			t.Errorf("%s: build setting %s = %q, want %q", name, k, settings[k], want)
		}
	}
	// -trimpath keeps -ldflags out of the build info; the stamped string
	// itself is in the gateway's data.
	if command == "clawgate" && !bytes.Contains(data, []byte(version)) {
		t.Errorf("%s: the version %q is not stamped into the binary", name, version)
	}
	if goos == "linux" {
		checkStaticELF(t, path, machine)
	} else {
		f, err := macho.Open(path)
		if err != nil {
			t.Errorf("%s: not Mach-O: %v", name, err)
			return
		}
		if f.Cpu != cpu {
			t.Errorf("%s: Mach-O CPU %v, want %v", name, f.Cpu, cpu)
		}
		f.Close()
	}
	if command == "clawgate" && goos == runtime.GOOS && goarch == runtime.GOARCH {
		out, err := exec.Command(path, "version").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "clawgate "+version {
			t.Errorf("%s version: %q (%v)", name, out, err)
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
