package main

import (
	"flag"
	"fmt"

	"github.com/clawgate/clawgate/config"
)

// runToken prints the shared token the gateway uses when none is given by
// flag or environment.
func runToken(args []string, e env) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	stateDir := fs.String("state-dir", "", "state directory")
	if err := fs.Parse(args); err != nil {
		return exitError{err: err, silent: true}
	}
	p, err := resolvePaths(*stateDir, e)
	if err != nil {
		return err
	}
	tok, err := config.ReadSecret(p.tokenFile())
	if err != nil {
		return fmt.Errorf("token: %w (start the gateway once to generate it)", err)
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}
