package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clawgate/clawgate/store"
	"github.com/clawgate/clawgate/store/bolt"
)

const devicesUsage = `usage: clawgate devices <command> [flags]

commands:
  list                         pending requests and paired devices
  approve REQUEST_ID           approve a pending pairing request
  reject REQUEST_ID            reject a pending pairing request
  remove DEVICE_ID             forget a device and disconnect it
  rotate DEVICE_ID --role R    issue a new token for a device's role
  revoke DEVICE_ID --role R    revoke a device's token for a role
  setup-code [--public-url wss://host:port] [--profile node|limited] [--no-qr]
                               print a single-use 10-minute pairing code (and QR)
                               for clawgate node run --setup-code

flags: --url URL --token T --json --state-dir DIR
`

// runDevices manages pairing on the running gateway, over the WebSocket
// API, as this machine's local admin device.
func runDevices(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, devicesUsage)
		return exitError{err: errors.New("devices: no command"), silent: true}
	}
	sub, rest := args[0], args[1:]
	var f callFlags
	var role, scopes string
	fs := flag.NewFlagSet("devices "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&f.url, "url", "", "gateway URL (default ws://127.0.0.1:18789)")
	fs.StringVar(&f.token, "token", "", "shared gateway token (default: environment, then the local state dir)")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory")
	fs.StringVar(&role, "role", "", "role for rotate/revoke: operator or node")
	fs.StringVar(&scopes, "scopes", "", "comma-separated scopes for rotate (default: keep)")
	var sc setupCodeFlags
	sc.register(fs)
	id, rest := splitMethod(rest)
	if err := fs.Parse(rest); err != nil {
		return exitError{err: err, silent: true}
	}
	if id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
	}
	var method string
	var params map[string]any
	switch sub {
	case "setup-code":
		return runSetupCode(ctx, f, sc, e) // node.go
	case "list":
		method, params = "device.pair.list", map[string]any{}
	case "approve", "reject":
		method, params = "device.pair."+sub, map[string]any{"requestId": id}
	case "remove":
		method, params = "device.pair.remove", map[string]any{"deviceId": id}
	case "rotate", "revoke":
		if role == "" {
			return fmt.Errorf("devices %s: --role is required (operator or node)", sub)
		}
		method, params = "device.token."+sub, map[string]any{"deviceId": id, "role": role}
		if sub == "rotate" && scopes != "" {
			params["scopes"] = strings.Split(scopes, ",")
		}
	default:
		fmt.Fprint(e.stderr, devicesUsage)
		return exitError{err: fmt.Errorf("devices: unknown command %q", sub), silent: true}
	}
	if sub != "list" && id == "" {
		return fmt.Errorf("devices %s: missing id (see clawgate devices list)", sub)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := callOnce(ctx, f, method, params, e)
	if err != nil {
		return reportCallError(err, f.json, e)
	}
	if f.json || sub != "list" {
		var v any
		_ = json.Unmarshal(res, &v)
		out, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(e.stdout, string(out))
		return nil
	}
	return printDeviceList(e.stdout, res)
}

func printDeviceList(w io.Writer, raw json.RawMessage) error {
	var l struct {
		Pending []struct {
			RequestID   string   `json:"requestId"`
			DeviceID    string   `json:"deviceId"`
			DisplayName string   `json:"displayName"`
			ClientID    string   `json:"clientId"`
			Platform    string   `json:"platform"`
			Role        string   `json:"role"`
			Scopes      []string `json:"scopes"`
			RemoteIP    string   `json:"remoteIp"`
		} `json:"pending"`
		Paired []struct {
			DeviceID    string   `json:"deviceId"`
			DisplayName string   `json:"displayName"`
			ClientID    string   `json:"clientId"`
			Platform    string   `json:"platform"`
			Roles       []string `json:"roles"`
			Scopes      []string `json:"scopes"`
		} `json:"paired"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return fmt.Errorf("devices list: unexpected answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PENDING (%d)\tDEVICE\tCLIENT\tPLATFORM\tROLE\tSCOPES\tFROM\n", len(l.Pending))
	for _, p := range l.Pending {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.RequestID, short(p.DeviceID), orDash(p.DisplayName, p.ClientID),
			orDash(p.Platform), orDash(p.Role), strings.Join(p.Scopes, ","), orDash(p.RemoteIP))
	}
	fmt.Fprintf(tw, "\nPAIRED (%d)\tNAME\tPLATFORM\tROLES\tSCOPES\t\t\n", len(l.Paired))
	for _, p := range l.Paired {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\t\n", p.DeviceID, orDash(p.DisplayName, p.ClientID), orDash(p.Platform),
			strings.Join(p.Roles, ","), strings.Join(p.Scopes, ","))
	}
	if len(l.Pending) > 0 {
		fmt.Fprintln(tw, "\napprove with: clawgate devices approve REQUEST_ID")
	}
	return tw.Flush()
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16] + "…"
	}
	return id
}

func orDash(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return "-"
}

// runBackup writes a consistent copy of the state database. With the
// gateway running it asks the gateway (which holds the file) to write the
// copy; otherwise it opens the file itself.
func runBackup(ctx context.Context, args []string, e env) error {
	var f callFlags
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory")
	fs.StringVar(&f.url, "url", "", "gateway URL (default ws://127.0.0.1:18789)")
	fs.StringVar(&f.token, "token", "", "shared gateway token")
	dest, rest := splitMethod(args)
	if err := fs.Parse(rest); err != nil {
		return exitError{err: err, silent: true}
	}
	if dest == "" && fs.NArg() > 0 {
		dest = fs.Arg(0)
	}
	if dest == "" {
		return errors.New("backup: usage: clawgate backup FILE")
	}
	if abs, err := filepath.Abs(dest); err == nil {
		dest = abs
	}
	p, err := resolvePaths(f.stateDir, e)
	if err != nil {
		return err
	}
	db, err := bolt.Open(p.dbFile(), bolt.Options{Timeout: 200 * time.Millisecond})
	if err == nil {
		defer db.Close()
		n, err := db.BackupFile(dest)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		fmt.Fprintf(e.stdout, "wrote %d bytes to %s\n", n, dest)
		return nil
	}
	if !errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("backup: %w", err)
	}
	// The gateway holds the file: it writes the hot copy.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := callOnce(ctx, f, "clawgate.backup", map[string]any{"path": dest}, e)
	if err != nil {
		return fmt.Errorf("backup: the state is in use by a running gateway, and asking it failed: %w", err)
	}
	var r struct {
		Bytes int64  `json:"bytes"`
		Path  string `json:"path"`
	}
	_ = json.Unmarshal(res, &r)
	fmt.Fprintf(e.stdout, "wrote %d bytes to %s (hot copy by the running gateway)\n", r.Bytes, r.Path)
	return nil
}
