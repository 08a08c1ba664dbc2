package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/deploy"
	"github.com/clawgate/clawgate/tsnode/tsipc"
)

// serviceHost is what `clawgate service` acts on: the OS, who runs it, and
// how it runs systemctl or launchctl. Tests substitute every field.
type serviceHost struct {
	goos string
	euid int
	home string
	// root prefixes every path written or removed ("" is /): for
	// packaging into a staging tree, and for tests.
	root string
	// run runs a service manager command and returns its combined output.
	run func(name string, args ...string) (string, error)
	// lookupUser resolves the LaunchDaemon's user to uid and gid.
	lookupUser func(name string) (uid, gid int, err error)
	out        io.Writer
}

// serviceOpts are the flags of one `clawgate service` command.
type serviceOpts struct {
	action  string
	print   bool
	tsnet   bool
	system  bool // macOS: LaunchDaemon instead of LaunchAgent
	noStart bool
	bin     string
}

const daemonUser = "_clawgate"

func runService(args []string, e env) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(e.stderr, serviceUsage)
		return exitError{err: errors.New("service: install, uninstall or status?"), silent: true}
	}
	o := serviceOpts{action: args[0]}
	fs := flag.NewFlagSet("service "+o.action, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, serviceUsage); fs.PrintDefaults() }
	fs.BoolVar(&o.print, "print", false, "only print the unit or plist; change nothing")
	fs.BoolVar(&o.tsnet, "tsnet", false, "Linux: install the variant that also joins the tailnet (gateway --tailnet)")
	fs.BoolVar(&o.system, "system", false, "macOS: a LaunchDaemon for the whole machine, running as "+daemonUser+" (needs root)")
	fs.BoolVar(&o.noStart, "no-start", false, "write the files but do not load or start the service")
	fs.StringVar(&o.bin, "bin", "", "clawgate binary the service runs (default: this executable)")
	root := fs.String("root", "", "write below this directory instead of / (packaging); implies --no-start")
	if err := fs.Parse(args[1:]); err != nil {
		return exitError{err: err, silent: true}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("service: unexpected argument %q", fs.Arg(0))
	}
	if o.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("service: cannot find this executable (give --bin): %w", err)
		}
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			o.bin = exe
		}
	}
	home, _ := os.UserHomeDir()
	if h := e.getenv("HOME"); h != "" {
		home = h
	}
	h := &serviceHost{goos: runtime.GOOS, euid: os.Geteuid(), home: home, root: *root,
		run: runCommand, lookupUser: lookupUser, out: e.stdout}
	if *root != "" {
		o.noStart = true
	}
	return h.do(o)
}

const serviceUsage = `usage: clawgate service install|uninstall|status [flags]

Installs clawgate as a service that starts at boot (Linux: a hardened
systemd unit, run as root) or at login (macOS: a LaunchAgent; --system for
a LaunchDaemon), and says what it did.

`

func runCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func lookupUser(name string) (int, int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}

func (h *serviceHost) do(o serviceOpts) error {
	switch o.action {
	case "install", "uninstall", "status":
	default:
		return fmt.Errorf("service: unknown action %q (install, uninstall or status)", o.action)
	}
	switch h.goos {
	case "linux":
		return h.systemd(o)
	case "darwin":
		return h.launchd(o)
	}
	return fmt.Errorf("service: %s has no supported service manager (systemd on Linux, launchd on macOS)", h.goos)
}

func (h *serviceHost) path(p string) string { return filepath.Join(h.root, p) }

func (h *serviceHost) printf(format string, args ...any) { fmt.Fprintf(h.out, format, args...) }

