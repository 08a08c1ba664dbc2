package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/skip2/go-qrcode"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/tlspin"
)

const nodeUsage = `usage: clawgate node run [flags]

Runs a headless node: connects to a gateway with role node, pairs (printing
the request to approve), reconnects with backoff, and answers system.which
and system.run invocations under a local exec policy (deny by default).

flags:
  --url URL                 gateway URL (default ws://127.0.0.1:18789, or the setup code's)
  --token T                 shared gateway token (default: $CLAWGATE_GATEWAY_TOKEN, $OPENCLAW_GATEWAY_TOKEN)
  --setup-code CODE         pair with a setup code from "clawgate devices setup-code" (single use)
  --tls-fingerprint FP      pin the gateway's certificate (wss://)
  --display-name NAME       how operators see this node (default: host name)
  --state-dir DIR           node state: device key, device token, exec allowlist
  --exec-security MODE      deny | allowlist (default) | full
  --exec-ask MODE           on-miss (default: unlisted commands need an operator's approval) | off (refuse them)
  --allow-exec PATHS        comma-separated executables always allowed (added to the state dir's allowlist)
  --env-allow NAMES         comma-separated environment variables a caller may set (default: none)
  --max-output BYTES        stdout and stderr cap per stream (default 200000)
  --max-run-time DURATION   longest a command may run (default 10m)
`

const nodesUsage = `usage: clawgate nodes <command> [flags]

commands:
  list                           connected and paired nodes
  pending                        node command surfaces waiting for approval
  approve REQUEST_ID             approve a node's declared commands
  reject REQUEST_ID              reject them
  describe NODE_ID               one node
  rename NODE_ID NAME            set a node's display name
  remove NODE_ID                 unpair a node and disconnect it
  invoke NODE_ID COMMAND [--params JSON] [--timeout-ms N]
  run NODE_ID [--cwd DIR] [--approve] -- ARGV...
                                 system.run on the node; --approve asks an
                                 operator (exec.approval.request) first

flags: --url URL --token T --json --state-dir DIR --tls-fingerprint FP
`

