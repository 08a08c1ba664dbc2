// Command clawgate runs a security-hardened OpenClaw-compatible gateway and
// talks to it: `clawgate gateway` serves, `clawgate call` invokes a method,
// `clawgate devices` and `clawgate nodes` manage who may connect, and
// `clawgate help` lists the rest.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// stopProfile flushes the CPU profile of a -tags cpuprofile build
// (cpuprofile.go); otherwise it does nothing.
var stopProfile = func() {}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	stopProfile()
	if err != nil {
		var ee exitError
		if !errors.As(err, &ee) || !ee.silent {
			fmt.Fprintln(os.Stderr, "clawgate:", err)
		}
		os.Exit(1)
	}
}
