package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/config"
)

const tunnelUsage = `usage: clawgate tunnel [flags] [user@]HOST [-- SSH OPTIONS...]

Prints the ssh command that forwards this machine's 127.0.0.1:PORT to the
gateway on HOST's loopback port, or runs it with --run. The tunnelled
connection arrives on HOST's loopback: anyone with SSH access to HOST is
local to its gateway (local trust), so guard SSH access accordingly.

flags:
`

// runTunnel is `clawgate tunnel`.
func runTunnel(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("tunnel", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, tunnelUsage); fs.PrintDefaults() }
	port := fs.Int("port", 0, "the gateway's port on HOST (default: the port configured in this machine's state dir, else 18789)")
	localPort := fs.Int("local-port", 0, "the local port (default: the same as --port; the gateway accepts only its own port in the Host header unless gateway.allowedHosts names another)")
	localAddr := fs.String("local-addr", "", "the local loopback address to listen on (default: ssh's, 127.0.0.1 and ::1)")
	runIt := fs.Bool("run", false, "run ssh in the foreground instead of printing the command")
	stateDir := fs.String("state-dir", "", "state directory whose config names the port")
	host, rest := splitMethod(args)
	if err := fs.Parse(rest); err != nil {
		return exitError{err: err, silent: true}
	}
	extra := fs.Args()
	if host == "" && len(extra) > 0 {
		host, extra = extra[0], extra[1:]
	}
	if len(extra) > 0 && extra[0] == "--" {
		extra = extra[1:]
	}
	if err := checkSSHHost(host); err != nil {
		fs.Usage()
		return err
	}
	p := *port
	if p == 0 {
		p = configuredPort(*stateDir, e)
	}
	lp := *localPort
	if lp == 0 {
		lp = p
	}
	if p <= 0 || p > 65535 || lp <= 0 || lp > 65535 {
		return fmt.Errorf("tunnel: port out of range")
	}
	if *localAddr != "" && !client.IsLoopbackHost(*localAddr) {
		return fmt.Errorf("tunnel: --local-addr %q is not a loopback IP address; a tunnel end beyond loopback would expose the gateway", *localAddr)
	}
	argv := tunnelArgs(host, p, lp, *localAddr, extra)
	local := "127.0.0.1"
	if *localAddr != "" {
		local = *localAddr
	}
	if !*runIt {
		fmt.Fprintln(e.stdout, shellJoin(append([]string{"ssh"}, argv...)))
		fmt.Fprintf(e.stderr, "then connect to ws://%s (SSH access to %s is local trust on its gateway)\n",
			netJoin(local, lp), host)
		return nil
	}
	cmd := exec.CommandContext(ctx, "ssh", argv...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, e.stdout, e.stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	fmt.Fprintf(e.stderr, "clawgate: tunnel ws://%s -> %s 127.0.0.1:%d (Ctrl-C stops it)\n", netJoin(local, lp), host, p)
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil // stopped on purpose
	}
	if err != nil {
		return fmt.Errorf("tunnel: ssh: %w", err)
	}
	return nil
}

// tunnelArgs are ssh's arguments: no remote command, fail when the local
// port cannot be bound, forward to the gateway's loopback port.
func tunnelArgs(host string, port, localPort int, localAddr string, extra []string) []string {
	fwd := strconv.Itoa(localPort) + ":127.0.0.1:" + strconv.Itoa(port)
	if localAddr != "" {
		a := localAddr
		if strings.Contains(a, ":") {
			a = "[" + a + "]"
		}
		fwd = a + ":" + fwd
	}
	argv := []string{"-N", "-o", "ExitOnForwardFailure=yes", "-L", fwd}
	argv = append(argv, extra...)
	return append(argv, host)
}

// checkSSHHost refuses what ssh would read as an option or what a shell
// would split.
func checkSSHHost(host string) error {
	switch {
	case host == "":
		return errors.New("tunnel: missing HOST")
	case strings.HasPrefix(host, "-"):
		return fmt.Errorf("tunnel: HOST %q looks like an option", host)
	case strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("tunnel: HOST %q contains spaces or control characters", host)
	}
	return nil
}

func configuredPort(stateDir string, e env) int {
	p, err := resolvePaths(stateDir, e)
	if err != nil {
		return config.DefaultPort
	}
	cfg, err := config.Load(p.configFile())
	if err != nil || cfg.Gateway.Port == 0 {
		return config.DefaultPort
	}
	return cfg.Gateway.Port
}

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// shellJoin quotes args for a POSIX shell where needed.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-[]", r))
		}) {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
