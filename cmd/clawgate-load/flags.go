package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"
)

// scenarioNames lists the scenarios in the order `all` runs them.
var scenarioNames = []string{"handshake", "paired", "shared", "connect-health", "health", "idle", "fanout", "churn"}

type config struct {
	url        string
	token      string
	label      string
	scenarios  []string
	jsonPath   string
	src        string
	pid        int
	progress   bool
	concurrent int
	timeout    time.Duration // one dial + handshake

	handshakes  int // handshake, paired
	devices     int // paired: distinct paired devices cycled through
	sequential  int // connect-health
	healthConns int
	healthCalls int

	idle     int
	idleAuth string // device | shared-device | token
	hold     time.Duration
	settle   time.Duration

	fanout       int
	fanoutRounds int

	churn    int
	duration time.Duration // cap on each timed scenario

	verifies int // ed25519 verifies timed before and after the run; 0: none
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("clawgate-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: clawgate-load [flags]\n\nScenarios (--scenarios, comma-separated, or all): %s\n\n", strings.Join(scenarioNames, ", "))
		fs.PrintDefaults()
	}
	defToken := os.Getenv("CLAWGATE_GATEWAY_TOKEN")
	if defToken == "" {
		defToken = os.Getenv("OPENCLAW_GATEWAY_TOKEN")
	}
	var scen string
	fs.StringVar(&c.url, "url", "ws://127.0.0.1:18789", "gateway WebSocket URL")
	fs.StringVar(&c.token, "token", defToken, "shared gateway token (default $CLAWGATE_GATEWAY_TOKEN, else $OPENCLAW_GATEWAY_TOKEN)")
	fs.StringVar(&c.label, "label", "", "name of the target in the summary (default: the URL)")
	fs.StringVar(&scen, "scenarios", "handshake,paired,health,idle,fanout,churn", "scenarios to run, in order, or all")
	fs.StringVar(&c.jsonPath, "json", "-", "write the JSON summary here (- for stdout)")
	fs.StringVar(&c.src, "src", "auto", "source addresses: a range 127.0.0.2-127.0.0.254, a list a,b,c, none, or auto (the range when the target is 127.x)")
	fs.IntVar(&c.pid, "pid", 0, "gateway process id: memory and fds from /proc/<pid> (its children's RSS included)")
	fs.BoolVar(&c.progress, "progress", true, "progress lines on stderr once a second")
	fs.IntVar(&c.concurrent, "concurrency", 64, "workers for handshakes, opening idle sockets and churn")
	fs.DurationVar(&c.timeout, "dial-timeout", 15*time.Second, "timeout of one dial plus handshake")
	fs.IntVar(&c.handshakes, "handshakes", 2000, "handshake, paired: connections to make")
	fs.IntVar(&c.devices, "devices", 64, "paired, shared: distinct devices paired first, then reconnected with their device tokens")
	fs.IntVar(&c.sequential, "sequential", 200, "connect-health: sequential signed connect + health + close cycles (the reference bench)")
	fs.IntVar(&c.healthConns, "health-conns", 8, "health: connections issuing calls concurrently")
	fs.IntVar(&c.healthCalls, "health-calls", 20000, "health: total calls")
	fs.IntVar(&c.idle, "idle", 1000, "idle: authenticated connections to hold")
	fs.StringVar(&c.idleAuth, "idle-auth", "shared-device", "idle, fanout, churn: device (a new device each), shared-device (one paired device, many sockets) or token (no device)")
	fs.DurationVar(&c.hold, "hold", 35*time.Second, "idle: how long to hold the sockets (more than one tick interval so ticks flow)")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "idle: pause before each memory sample")
	fs.IntVar(&c.fanout, "fanout", 1000, "fanout: watching connections")
	fs.IntVar(&c.fanoutRounds, "fanout-rounds", 10, "fanout: presence changes to time")
	fs.IntVar(&c.churn, "churn", 5000, "churn: connect/disconnect cycles")
	fs.IntVar(&c.verifies, "verify-ceiling", 20000, "ed25519 verifies of a v3 payload timed (thread CPU clock) before and after the scenarios, for the verify ceiling; 0 skips it")
	fs.DurationVar(&c.duration, "max-duration", 10*time.Minute, "stop a scenario's main loop after this long")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	u, err := url.Parse(c.url)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("--url %q: want ws://host:port or wss://host:port", c.url)
	}
	if c.token == "" {
		return nil, fmt.Errorf("no token: pass --token or set CLAWGATE_GATEWAY_TOKEN")
	}
	if scen == "all" {
		c.scenarios = scenarioNames
	} else {
		for _, s := range strings.Split(scen, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			known := false
			for _, k := range scenarioNames {
				known = known || k == s
			}
			if !known {
				return nil, fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(scenarioNames, ", "))
			}
			c.scenarios = append(c.scenarios, s)
		}
	}
	switch c.idleAuth {
	case "device", "shared-device", "token":
	default:
		return nil, fmt.Errorf("--idle-auth %q: want device, shared-device or token", c.idleAuth)
	}
	if c.concurrent < 1 {
		c.concurrent = 1
	}
	if c.label == "" {
		c.label = c.url
	}
	return c, nil
}