// command runs and reports one service manager command.
func (h *serviceHost) command(name string, args ...string) error {
	h.printf("$ %s %s\n", name, strings.Join(args, " "))
	out, err := h.run(name, args...)
	if s := strings.TrimSpace(out); s != "" {
		h.printf("%s\n", s)
	}
	if err != nil {
		return fmt.Errorf("service: %s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// checkBinary refuses a binary the sandbox cannot see or others can swap.
func checkBinary(bin string, linux bool) error {
	if !filepath.IsAbs(bin) {
		return fmt.Errorf("service: --bin %q must be an absolute path", bin)
	}
	if linux {
		for _, hidden := range []string{"/home/", "/root/", "/tmp/", "/var/tmp/", "/run/user/"} {
			if strings.HasPrefix(bin, hidden) {
				return fmt.Errorf("service: %s is under %s, which the unit's sandbox hides (ProtectHome, PrivateTmp); "+
					"copy it first: sudo install -m 0755 %s %s, then run %s service install", bin, hidden, bin, deploy.DefaultBinary, deploy.DefaultBinary)
			}
		}
	}
	return nil
}

// checkHelper refuses to install a unit whose helper binary is not next to
// bin (below --root when packaging), where the gateway looks for it. The
// gateway looks beside its executable as the kernel names it, with
// symlinks resolved, so a --bin that is a symlink is resolved the same way
// (not below --root, where links point into the packaged tree's future
// root).
func (h *serviceHost) checkHelper(bin, name string) error {
	dir := filepath.Dir(bin)
	if h.root == "" {
		if resolved, err := filepath.EvalSymlinks(bin); err == nil {
			dir = filepath.Dir(resolved)
		}
	}
	p := filepath.Join(dir, name)
	st, err := os.Stat(h.path(p))
	if err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
		return nil
	}
	return fmt.Errorf("service: %s is not an executable file; the gateway runs that helper from beside %s. "+
		"Install it there: go install github.com/clawgate/clawgate/cmd/...@latest builds both; then sudo install -m 0755 %s %s",
		h.path(p), bin, name, p)
}

// writeFile writes data atomically with mode perm, creating parents.
func writeFile(path string, data []byte, perm fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err == nil {
		_, err = tmp.Write(data)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("service: write %s: %w", path, err)
	}
	return nil
}

// systemdUnit renders the unit for bin.
func systemdUnit(o serviceOpts) []byte {
	u := deploy.SystemdUnit(o.tsnet)
	return bytes.ReplaceAll(u, []byte("ExecStart="+deploy.DefaultBinary+" "), []byte("ExecStart="+o.bin+" "))
}

func (h *serviceHost) systemd(o serviceOpts) error {
	unitPath := "/etc/systemd/system/" + deploy.UnitName
	unit := systemdUnit(o)
	switch o.action {
	case "install":
		if err := checkBinary(o.bin, true); err != nil {
			return err
		}
		if o.print {
			_, err := h.out.Write(unit)
			return err
		}
		if o.tsnet {
			if err := h.checkHelper(o.bin, tsipc.HelperName); err != nil {
				return err
			}
		}
		if h.euid != 0 && h.root == "" {
			return errors.New("service: installing a system unit needs root: sudo " + o.bin + " service install")
		}
		if err := writeFile(h.path(unitPath), unit, 0o644); err != nil {
			return err
		}
		h.printf("wrote %s (runs %s as a transient system user, state in /var/lib/clawgate, 0700)\n", h.path(unitPath), o.bin)
		if !o.noStart {
			if err := h.command("systemctl", "daemon-reload"); err != nil {
				return err
			}
			if err := h.command("systemctl", "enable", "--now", deploy.UnitName); err != nil {
				return err
			}
		}
		h.printf("\nnext:\n  systemctl status clawgate          is it running?\n" +
			"  sudo cat /var/lib/clawgate/gateway.token   the token for clients\n" +
			"  sudo clawgate doctor --state-dir /var/lib/clawgate\n" +
			"  journalctl -u clawgate -f          the log\n")
		return nil
	case "uninstall":
		if o.print {
			h.printf("would run: systemctl disable --now %s\nwould remove: %s\n", deploy.UnitName, unitPath)
			return nil
		}
		if h.euid != 0 && h.root == "" {
			return errors.New("service: removing a system unit needs root: sudo clawgate service uninstall")
		}
		if !o.noStart {
			// A unit that is not loaded is fine to remove anyway.
			_ = h.command("systemctl", "disable", "--now", deploy.UnitName)
		}
		if err := os.Remove(h.path(unitPath)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("service: %w", err)
		}
		h.printf("removed %s\n", h.path(unitPath))
		if !o.noStart {
			_ = h.command("systemctl", "daemon-reload")
		}
		h.printf("the state (token, keys, devices) stays in /var/lib/private/clawgate; delete it yourself if you mean to\n")
		return nil
	}
	return h.status(unitPath, unit, func() error {
		return h.command("systemctl", "show", deploy.UnitName, "--property=LoadState,ActiveState,SubState,MainPID,NRestarts")
	})
}

// status says whether the service file is installed and current, then
// asks the service manager.
func (h *serviceHost) status(path string, want []byte, query func() error) error {
	have, err := os.ReadFile(h.path(path))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		h.printf("not installed: %s does not exist (install with: clawgate service install)\n", h.path(path))
		return exitError{err: errors.New("service: not installed"), silent: true}
	case err != nil:
		return fmt.Errorf("service: %w", err)
	case bytes.Equal(have, want):
		h.printf("installed: %s (as this clawgate would write it)\n", h.path(path))
	default:
		h.printf("installed: %s (differs from what this clawgate writes; reinstall to update it)\n", h.path(path))
	}
	if h.root != "" {
		return nil
	}
	return query()
}

// launchdPaths are the plist and the directories a launchd job uses.
type launchdPaths struct {
	plist, state, logs, domain string
}

func (h *serviceHost) launchdPaths(o serviceOpts) launchdPaths {
	if o.system {
		return launchdPaths{plist: "/Library/LaunchDaemons/" + deploy.Label + ".plist",
			state: "/Library/Application Support/clawgate", logs: "/Library/Logs/clawgate", domain: "system"}
	}
	return launchdPaths{plist: filepath.Join(h.home, "Library/LaunchAgents", deploy.Label+".plist"),
		state: filepath.Join(h.home, "Library/Application Support/clawgate"), logs: filepath.Join(h.home, "Library/Logs/clawgate"),
		domain: "gui/" + strconv.Itoa(h.euid)}
}

// launchdPlist renders the plist for bin (and, for the agent, home).
func (h *serviceHost) launchdPlist(o serviceOpts) ([]byte, error) {
	p := deploy.LaunchdPlist(o.system)
	p = bytes.ReplaceAll(p, []byte("<string>"+deploy.DefaultBinary+"</string>"), []byte("<string>"+xmlEscape(o.bin)+"</string>"))
	if !o.system {
		if h.home == "" || !filepath.IsAbs(h.home) {
			return nil, errors.New("service: no home directory for the LaunchAgent")
		}
		p = bytes.ReplaceAll(p, []byte("<string>"+deploy.AgentHome+"/"), []byte("<string>"+xmlEscape(h.home)+"/"))
	}
	if err := deploy.CheckPlist(p, o.system); err != nil {
		return nil, fmt.Errorf("service: rendered plist is invalid: %w", err)
	}
	return p, nil
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (h *serviceHost) launchd(o serviceOpts) error {
	lp := h.launchdPaths(o)
	plist, err := h.launchdPlist(o)
	if err != nil {
		return err
	}
	target := lp.domain + "/" + deploy.Label
	switch o.action {
	case "install":
		if err := checkBinary(o.bin, false); err != nil {
			return err
		}
		if o.print {
			_, err := h.out.Write(plist)
			return err
		}
		if o.system && h.euid != 0 && h.root == "" {
			return errors.New("service: a LaunchDaemon needs root: sudo clawgate service install --system")
		}
		if err := h.launchdDirs(o, lp); err != nil {
			return err
		}
		if err := writeFile(h.path(lp.plist), plist, 0o644); err != nil {
			return err
		}
		h.printf("wrote %s (state in %s, log in %s)\n", h.path(lp.plist), lp.state, filepath.Join(lp.logs, "gateway.log"))
		if !o.noStart {
			_, _ = h.run("launchctl", "bootout", target) // an older copy, if loaded
			if err := h.command("launchctl", "bootstrap", lp.domain, lp.plist); err != nil {
				return err
			}
		}
		h.printf("\nnext:\n  clawgate service status\n  clawgate doctor --state-dir %s\n  tail -f %s\n",
			shellQuote(lp.state), shellQuote(filepath.Join(lp.logs, "gateway.log")))
		return nil
	case "uninstall":
		if o.print {
			h.printf("would run: launchctl bootout %s\nwould remove: %s\n", target, lp.plist)
			return nil
		}
		if !o.noStart {
			_ = h.command("launchctl", "bootout", target)
		}
		if err := os.Remove(h.path(lp.plist)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("service: %w", err)
		}
		h.printf("removed %s\nthe state (token, keys, devices) stays in %s; delete it yourself if you mean to\n", h.path(lp.plist), lp.state)
		return nil
	}
	return h.status(lp.plist, plist, func() error { return h.command("launchctl", "print", target) })
}

// launchdDirs creates the state and log directories, private to the job's
// user (the daemon's _clawgate, or the logged-in user).
func (h *serviceHost) launchdDirs(o serviceOpts, lp launchdPaths) error {
	uid, gid := -1, -1
	if o.system {
		var err error
		if uid, gid, err = h.lookupUser(daemonUser); err != nil {
			return fmt.Errorf("service: the LaunchDaemon runs as %s, which does not exist (%v); create it first, e.g.:\n"+
				"  sudo dscl . -create /Users/%[1]s UniqueID 401 && sudo dscl . -create /Users/%[1]s PrimaryGroupID 401\n"+
				"  sudo dscl . -create /Groups/%[1]s PrimaryGroupID 401 && sudo dscl . -create /Users/%[1]s UserShell /usr/bin/false\n"+
				"  sudo dscl . -create /Users/%[1]s NFSHomeDirectory /var/empty", daemonUser, err)
		}
	}
	for _, d := range []string{lp.state, lp.logs} {
		p := h.path(d)
		if err := config.EnsureDir(p); err != nil {
			return err
		}
		if uid >= 0 && h.root == "" {
			if err := os.Chown(p, uid, gid); err != nil {
				return fmt.Errorf("service: %w", err)
			}
		}
	}
	return nil
}
