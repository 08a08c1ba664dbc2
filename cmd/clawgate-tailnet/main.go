// Command clawgate-tailnet runs the gateway's tailnet node (tsnet) in a
// process of its own, so the gateway binary links none of tailscale.com.
// `clawgate gateway --tailnet` starts it (it must sit next to clawgate, or
// in $CLAWGATE_HELPER_DIR; never on $PATH) with an ipc connection as fd 3; it
// is not meant to be run by hand.
//
// Over that connection (the calls are in package tsipc) the gateway sends
// the node's options (the auth key travels only there), the ports to serve
// and WhoIs questions; the helper hands over each accepted tailnet
// connection as one end of a Unix socket pair it relays to the tailnet,
// and pushes the node's status, its Host names and departed peers. It logs
// JSON lines on stderr, which the gateway folds into its own log, and exits
// when the connection closes.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/clawgate/clawgate/ipc"
)

func main() {
	level := new(slog.LevelVar)
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	h := newHelper(log, level)
	conn, err := ipc.Serve(h.handle)
	if err != nil {
		fmt.Fprintf(os.Stderr, "clawgate-tailnet: %v (this helper is started by `clawgate gateway --tailnet`)\n", err)
		os.Exit(2)
	}
	h.run(conn)
}
