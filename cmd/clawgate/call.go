package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/protocol"
)

// adminScopes are what the local CLI asks for; the gateway grants what its
// credentials allow.
var adminScopes = []string{protocol.ScopeAdmin, protocol.ScopeRead, protocol.ScopeWrite,
	protocol.ScopeApprovals, protocol.ScopePairing}

type callFlags struct {
	params   string
	url      string
	token    string
	json     bool
	timeout  time.Duration
	stateDir string
	tls      callTLSFlags
}

func runCall(ctx context.Context, args []string, e env) error {
	var f callFlags
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&f.params, "params", "", "method params as a JSON object")
	fs.StringVar(&f.url, "url", "", "gateway URL (default ws://127.0.0.1:18789)")
	fs.StringVar(&f.token, "token", "", "shared gateway token (default: environment, then the local state dir)")
	fs.BoolVar(&f.json, "json", false, "print machine-readable JSON, errors included")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory holding this CLI's device identity")
	f.tls.register(fs)
	method, rest := splitMethod(args)
	if err := fs.Parse(rest); err != nil {
		return exitError{err: err, silent: true}
	}
	if method == "" && fs.NArg() > 0 {
		method = fs.Arg(0)
	}
	if method == "" {
		return errors.New("call: usage: clawgate call METHOD [--params JSON] [--url URL] [--token T] [--json]")
	}
	var params any
	if f.params != "" {
		var obj map[string]any
		if err := json.Unmarshal([]byte(f.params), &obj); err != nil {
			return fmt.Errorf("call: --params must be a JSON object: %w", err)
		}
		params = obj
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	res, err := callOnce(ctx, f, method, params, e)
	if err != nil {
		return reportCallError(err, f.json, e)
	}
	var pretty any
	if err := json.Unmarshal(res, &pretty); err != nil || len(res) == 0 {
		pretty = nil
	}
	out, _ := json.MarshalIndent(pretty, "", "  ")
	fmt.Fprintln(e.stdout, string(out))
	return nil
}

// splitMethod lets the method come first ("call health --json") or after
// the flags.
func splitMethod(args []string) (string, []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	return "", args
}

// dialAdmin connects as this machine's CLI device, reusing a device token
// the gateway issued earlier and storing a new one.
func dialAdmin(ctx context.Context, f callFlags, e env) (*client.Client, error) {
	url, token := f.url, f.token
	p, err := resolvePaths(f.stateDir, e)
	if err != nil {
		return nil, err
	}
	if url == "" {
		url = "ws://127.0.0.1:" + strconv.Itoa(configuredPort(f.stateDir, e))
	}
	if token == "" {
		token = envToken(e)
	}
	if token == "" {
		// The local admin reads the gateway's own token file.
		if t, err := config.ReadSecret(p.tokenFile()); err == nil {
			token = t
		}
	}
	if err := config.EnsureDir(p.stateDir); err != nil {
		return nil, err
	}
	ids, err := client.OpenIdentity(p.cliIdentity())
	if err != nil {
		return nil, err
	}
	opts := client.Options{
		URL: url, Token: token, DeviceToken: ids.DeviceToken(url, protocol.RoleOperator),
		Identity: ids.Identity(), ClientID: "cli", ClientMode: "cli", Version: version,
		Scopes: adminScopes,
	}
	c, url, err := dialSecure(ctx, opts, f, p, ids, e)
	if err != nil {
		return nil, err
	}
	if dt := c.Hello().Auth.DeviceToken; dt != "" {
		if err := ids.SetDeviceToken(url, protocol.RoleOperator, dt); err != nil {
			fmt.Fprintln(e.stderr, "clawgate: could not store the device token:", err)
		}
	}
	return c, nil
}

func callOnce(ctx context.Context, f callFlags, method string, params any, e env) (json.RawMessage, error) {
	c, err := dialAdmin(ctx, f, e)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Call(ctx, method, params)
}

func reportCallError(err error, asJSON bool, e env) error {
	var rerr *client.RemoteError
	if asJSON {
		body := map[string]any{"ok": false}
		if errors.As(err, &rerr) {
			body["error"] = rerr.ErrorShape
		} else {
			body["error"] = map[string]any{"code": "UNAVAILABLE", "message": err.Error()}
		}
		out, _ := json.MarshalIndent(body, "", "  ")
		fmt.Fprintln(e.stdout, string(out))
		return exitError{err: err, silent: true}
	}
	return err
}
