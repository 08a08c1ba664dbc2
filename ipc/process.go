package ipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvFD names the descriptor of a helper's connection to the gateway.
const EnvFD = "CLAWGATE_IPC_FD"

// EnvHelperDir, if set, is the only directory helpers are started from.
const EnvHelperDir = "CLAWGATE_HELPER_DIR"

// ErrNotFound: the helper binary is not installed where the gateway looks.
var ErrNotFound = errors.New("helper binary not found")

// StartOptions configure a helper process.
type StartOptions struct {
	// Args are extra arguments. Never put a secret here (any local user
	// can read a process's arguments); send it in a Call.
	Args []string
	// Env is added to the helper's environment, which otherwise keeps
	// only the harmless part of the gateway's (see HelperEnviron).
	Env []string
	// Handler serves the helper's calls to the gateway.
	Handler Handler
	// Stderr receives the helper's stdout and stderr (default os.Stderr).
	Stderr io.Writer
}

// Process is a running helper with its connection.
type Process struct {
	cmd    *exec.Cmd
	conn   *Conn
	exited chan struct{}
	err    error // the process's exit; set before exited closes

	stopOnce sync.Once
}

// Lookup finds the helper binary name: in $CLAWGATE_HELPER_DIR if it is
// set, else beside the running executable; never on $PATH. The helper
// receives secrets (the tailnet auth key, the WhatsApp session) and makes
// trust decisions (the tailnet peer's verdict), so it must come from where
// the gateway itself was installed, not from whichever directory a
// service's or a shell's $PATH happens to list first. The file must also
// be safe to run (see checkHelper).
func Lookup(name string) (string, error) {
	if name == "" || filepath.Base(name) != name {
		return "", fmt.Errorf("helper %q: not a plain binary name", name)
	}
	if dir := os.Getenv(EnvHelperDir); dir != "" {
		p := filepath.Join(dir, name)
		if isExecutable(p) {
			return checked(p)
		}
		return "", fmt.Errorf("%w: %s is not an executable file (%s=%s)", ErrNotFound, p, EnvHelperDir, dir)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("%w: %s: cannot locate this executable: %v", ErrNotFound, name, err)
	}
	p := filepath.Join(filepath.Dir(exe), name)
	if isExecutable(p) {
		return checked(p)
	}
	return "", fmt.Errorf("%w: %s is not beside this executable (%s); "+
		"install the helpers with `go install github.com/clawgate/clawgate/cmd/...@latest` "+
		"(or, in a checkout, `go build -o DIR ./cmd/...` and run DIR/clawgate)", ErrNotFound, p, filepath.Dir(exe))
}

func checked(p string) (string, error) {
	if err := checkHelper(p); err != nil {
		return "", err
	}
	return p, nil
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// checkHelper refuses a helper any local user could have replaced: the
// file (after symlinks) must not be writable by every user, nor the
// directories it is found in and resolves to, unless such a directory has
// the sticky bit (which keeps others from replacing a file they do not
// own).
func checkHelper(p string) error {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return fmt.Errorf("helper %s: %w", p, err)
	}
	for _, q := range []string{real, filepath.Dir(p), filepath.Dir(real)} {
		st, err := os.Stat(q)
		if err != nil {
			return fmt.Errorf("helper %s: %w", p, err)
		}
		if st.Mode().Perm()&0o002 != 0 && !(st.IsDir() && st.Mode()&os.ModeSticky != 0) {
			return fmt.Errorf("helper %s: %s is writable by every user; refusing to run it (chmod o-w %s)", p, q, q)
		}
	}
	return nil
}

// Start runs the helper binary name with a connection to it. When ctx ends
// the helper is stopped as by Stop with a 5 s grace.
func Start(ctx context.Context, name string, opts StartOptions) (*Process, error) {
	path, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	uc, child, err := SocketPair()
	if err != nil {
		return nil, fmt.Errorf("helper %s: %w", name, err)
	}
	defer child.Close()
	out := opts.Stderr
	if out == nil {
		out = os.Stderr
	}
	cmd := exec.Command(path, opts.Args...)
	cmd.Env = append(append(HelperEnviron(os.Environ()), opts.Env...), EnvFD+"=3")
	cmd.ExtraFiles = []*os.File{child}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	// A helper that leaves a child holding its output must not hold Wait
	// (and so Stop) forever.
	cmd.WaitDelay = 5 * time.Second
	closeInheritedOnExec()
	if err := cmd.Start(); err != nil {
		_ = uc.Close()
		return nil, fmt.Errorf("helper %s: %w", name, err)
	}
	p := &Process{cmd: cmd, conn: NewConn(uc, opts.Handler), exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
		_ = p.conn.uc.Close() // a dead helper's calls fail now
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Stop(5 * time.Second)
		case <-p.exited:
		}
	}()
	return p, nil
}

