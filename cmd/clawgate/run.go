package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/providers/whatsapp"
)

// version is stamped at release build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// env is the process environment a command sees; tests substitute it.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// whatsappTest points the WhatsApp helper at a loopback fake; nil in
	// production (only tests set it; no flag or variable can).
	whatsappTest *whatsapp.TestEndpoint
}

// exitError carries a non-zero exit whose message was already printed.
type exitError struct {
	err    error
	silent bool
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

const usage = `usage: clawgate <command> [flags]

commands:
  gateway   run the gateway in the foreground
  call      call a gateway method and print the result
  devices   list, approve, reject and remove devices; rotate or revoke tokens; setup codes
  node      run a headless node (clawgate node run)
  nodes     list nodes, approve their commands, invoke them
  channels  link a WhatsApp account by QR code (clawgate channels login whatsapp)
  backup    write a consistent copy of the state database
  token     print the shared gateway token
  service   install, uninstall or inspect the systemd unit / launchd job
  doctor    audit the configuration and files like a security review
  tls       print the TLS certificate fingerprints; rotate the certificate
  tunnel    print (or run) the ssh command that tunnels to a remote gateway
  version   print the version

Run "clawgate <command> -h" for a command's flags.
`

func run(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return exitError{err: fmt.Errorf("no command"), silent: true}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "gateway":
		return runGateway(ctx, rest, e)
	case "call":
		return runCall(ctx, rest, e)
	case "devices":
		return runDevices(ctx, rest, e)
	case "node":
		return runNode(ctx, rest, e)
	case "nodes":
		return runNodes(ctx, rest, e)
	case "channels":
		return runChannels(ctx, rest, e) // whatsapp.go
	case "backup":
		return runBackup(ctx, rest, e)
	case "token":
		return runToken(rest, e)
	case "service":
		return runService(rest, e)
	case "doctor":
		return runDoctor(ctx, rest, e)
	case "tls":
		return runTLS(rest, e)
	case "tunnel":
		return runTunnel(ctx, rest, e)
	case "version", "--version", "-v":
		fmt.Fprintln(e.stdout, "clawgate", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	fmt.Fprint(e.stderr, usage)
	return exitError{err: fmt.Errorf("unknown command %q", cmd), silent: false}
}

// paths are the files of one state directory.
type paths struct {
	stateDir string
}

func (p paths) configFile() string { return filepath.Join(p.stateDir, config.FileName) }
func (p paths) tokenFile() string  { return filepath.Join(p.stateDir, "gateway.token") }
func (p paths) dbFile() string     { return filepath.Join(p.stateDir, "clawgate.db") }
func (p paths) cliIdentity() string {
	return filepath.Join(p.stateDir, "identity", "cli.json")
}

func resolvePaths(flagDir string, e env) (paths, error) {
	if flagDir != "" {
		abs, err := filepath.Abs(flagDir)
		return paths{stateDir: abs}, err
	}
	d, err := config.StateDir(e.getenv)
	return paths{stateDir: d}, err
}

// envToken returns the shared token from the environment, if any.
func envToken(e env) string {
	for _, k := range []string{"CLAWGATE_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_TOKEN"} {
		if v := strings.TrimSpace(e.getenv(k)); v != "" {
			return v
		}
	}
	return ""
}