func runNode(ctx context.Context, args []string, e env) error {
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprint(e.stderr, nodeUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return exitError{err: errors.New("node: usage: clawgate node run [flags]"), silent: true}
	}
	var f struct {
		url, token, setupCode, name, stateDir string
		security, ask, allowExec, envAllow    string
		maxOutput                             int
		maxRun                                time.Duration
		tls                                   callTLSFlags
	}
	fs := flag.NewFlagSet("node run", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, nodeUsage) }
	fs.StringVar(&f.url, "url", "", "gateway URL")
	fs.StringVar(&f.token, "token", "", "shared gateway token")
	fs.StringVar(&f.setupCode, "setup-code", "", "setup code")
	fs.StringVar(&f.name, "display-name", "", "display name")
	fs.StringVar(&f.stateDir, "state-dir", "", "node state directory")
	fs.StringVar(&f.security, "exec-security", "allowlist", "deny | allowlist | full")
	fs.StringVar(&f.ask, "exec-ask", "on-miss", "on-miss | off")
	fs.StringVar(&f.allowExec, "allow-exec", "", "executables always allowed")
	fs.StringVar(&f.envAllow, "env-allow", "", "environment variables callers may set")
	fs.IntVar(&f.maxOutput, "max-output", defaultOutputCap, "output cap per stream, bytes")
	fs.DurationVar(&f.maxRun, "max-run-time", 10*time.Minute, "longest run")
	f.tls.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return exitError{err: err, silent: true}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("node run: unexpected argument %q", fs.Arg(0))
	}
	switch f.security {
	case "deny", "allowlist", "full":
	default:
		return fmt.Errorf("node run: --exec-security must be deny, allowlist or full, not %q", f.security)
	}
	if f.ask != "on-miss" && f.ask != "off" {
		return fmt.Errorf("node run: --exec-ask must be on-miss or off, not %q", f.ask)
	}
	if f.maxOutput <= 0 || f.maxRun <= 0 {
		return errors.New("node run: --max-output and --max-run-time must be positive")
	}

	p, err := resolvePaths(f.stateDir, e)
	if err != nil {
		return err
	}
	dir := p.stateDir
	if f.stateDir == "" {
		dir = filepath.Join(p.stateDir, "node")
	}
	if err := config.EnsureDir(dir); err != nil {
		return err
	}
	n := &nodeHost{e: e, url: f.url, token: f.token, pin: f.tls.fingerprint, plaintext: f.tls.plaintext,
		name: f.name, dir: dir}
	if n.token == "" {
		n.token = envToken(e)
	}
	if f.setupCode != "" {
		sp, err := gateway.DecodeSetupCode(f.setupCode)
		if err != nil {
			return errors.New("node run: invalid setup code (copy it again from `clawgate devices setup-code`)")
		}
		if sp.ExpiresAtMs != 0 && time.Now().UnixMilli() >= sp.ExpiresAtMs {
			return errors.New("node run: the setup code has expired; ask for a new one (clawgate devices setup-code)")
		}
		if n.url == "" {
			n.url = sp.URL
		}
		if n.pin == "" {
			n.pin = sp.TLSFingerprint
		}
		n.bootstrap = sp.BootstrapToken
	}
	if n.url == "" {
		n.url = "ws://127.0.0.1:" + strconv.Itoa(config.DefaultPort)
	}
	if n.name == "" {
		n.name, _ = os.Hostname()
	}
	if n.ids, err = client.OpenIdentity(filepath.Join(dir, "identity.json")); err != nil {
		return err
	}
	if n.exec, err = loadExecPolicy(filepath.Join(dir, "exec-approvals.json"), f.security, f.ask,
		splitList(f.allowExec), splitList(f.envAllow), f.maxOutput, f.maxRun); err != nil {
		return err
	}
	n.exec.logf = n.logf
	if n.bootstrap == "" && n.token == "" && n.ids.DeviceToken(n.url, protocol.RoleNode) == "" {
		return errors.New("node run: no credentials: pass --token (or set CLAWGATE_GATEWAY_TOKEN), or pair with --setup-code from `clawgate devices setup-code`")
	}
	return n.run(ctx)
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// nodeHost is a running headless node.
type nodeHost struct {
	e         env
	url       string
	token     string
	bootstrap string // a setup code's token until it is spent
	pin       string
	plaintext bool
	name      string
	dir       string
	ids       *client.IdentityStore
	exec      *execPolicy

	announced string // the last pairing request id printed
}

// nodeCommands are what this node declares.
var nodeCommands = []string{"system.which", "system.run"}

// Reconnect backoff: 1 s doubling to 30 s, with jitter.
const (
	nodeBackoffMin = time.Second
	nodeBackoffMax = 30 * time.Second
	// maxNodeInvokes bounds concurrent invocations on this node.
	maxNodeInvokes = 8
)

func (n *nodeHost) logf(format string, args ...any) {
	fmt.Fprintf(n.e.stderr, "clawgate node: "+format+"\n", args...)
}

func nodePlatform() (platform, family string) {
	switch runtime.GOOS {
	case "darwin":
		return "macos", "Mac"
	case "windows":
		return "windows", "Windows"
	case "linux":
		return "linux", "Linux"
	}
	return runtime.GOOS, runtime.GOOS
}

// run connects, serves and reconnects until ctx ends. It returns an error
// only for what retrying cannot fix (a spent setup code, a wrong token).
func (n *nodeHost) run(ctx context.Context) error {
	n.logf("device %s, gateway %s", n.ids.Identity().DeviceID, n.url)
	backoff := nodeBackoffMin
	for {
		c, events, err := n.connect(ctx)
		if err == nil {
			backoff = nodeBackoffMin
			reason := n.serve(ctx, c, events)
			if ctx.Err() != nil {
				_ = c.Close()
				return nil
			}
			n.logf("disconnected (%v); reconnecting", reason)
		} else {
			if ctx.Err() != nil {
				return nil
			}
			if fatal := n.classify(err); fatal != nil {
				return fatal
			}
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, nodeBackoffMax)
	}
}

