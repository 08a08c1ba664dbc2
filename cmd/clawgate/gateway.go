package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/store/bolt"
)

type gatewayFlags struct {
	port      int
	bind      string
	token     string
	verbose   bool
	stateDir  string
	config    string
	logFormat string
	tls       tlsFlags
	tailnet   tailnetFlags
	canvas    canvasFlags     // canvas.go
	auto      automationFlags // canvas.go
}

func runGateway(ctx context.Context, args []string, e env) error {
	start := time.Now()
	var f gatewayFlags
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.IntVar(&f.port, "port", 0, "port to listen on (default 18789)")
	fs.StringVar(&f.bind, "bind", "", `address to bind: "loopback" (default), "lan" (every interface) or an IP; beyond loopback needs --tls`)
	fs.StringVar(&f.token, "token", "", "shared gateway token (default: $CLAWGATE_GATEWAY_TOKEN, $OPENCLAW_GATEWAY_TOKEN, or the state dir's generated token)")
	fs.BoolVar(&f.verbose, "verbose", false, "log debug detail")
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory (default $CLAWGATE_STATE_DIR, $XDG_STATE_HOME/clawgate or ~/.clawgate)")
	fs.StringVar(&f.config, "config", "", "config file (default <state-dir>/clawgate.json)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	f.tls.register(fs)
	f.tailnet.register(fs)
	f.canvas.register(fs)
	f.auto.register(fs)
	if err := fs.Parse(args); err != nil {
		return exitError{err: err, silent: true}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("gateway: unexpected argument %q", fs.Arg(0))
	}
	log, err := newLogger(e, f.logFormat, f.verbose)
	if err != nil {
		return err
	}
	log, logs := withLogRing(log, f.verbose)
	p, err := resolvePaths(f.stateDir, e)
	if err != nil {
		return err
	}
	if err := config.EnsureDir(p.stateDir); err != nil {
		return err
	}
	cfgPath := f.config
	if cfgPath == "" {
		cfgPath = p.configFile()
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	plan, err := planListen(f, cfg.Gateway, p, log)
	if err != nil {
		return err
	}
	secret, err := loadSharedToken(f.token, e, p, cfg.Gateway, log, plan)
	if err != nil {
		return err
	}
	db, err := bolt.Open(p.dbFile(), bolt.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	pm, err := pairing.New(db, pairing.Options{Logger: log.With("component", "pairing")})
	if err != nil {
		return err
	}
	defer pm.Close()
	agentOpts, webChat, err := agentWiring(cfg.Agent, e, db, cfgPath, log)
	if err != nil {
		return err
	}
	chans, err := newChannels(cfg.Channels, p.stateDir, e, log) // providers.go
	if err != nil {
		return err
	}
	defer chans.close()
	if agentOpts.Backend != nil && agentOpts.Providers == nil && chans.hub() != nil {
		agentOpts.Providers = chans.hub() // admitted inbound messages become agent runs
	}
	autoOpts, err := f.auto.options(db) // cron jobs in the state file
	if err != nil {
		return err
	}
	cv, err := newCanvas(f.canvas, p, log) // canvas.go
	if err != nil {
		return err
	}
	defer cv.stop()
	srv, err := gateway.New(gateway.Options{
		Version: version, Token: secret, Logger: log, Pairing: pm, Backup: db.BackupFile,
		AllowedHosts: cfg.Gateway.AllowedHosts, AllowedOrigins: cfg.Gateway.AllowedOrigins,
		StateDir: p.stateDir, ConfigPath: cfgPath, Logs: logs,
		Agent: agentOpts, WebChat: webChat, Providers: chans.hub(),
		Automation: autoOpts, Canvas: cv.options(), // canvas.go
		Nodes: gateway.NodePolicy{AllowCommands: cfg.Gateway.Nodes.Commands.Allow, DenyCommands: cfg.Gateway.Nodes.Commands.Deny},
	})
	if err != nil {
		return err
	}
	lns, err := plan.listen()
	if err != nil {
		return err
	}
	ln := lns[0].Listener
	if err := cv.start(ln.Addr()); err != nil {
		return err
	}
	tn, err := startTailnet(f.tailnet, cfg.Tailnet, ln.Addr(), p, e, srv, log) // tailnet.go
	if err != nil {
		return err
	}
	defer tn.close()
	if err := cv.serveTailnet(tn); err != nil { // canvas.go
		return err
	}
	lns = append(lns, tn.listeners()...)
	log.Info("gateway listening", append([]any{"addr", ln.Addr().String(), "stateDir", p.stateDir,
		"version", version, "startupMs", time.Since(start).Milliseconds()}, plan.logAttrs()...)...)
	sd, err := newNotifier(e.getenv, log)
	if err != nil {
		log.Warn("not notifying systemd", "err", err)
	}
	defer sd.close()
	sd.ready(ctx, e.getenv, "listening on "+ln.Addr().String(), plan.healthCheck())
	defer chans.start(ctx)()
	err = srv.Serve(ctx, lns...)
	log.Info("gateway stopped")
	return err
}

func newLogger(e env, format string, verbose bool) (*slog.Logger, error) {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(e.stdout, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(e.stdout, opts)), nil
	}
	return nil, fmt.Errorf("gateway: --log-format must be text or json, not %q", format)
}

// loadSharedToken picks the token from the flag, the environment, or the
// state directory (generating one on first start). It never logs the
// token. A weak token is refused when the plan listens beyond loopback.
func loadSharedToken(flagToken string, e env, p paths, g config.Gateway, log *slog.Logger, plan *listenPlan) (authn.SharedSecret, error) {
	tok, source := flagToken, "--token"
	if tok == "" {
		tok, source = envToken(e), "environment"
	}
	if tok == "" {
		file := p.tokenFile()
		if g.TokenFile != "" {
			file = g.TokenFile
		}
		var created bool
		var err error
		tok, created, err = config.LoadOrCreateSecret(file, authn.GenerateToken)
		if err != nil {
			return authn.SharedSecret{}, err
		}
		source = file
		if created {
			log.Info("generated a new gateway token; print it with: clawgate token", "file", file)
		}
	}
	if err := authn.CheckTokenStrength(tok); err != nil {
		if plan.remote {
			return authn.SharedSecret{}, fmt.Errorf("gateway: refusing to listen beyond loopback with a weak shared token (from %s): "+
				"use at least %d random characters, e.g. the generated one (unset the flag and environment, then: clawgate token)", source, authn.MinTokenLen)
		}
		log.Warn("weak gateway token; use at least "+strconv.Itoa(authn.MinTokenLen)+" random characters", "source", source)
	}
	return authn.NewSharedSecret(tok)
}
