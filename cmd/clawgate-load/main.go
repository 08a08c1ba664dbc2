// Command clawgate-load drives a running OpenClaw-protocol gateway (clawgate
// or the real OpenClaw gateway) over real WebSockets and reports what it
// measured: signed handshakes per second for new and for paired devices,
// health round trips with p50/p99/p999, the gateway's memory per idle
// authenticated connection (from /proc/<pid>/status with --pid, else from
// the status method's processMemory), broadcast fan-out latency of a
// presence change, and connect/disconnect churn.
//
// Connections come from many loopback source addresses (127.0.0.x, the
// dialer's local address rotates), so per-address budgets on the gateway
// do not cap the load and 50,000 sockets do not exhaust one address's
// ephemeral ports. Progress goes to stderr once a second; the summary is
// one JSON document (stdout, or --json FILE).
//
//	clawgate-load --url ws://127.0.0.1:18789 --token T --scenarios handshake,health --pid 1234
//
// It sends only to the URL it is given; point it at loopback.
//
//	clawgate-load floor-server --listen 127.0.0.1:18789
//
// serves the same session choreography with canned frames, the cost floor
// a gateway is measured against (floor.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "clawgate-load:", err)
		}
		os.Exit(1)
	}
}

// run parses args, runs the chosen scenarios in order and writes the
// summary. A scenario that fails is recorded in the summary and the run
// goes on; run returns an error when any scenario failed.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "floor-server" {
		return runFloor(ctx, args[1:], stderr) // floor.go
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	l, err := newLoader(cfg, stderr)
	if err != nil {
		return err
	}
	sum := l.runAll(ctx)
	if err := writeSummary(cfg.jsonPath, stdout, sum); err != nil {
		return err
	}
	if n := sum.failed(); n > 0 {
		return fmt.Errorf("%d scenario(s) failed; see the summary", n)
	}
	return nil
}