// connect dials with the best credential this node holds: its device
// token for this gateway, else an unspent setup code, with the shared
// token when one was given.
func (n *nodeHost) connect(ctx context.Context) (*client.Client, chan client.Event, error) {
	platform, family := nodePlatform()
	events := make(chan client.Event, 256)
	opts := client.Options{
		URL: n.url, Token: n.token, Identity: n.ids.Identity(), TLSFingerprint: n.pin, AllowInsecurePlaintext: n.plaintext,
		ClientID: "node-host", ClientMode: protocol.ModeNode, Role: protocol.RoleNode, Version: version,
		Platform: platform, DeviceFamily: family, DisplayName: n.name, InstanceID: n.ids.Identity().DeviceID,
		Caps: []string{"system"}, Commands: nodeCommands, PathEnv: os.Getenv("PATH"),
		MinProtocol: protocol.MinNodeVersion, MaxProtocol: protocol.Version,
		OnEvent: func(ev client.Event) {
			select {
			case events <- ev:
			default: // bounded: a flood of events is dropped, invocations then time out
			}
		},
	}
	if dt := n.ids.DeviceToken(n.url, protocol.RoleNode); dt != "" && client.TrustedTransport(n.url) {
		opts.DeviceToken = dt
	} else if n.bootstrap != "" {
		opts.BootstrapToken = n.bootstrap
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := client.Dial(dctx, opts)
	if err != nil {
		if opts.BootstrapToken != "" && isRemoteCode(err, protocol.DetailAuthBootstrapInvalid) {
			n.bootstrap = ""
		}
		return nil, nil, err
	}
	if opts.BootstrapToken != "" {
		n.bootstrap = "" // spent
	}
	if dt := c.Hello().Auth.DeviceToken; dt != "" {
		if err := n.ids.SetDeviceToken(n.url, protocol.RoleNode, dt); err != nil {
			n.logf("could not store the device token: %v", err)
		}
	}
	n.logf("connected to %s as node %s (%q)", n.url, n.ids.Identity().DeviceID, n.name)
	return c, events, nil
}

func isRemoteCode(err error, code string) bool {
	var re *client.RemoteError
	return errors.As(err, &re) && re.DetailCode() == code
}

// classify reports a failed connect; it returns an error only when
// retrying cannot help.
func (n *nodeHost) classify(err error) error {
	var re *client.RemoteError
	if !errors.As(err, &re) {
		n.logf("gateway unreachable: %v; retrying", err)
		return nil
	}
	d, _ := re.Details.(map[string]any)
	switch re.DetailCode() {
	case protocol.DetailPairingRequired:
		rid, _ := d["requestId"].(string)
		if rid != "" && rid != n.announced {
			n.announced = rid
			n.logf("pairing required (%v); request %s", d["reason"], rid)
			fmt.Fprintf(n.e.stdout, "Pairing request %s is waiting. Approve it on the gateway host with:\n  clawgate devices approve %s\n(on an OpenClaw gateway: openclaw devices approve %s)\n", rid, rid, rid)
		}
		return nil
	case protocol.DetailAuthBootstrapInvalid:
		return errors.New("node run: the setup code is invalid, expired or already used; ask for a new one (clawgate devices setup-code)")
	case protocol.DetailAuthDeviceTokenMismatch, protocol.DetailAuthScopeMismatch:
		n.logf("the gateway no longer accepts this node's device token; forgetting it")
		_ = n.ids.SetDeviceToken(n.url, protocol.RoleNode, "")
		if n.token == "" && n.bootstrap == "" {
			return errors.New("node run: the device token was refused and no other credential is left; re-pair with --token or --setup-code")
		}
		return nil
	case protocol.DetailAuthTokenMismatch, protocol.DetailAuthTokenMissing:
		if n.ids.DeviceToken(n.url, protocol.RoleNode) != "" {
			_ = n.ids.SetDeviceToken(n.url, protocol.RoleNode, "")
			n.logf("device token refused; retrying with the shared token")
			return nil
		}
		return fmt.Errorf("node run: %s", re.Message)
	case protocol.DetailAuthRateLimited:
		n.logf("rate limited by the gateway; waiting")
		if re.RetryAfterMs != nil {
			time.Sleep(min(time.Duration(*re.RetryAfterMs)*time.Millisecond, 5*time.Minute))
		}
		return nil
	case protocol.DetailPairingRejected:
		return errors.New("node run: the gateway rejected this node's pairing")
	}
	n.logf("connect refused: %s %s; retrying", re.Code, re.Message)
	return nil
}

// serve answers invocations until the connection ends; it returns why it
// ended.
func (n *nodeHost) serve(ctx context.Context, c *client.Client, events chan client.Event) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxNodeInvokes)
	sctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	// Ask once whether the command surface still needs approval: clawgate
	// and OpenClaw gateways both answer a node's runner inventory with the
	// request to approve while it is pending.
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.checkSurface(sctx, c)
	}()
	me := n.ids.Identity().DeviceID
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Done():
			return c.Err()
		case ev := <-events:
			switch ev.Name {
			case protocol.EventNodePairResolved:
				var p struct{ NodeID, Decision string }
				_ = json.Unmarshal(ev.Payload, &p)
				if p.NodeID == me {
					n.logf("node command surface %s", p.Decision)
				}
			case protocol.EventNodeInvokeRequest:
				var req nodeInvokeRequest
				if json.Unmarshal(ev.Payload, &req) != nil || req.ID == "" || req.NodeID != me {
					continue
				}
				select {
				case sem <- struct{}{}:
				default:
					wg.Add(1)
					go func() {
						defer wg.Done()
						n.answer(sctx, c, req, nodeResult{Error: &nodeErr{Code: "UNAVAILABLE", Message: "node busy"}})
					}()
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					n.answer(sctx, c, req, n.exec.invoke(sctx, req))
				}()
			}
		}
	}
}

