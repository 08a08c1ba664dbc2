package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/deploy"
)

// fakeHost records service manager commands instead of running them.
type fakeHost struct {
	serviceHost
	ran []string
	out bytes.Buffer
}

func newFakeHost(t *testing.T, goos string, euid int) *fakeHost {
	t.Helper()
	f := &fakeHost{}
	f.serviceHost = serviceHost{goos: goos, euid: euid, home: "/Users/ada", root: t.TempDir(),
		run: func(name string, args ...string) (string, error) {
			f.ran = append(f.ran, name+" "+strings.Join(args, " "))
			return "", nil
		},
		lookupUser: func(name string) (int, int, error) {
			if name == daemonUser {
				return os.Getuid(), os.Getgid(), nil
			}
			return 0, 0, errors.New("unknown user " + name)
		},
		out: &f.out}
	return f
}

// live makes the host act on its root as if it were /, so commands run.
func (f *fakeHost) live() *fakeHost {
	f.serviceHost.root = ""
	return f
}

func TestServiceSystemd(t *testing.T) {
	f := newFakeHost(t, "linux", 0)
	root := f.root
	o := serviceOpts{action: "install", bin: "/opt/clawgate/bin/clawgate", noStart: true}
	if err := f.do(o); err != nil {
		t.Fatal(err)
	}
	unitPath := filepath.Join(root, "etc/systemd/system/clawgate.service")
	got, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(deploy.SystemdUnit(false)), "ExecStart=/usr/local/bin/clawgate ", "ExecStart=/opt/clawgate/bin/clawgate ", 1)
	if string(got) != want {
		t.Fatalf("installed unit differs from the shipped one with the binary substituted:\n%s", got)
	}
	if st, _ := os.Stat(unitPath); st.Mode().Perm() != 0o644 {
		t.Errorf("unit mode %v", st.Mode())
	}
	if !strings.Contains(f.out.String(), "wrote "+unitPath) || len(f.ran) != 0 {
		t.Errorf("output %q, commands %v", f.out.String(), f.ran)
	}

	// status: installed and current.
	f.out.Reset()
	if err := f.do(serviceOpts{action: "status", bin: o.bin}); err != nil {
		t.Fatal(err)
	}
	wantContains(t, f.out.String(), "as this clawgate would write it")
	// status from another binary path: differs.
	f.out.Reset()
	_ = f.do(serviceOpts{action: "status", bin: "/usr/bin/clawgate"})
	wantContains(t, f.out.String(), "differs")

	// --tsnet installs the tailnet variant under the same name, once its
	// helper sits next to the binary.
	err = f.do(serviceOpts{action: "install", bin: o.bin, tsnet: true, noStart: true})
	if err == nil || !strings.Contains(err.Error(), "clawgate-tailnet") || !strings.Contains(err.Error(), "go install") {
		t.Fatalf("--tsnet without the helper: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "opt/clawgate/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "opt/clawgate/bin/clawgate-tailnet"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.do(serviceOpts{action: "install", bin: o.bin, tsnet: true, noStart: true}); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(unitPath)
	wantContains(t, string(got), "ExecStart=/opt/clawgate/bin/clawgate gateway --tailnet")

	// uninstall removes it; status then fails.
	if err := f.do(serviceOpts{action: "uninstall", bin: o.bin, noStart: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(unitPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unit still there: %v", err)
	}
	var ee exitError
	if err := f.do(serviceOpts{action: "status", bin: o.bin}); !errors.As(err, &ee) {
		t.Fatalf("status of a removed unit: %v", err)
	}
}

func TestServiceSystemdCommands(t *testing.T) {
	// Against a scratch "/" the real commands are recorded, in order.
	f := newFakeHost(t, "linux", 0).live()
	if err := f.do(serviceOpts{action: "install", bin: "/usr/local/bin/clawgate", print: true}); err != nil {
		t.Fatal(err)
	}
	if f.out.String() != string(deploy.SystemdUnit(false)) || len(f.ran) != 0 {
		t.Fatalf("--print wrote %d bytes and ran %v", f.out.Len(), f.ran)
	}

	// Without root, install refuses before touching anything.
	g := newFakeHost(t, "linux", 1000).live()
	err := g.do(serviceOpts{action: "install", bin: "/usr/local/bin/clawgate"})
	if err == nil || !strings.Contains(err.Error(), "needs root") || len(g.ran) != 0 {
		t.Fatalf("non-root install: %v, ran %v", err, g.ran)
	}

	// A binary the sandbox cannot see is refused with the fix.
	err = f.do(serviceOpts{action: "install", bin: "/home/ada/go/bin/clawgate", print: true})
	if err == nil || !strings.Contains(err.Error(), "ProtectHome") || !strings.Contains(err.Error(), "install -m 0755") {
		t.Fatalf("binary under /home: %v", err)
	}
	if err := f.do(serviceOpts{action: "install", bin: "clawgate", print: true}); err == nil {
		t.Fatal("relative binary accepted")
	}
}

func TestServiceLaunchAgent(t *testing.T) {
	f := newFakeHost(t, "darwin", 501)
	root := f.root
	if err := f.do(serviceOpts{action: "install", bin: "/opt/homebrew/bin/clawgate", noStart: true}); err != nil {
		t.Fatal(err)
	}
	plist := filepath.Join(root, "Users/ada/Library/LaunchAgents", deploy.Label+".plist")
	data, err := os.ReadFile(plist)
	if err != nil {
		t.Fatal(err)
	}
	if err := deploy.CheckPlist(data, false); err != nil {
		t.Fatalf("installed plist: %v", err)
	}
	for _, want := range []string{
		"<string>/opt/homebrew/bin/clawgate</string>",
		"<string>/Users/ada/Library/Application Support/clawgate</string>",
		"<string>/Users/ada/Library/Logs/clawgate/gateway.log</string>",
	} {
		wantContains(t, string(data), want)
	}
	if strings.Contains(string(data), "<string>"+deploy.AgentHome) {
		t.Error("placeholder home left in the plist")
	}
	for _, d := range []string{"Users/ada/Library/Application Support/clawgate", "Users/ada/Library/Logs/clawgate"} {
		st, err := os.Stat(filepath.Join(root, d))
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want a 0700 directory", d, st, err)
		}
	}

	// Live: bootstrap into the user's GUI domain.
	g := newFakeHost(t, "darwin", 501)
	g.home = filepath.Join(g.root, "home")
	g.live()
	if err := g.do(serviceOpts{action: "install", bin: "/usr/local/bin/clawgate"}); err != nil {
		t.Fatal(err)
	}
	wantRan := []string{
		"launchctl bootout gui/501/" + deploy.Label,
		"launchctl bootstrap gui/501 " + filepath.Join(g.home, "Library/LaunchAgents", deploy.Label+".plist"),
	}
	if strings.Join(g.ran, "\n") != strings.Join(wantRan, "\n") {
		t.Fatalf("ran %q, want %q", g.ran, wantRan)
	}
	g.ran = nil
	if err := g.do(serviceOpts{action: "uninstall", bin: "/usr/local/bin/clawgate"}); err != nil {
		t.Fatal(err)
	}
	if len(g.ran) != 1 || g.ran[0] != "launchctl bootout gui/501/"+deploy.Label {
		t.Fatalf("uninstall ran %q", g.ran)
	}
}

func TestServiceLaunchDaemon(t *testing.T) {
	f := newFakeHost(t, "darwin", 0)
	root := f.root
	if err := f.do(serviceOpts{action: "install", system: true, bin: "/usr/local/bin/clawgate", noStart: true}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "Library/LaunchDaemons", deploy.Label+".plist"))
	if err != nil {
		t.Fatal(err)
	}
	if err := deploy.CheckPlist(data, true); err != nil {
		t.Fatal(err)
	}
	wantContains(t, string(data), "<string>"+daemonUser+"</string>")
	if st, err := os.Stat(filepath.Join(root, "Library/Application Support/clawgate")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("daemon state dir: %v %v", st, err)
	}

	// Without the dedicated user, install says how to create it.
	g := newFakeHost(t, "darwin", 0)
	g.lookupUser = func(string) (int, int, error) { return 0, 0, errors.New("no such user") }
	err = g.do(serviceOpts{action: "install", system: true, bin: "/usr/local/bin/clawgate", noStart: true})
	if err == nil || !strings.Contains(err.Error(), "dscl") {
		t.Fatalf("missing user: %v", err)
	}
	// A plist that escapes XML in the binary path stays valid.
	h := newFakeHost(t, "darwin", 501)
	if err := h.do(serviceOpts{action: "install", bin: "/Applications/A&B <x>/clawgate", print: true}); err != nil {
		t.Fatal(err)
	}
	if err := deploy.CheckPlist(h.out.Bytes(), false); err != nil || !strings.Contains(h.out.String(), "A&amp;B &lt;x&gt;") {
		t.Fatalf("escaped plist: %v", err)
	}
}

func TestServiceCLI(t *testing.T) {
	var out, errb bytes.Buffer
	e := env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	if err := run(t.Context(), []string{"service"}, e); err == nil {
		t.Fatal("service without an action succeeded")
	}
	if err := run(t.Context(), []string{"service", "restart"}, e); err == nil || !strings.Contains(err.Error(), "unknown action") {
		t.Fatalf("unknown action: %v", err)
	}
	out.Reset()
	if err := run(t.Context(), []string{"service", "install", "--print", "--bin", "/usr/local/bin/clawgate"}, e); err != nil {
		t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(out.String(), "# clawgate.service"):
	case strings.HasPrefix(out.String(), "<?xml"):
	default:
		t.Fatalf("--print output: %.200s", out.String())
	}
}

func wantContains(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%.400q does not contain %q", s, sub)
	}
}

// TestServiceHelperBesideResolvedBinary: the gateway finds its helpers
// beside its executable with symlinks resolved, and install checks there.
func TestServiceHelperBesideResolvedBinary(t *testing.T) {
	real, links := t.TempDir(), t.TempDir()
	bin := filepath.Join(real, "clawgate")
	link := filepath.Join(links, "clawgate")
	for _, p := range []string{bin, filepath.Join(links, "clawgate-tailnet")} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	h := &serviceHost{}
	if err := h.checkHelper(link, "clawgate-tailnet"); err == nil || !strings.Contains(err.Error(), filepath.Join(real, "clawgate-tailnet")) {
		t.Fatalf("helper beside the link but not beside the binary: %v", err)
	}
	if err := os.WriteFile(filepath.Join(real, "clawgate-tailnet"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := h.checkHelper(link, "clawgate-tailnet"); err != nil {
		t.Fatalf("helper beside the resolved binary: %v", err)
	}
}