// inheritedEnv names the variables a helper inherits from the gateway:
// the locale, the runtime's knobs, where certificates and proxies are, and
// (with the prefixes below) the locale categories and the tailnet node's
// debug knobs. Nothing else passes: the gateway's environment holds its
// secrets (tokens, passwords, API keys under names the config chooses)
// and the systemd notify socket, and a helper faces the network.
var inheritedEnv = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "TMPDIR": true, "TZ": true, "LANG": true,
	"GODEBUG": true, "GOTRACEBACK": true, "GOMAXPROCS": true, "GOMEMLIMIT": true, "GOGC": true, "GOCOVERDIR": true,
	"SSL_CERT_FILE": true, "SSL_CERT_DIR": true,
	"HTTP_PROXY": true, "HTTPS_PROXY": true, "NO_PROXY": true, "ALL_PROXY": true,
	"http_proxy": true, "https_proxy": true, "no_proxy": true, "all_proxy": true,
}

// HelperEnviron is the part of environ (KEY=value entries) a helper
// inherits: the names in inheritedEnv, LC_*, and the tailnet node's TS_*
// and TSNET_* knobs except a name that looks like a secret (TS_AUTHKEY:
// the auth key reaches the tailnet helper in its start call only).
func HelperEnviron(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch {
		case inheritedEnv[k], strings.HasPrefix(k, "LC_"):
		case (strings.HasPrefix(k, "TS_") || strings.HasPrefix(k, "TSNET_")) && !secretName(k):
		default:
			continue
		}
		out = append(out, kv)
	}
	return out
}

func secretName(k string) bool {
	u := strings.ToUpper(k)
	for _, s := range []string{"KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CRED"} {
		if strings.Contains(u, s) {
			return true
		}
	}
	return false
}

// SocketPair makes a connected pair of Unix stream sockets, both
// close-on-exec: this side's end as a connection, and the peer's end as a
// file to hand over (to a child through exec.Cmd's ExtraFiles, or to the
// gateway with a Call).
func SocketPair() (mine *net.UnixConn, theirs *os.File, err error) {
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "socketpair")
	c, err := net.FileConn(f) // dups the descriptor
	_ = f.Close()
	if err != nil {
		_ = syscall.Close(fds[1])
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "socketpair-peer"), nil
}

// Conn is the connection to the helper.
func (p *Process) Conn() *Conn { return p.conn }

// Pid is the helper's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the helper has exited.
func (p *Process) Done() <-chan struct{} { return p.exited }

// ExitErr is how the helper exited (nil for status 0); valid after Done.
func (p *Process) ExitErr() error {
	<-p.exited
	return p.err
}

// Stop closes the connection (a helper exits when it sees that), waits up
// to timeout, then kills the helper. It returns once the helper is gone,
// with how it exited (ExitErr).
func (p *Process) Stop(timeout time.Duration) error {
	p.stopOnce.Do(func() {
		_ = p.conn.Close()
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-p.exited:
		case <-t.C:
			_ = p.cmd.Process.Kill()
		}
	})
	<-p.exited
	return p.err
}

// Serve is the helper's side: it takes the connection the gateway passed
// in $CLAWGATE_IPC_FD and serves h on it. The helper should exit when the
// connection's Done closes.
//
// Serve ignores SIGINT, SIGTERM and SIGHUP. A terminal's Ctrl-C and a
// service manager's stop signal the gateway's whole process group or
// cgroup; the gateway then shuts down gracefully (tailnet clients get
// their close frames through the helper, an ephemeral node logs out) and
// closes the connection, which is the helper's cue to exit. A helper whose
// gateway is killed dies with it (Pdeathsig on Linux, else the closed
// connection).
func Serve(h Handler) (*Conn, error) {
	v := os.Getenv(EnvFD)
	if v == "" {
		return nil, fmt.Errorf("%s is not set: this helper is started by clawgate gateway, not by hand", EnvFD)
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not a descriptor", EnvFD, v)
	}
	_ = os.Unsetenv(EnvFD) // not for the helper's own children
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	f := os.NewFile(uintptr(fd), "ipc")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("%s=%d: %w", EnvFD, fd, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("%s=%d is not a Unix socket", EnvFD, fd)
	}
	return NewConn(uc, h), nil
}