func (n *nodeHost) checkSurface(ctx context.Context, c *client.Client) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.Call(cctx, "node.runnerInventory.update", map[string]any{
		"protocolFeatures": []string{"node-worker-supervisor-v6"}, "workerHost": map[string]any{"enabled": false}})
	var re *client.RemoteError
	if errors.As(err, &re) && strings.Contains(re.Message, "awaiting operator approval") {
		n.logf("%s", re.Message)
		fmt.Fprintf(n.e.stdout, "This node's commands (%s) wait for approval: %s\n", strings.Join(nodeCommands, ", "), re.Message)
	}
}

// nodeInvokeRequest is the node.invoke.request payload.
type nodeInvokeRequest struct {
	ID             string  `json:"id"`
	NodeID         string  `json:"nodeId"`
	Command        string  `json:"command"`
	ParamsJSON     *string `json:"paramsJSON"`
	TimeoutMs      int64   `json:"timeoutMs"`
	IdempotencyKey string  `json:"idempotencyKey"`
}

type nodeErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type nodeResult struct {
	Payload any
	Error   *nodeErr
}

// answer sends node.invoke.result.
func (n *nodeHost) answer(ctx context.Context, c *client.Client, req nodeInvokeRequest, r nodeResult) {
	p := map[string]any{"id": req.ID, "nodeId": req.NodeID, "ok": r.Error == nil}
	if r.Error != nil {
		p["error"] = r.Error
	} else {
		b, err := json.Marshal(r.Payload)
		if err != nil {
			p["ok"], p["error"] = false, nodeErr{Code: "UNAVAILABLE", Message: "result not encodable"}
		} else {
			p["payloadJSON"] = string(b)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.Call(cctx, "node.invoke.result", p); err != nil {
		n.logf("could not return the result of %s: %v", req.Command, err)
	}
}

// ---------------------------------------------------------------------------
// clawgate nodes: node management over the operator API.

func runNodes(ctx context.Context, args []string, e env) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(e.stderr, nodesUsage)
		if len(args) > 0 {
			return nil
		}
		return exitError{err: errors.New("nodes: no command"), silent: true}
	}
	sub, rest := args[0], args[1:]
	var argv []string
	if i := indexOf(rest, "--"); i >= 0 {
		rest, argv = rest[:i], rest[i+1:]
	}
	var f callFlags
	var params, cwd string
	var timeoutMs int64
	var approve bool
	fs := flag.NewFlagSet("nodes "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&f.url, "url", "", "gateway URL (default ws://127.0.0.1:18789)")
	fs.StringVar(&f.token, "token", "", "shared gateway token")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory")
	fs.StringVar(&params, "params", "", "invoke params as a JSON object")
	fs.Int64Var(&timeoutMs, "timeout-ms", 0, "invoke timeout (default: the gateway's 30 s)")
	fs.StringVar(&cwd, "cwd", "", "run: working directory on the node")
	fs.BoolVar(&approve, "approve", false, "run: ask an operator to approve the command first")
	f.tls.register(fs)
	var pos []string
	for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		pos, rest = append(pos, rest[0]), rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return exitError{err: err, silent: true}
	}
	pos = append(pos, fs.Args()...)
	need := func(k int, what string) error {
		if len(pos) < k {
			return fmt.Errorf("nodes %s: missing %s (see clawgate nodes -h)", sub, what)
		}
		return nil
	}
	var method string
	var p any
	switch sub {
	case "list":
		method, p = "node.list", map[string]any{}
	case "pending":
		method, p = "node.pair.list", map[string]any{}
	case "approve", "reject":
		if err := need(1, "REQUEST_ID"); err != nil {
			return err
		}
		method, p = "node.pair."+sub, map[string]any{"requestId": pos[0]}
	case "describe", "remove":
		if err := need(1, "NODE_ID"); err != nil {
			return err
		}
		method = "node.describe"
		if sub == "remove" {
			method = "node.pair.remove"
		}
		p = map[string]any{"nodeId": pos[0]}
	case "rename":
		if err := need(2, "NODE_ID NAME"); err != nil {
			return err
		}
		method, p = "node.rename", map[string]any{"nodeId": pos[0], "displayName": strings.Join(pos[1:], " ")}
	case "invoke":
		if err := need(2, "NODE_ID COMMAND"); err != nil {
			return err
		}
		ip := map[string]any{"nodeId": pos[0], "command": pos[1], "idempotencyKey": newIdempotencyKey()}
		if params != "" {
			var obj any
			if err := json.Unmarshal([]byte(params), &obj); err != nil {
				return fmt.Errorf("nodes invoke: --params must be JSON: %w", err)
			}
			ip["params"] = obj
		}
		if timeoutMs > 0 {
			ip["timeoutMs"] = timeoutMs
		}
		method, p = "node.invoke", ip
	case "run":
		if err := need(1, "NODE_ID"); err != nil {
			return err
		}
		if len(argv) == 0 {
			return errors.New("nodes run: missing the command after --")
		}
		return runOnNode(ctx, f, pos[0], argv, cwd, timeoutMs, approve, e)
	default:
		fmt.Fprint(e.stderr, nodesUsage)
		return exitError{err: fmt.Errorf("nodes: unknown command %q", sub), silent: true}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second+time.Duration(timeoutMs)*time.Millisecond)
	defer cancel()
	res, err := callOnce(ctx, f, method, p, e)
	if err != nil {
		return reportCallError(err, f.json, e)
	}
	if !f.json && sub == "list" {
		return printNodeList(e, res)
	}
	if !f.json && sub == "pending" {
		return printNodePending(e, res)
	}
	var v any
	_ = json.Unmarshal(res, &v)
	out, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(e.stdout, string(out))
	return nil
}

func indexOf(l []string, s string) int {
	for i, x := range l {
		if x == s {
			return i
		}
	}
	return -1
}

func newIdempotencyKey() string {
	return "cli-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(rand.Uint64(), 36)
}

func printNodeList(e env, raw json.RawMessage) error {
	var l struct {
		Nodes []struct {
			NodeID        string   `json:"nodeId"`
			DisplayName   string   `json:"displayName"`
			Platform      string   `json:"platform"`
			Commands      []string `json:"commands"`
			ApprovalState string   `json:"approvalState"`
			PendingID     string   `json:"pendingRequestId"`
			Connected     bool     `json:"connected"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return fmt.Errorf("nodes list: unexpected answer: %w", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAME\tPLATFORM\tCONNECTED\tAPPROVAL\tCOMMANDS")
	for _, nd := range l.Nodes {
		appr := nd.ApprovalState
		if nd.PendingID != "" {
			appr += " (" + nd.PendingID + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", nd.NodeID, orDash(nd.DisplayName), orDash(nd.Platform), nd.Connected,
			appr, strings.Join(nd.Commands, ","))
	}
	return tw.Flush()
}

func printNodePending(e env, raw json.RawMessage) error {
	var l struct {
		Pending []struct {
			RequestID string   `json:"requestId"`
			NodeID    string   `json:"nodeId"`
			Name      string   `json:"displayName"`
			Commands  []string `json:"commands"`
			Scopes    []string `json:"requiredApproveScopes"`
		} `json:"pending"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return fmt.Errorf("nodes pending: unexpected answer: %w", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tNODE\tNAME\tCOMMANDS\tAPPROVER NEEDS")
	for _, p := range l.Pending {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.RequestID, short(p.NodeID), orDash(p.Name), strings.Join(p.Commands, ","),
			strings.Join(p.Scopes, "+"))
	}
	if len(l.Pending) > 0 {
		fmt.Fprintln(tw, "\napprove with: clawgate nodes approve REQUEST_ID")
	}
	return tw.Flush()
}

// runOnNode runs argv on a node with system.run; with approve it first
// asks an operator through exec.approval.request and runs under that
// approval.
func runOnNode(ctx context.Context, f callFlags, nodeID string, argv []string, cwd string, timeoutMs int64, approve bool, e env) error {
	c, err := dialAdmin(ctx, f, e)
	if err != nil {
		return reportCallError(err, f.json, e)
	}
	defer c.Close()
	params := map[string]any{"command": argv}
	if cwd != "" {
		params["cwd"] = cwd
	}
	if timeoutMs > 0 {
		params["timeoutMs"] = timeoutMs
	}
	if approve {
		text := strings.Join(argv, " ")
		fmt.Fprintf(e.stderr, "clawgate: asking an operator to approve %q on %s…\n", text, short(nodeID))
		var cwdV any
		if cwd != "" {
			cwdV = cwd
		}
		res, err := c.Call(ctx, "exec.approval.request", map[string]any{"host": "node", "nodeId": nodeID, "command": text,
			"systemRunPlan": map[string]any{"argv": argv, "cwd": cwdV, "commandText": text, "agentId": nil, "sessionKey": nil}})
		if err != nil {
			return reportCallError(err, f.json, e)
		}
		var d struct {
			ID       string  `json:"id"`
			Decision *string `json:"decision"`
		}
		_ = json.Unmarshal(res, &d)
		if d.Decision == nil || *d.Decision == "deny" {
			what := "expired (no operator with operator.approvals answered)"
			if d.Decision != nil {
				what = "denied"
			}
			return fmt.Errorf("nodes run: approval %s %s", d.ID, what)
		}
		params["approved"], params["runId"] = true, d.ID
	}
	ip := map[string]any{"nodeId": nodeID, "command": "system.run", "params": params, "idempotencyKey": newIdempotencyKey()}
	if timeoutMs > 0 {
		ip["timeoutMs"] = timeoutMs + 5000
	}
	res, err := c.Call(ctx, "node.invoke", ip)
	if err != nil {
		return reportCallError(err, f.json, e)
	}
	var r struct {
		Payload struct {
			ExitCode *int   `json:"exitCode"`
			Stdout   string `json:"stdout"`
			Stderr   string `json:"stderr"`
			Error    string `json:"error"`
			TimedOut bool   `json:"timedOut"`
		} `json:"payload"`
	}
	_ = json.Unmarshal(res, &r)
	if f.json {
		var v any
		_ = json.Unmarshal(res, &v)
		out, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(e.stdout, string(out))
	} else {
		fmt.Fprint(e.stdout, r.Payload.Stdout)
		fmt.Fprint(e.stderr, r.Payload.Stderr)
	}
	switch {
	case r.Payload.Error != "":
		return fmt.Errorf("nodes run: %s", r.Payload.Error)
	case r.Payload.TimedOut:
		return errors.New("nodes run: timed out")
	case r.Payload.ExitCode != nil && *r.Payload.ExitCode != 0:
		return exitError{err: fmt.Errorf("exit status %d", *r.Payload.ExitCode), silent: true}
	}
	return nil
}

// ---------------------------------------------------------------------------
// clawgate devices setup-code.

type setupCodeFlags struct {
	publicURL, profile string
	noQR               bool
}

func (s *setupCodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.publicURL, "public-url", "", "setup-code: the gateway URL the new device will dial (e.g. wss://host:18789)")
	fs.StringVar(&s.profile, "profile", "node", "setup-code: node (a headless node) or limited (an operator with read/write/approvals)")
	fs.BoolVar(&s.noQR, "no-qr", false, "setup-code: do not print the QR code")
}

// runSetupCode asks the running gateway for a single-use setup code and
// prints it, with the command to use it and a terminal QR code. For a
// wss:// URL served with this machine's certificate, the code also pins
// that certificate.
func runSetupCode(ctx context.Context, f callFlags, sc setupCodeFlags, e env) error {
	if sc.profile != "node" && sc.profile != "limited" {
		return fmt.Errorf("devices setup-code: --profile must be node or limited, not %q", sc.profile)
	}
	params := map[string]any{"bootstrapProfile": sc.profile}
	if sc.publicURL != "" {
		params["publicUrl"] = sc.publicURL
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	raw, err := callOnce(ctx, f, "device.pair.setupCode", params, e)
	if err != nil {
		return reportCallError(err, f.json, e)
	}
	var res struct {
		SetupCode   string `json:"setupCode"`
		GatewayURL  string `json:"gatewayUrl"`
		ExpiresAtMs int64  `json:"expiresAtMs"`
		Access      string `json:"access"`
	}
	if err := json.Unmarshal(raw, &res); err != nil || res.SetupCode == "" {
		return errors.New("devices setup-code: unexpected answer from the gateway")
	}
	code := res.SetupCode
	if strings.HasPrefix(res.GatewayURL, "wss://") {
		if p, err := resolvePaths(f.stateDir, e); err == nil {
			if leaf, err := tlspin.ReadCertificate(p.tlsCert()); err == nil {
				if sp, err := gateway.DecodeSetupCode(code); err == nil {
					sp.TLSFingerprint = tlspin.CertFingerprint(leaf).String()
					code = gateway.EncodeSetupCode(sp)
				}
			}
		}
	}
	if f.json {
		out, _ := json.MarshalIndent(map[string]any{"setupCode": code, "gatewayUrl": res.GatewayURL,
			"expiresAtMs": res.ExpiresAtMs, "access": res.Access}, "", "  ")
		fmt.Fprintln(e.stdout, string(out))
		return nil
	}
	exp := time.UnixMilli(res.ExpiresAtMs)
	fmt.Fprintf(e.stdout, "Setup code for %s (access: %s; single use; expires %s, in %s):\n\n%s\n\n",
		res.GatewayURL, res.Access, exp.Format("15:04:05"), time.Until(exp).Round(time.Minute), code)
	fmt.Fprintf(e.stdout, "On the new node run:\n  clawgate node run --setup-code %s\n", code)
	if u, err := url.Parse(res.GatewayURL); err == nil && client.IsLoopbackHost(u.Hostname()) {
		fmt.Fprintln(e.stdout, "\nThe code points at this host's loopback address: it works only for a node on this machine.\n"+
			"For another machine pass --public-url (a wss:// or tailnet URL it can reach).")
	}
	if !sc.noQR {
		q, err := qrcode.New(code, qrcode.Low)
		if err == nil {
			fmt.Fprintln(e.stdout)
			fmt.Fprint(e.stdout, q.ToSmallString(false))
		}
	}
	return nil
}
