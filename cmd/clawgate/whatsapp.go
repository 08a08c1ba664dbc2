package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/skip2/go-qrcode"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/gateway"
	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/whatsapp"
)

// whatsappAccountID is an account id that is safe as a directory name.
var whatsappAccountID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// whatsappSessionDir is where an account's session lives.
func whatsappSessionDir(a config.WhatsAppAccount, stateDir string) (id, dir string, err error) {
	id = a.ID
	if id == "" {
		id = "default"
	}
	if !whatsappAccountID.MatchString(id) {
		return "", "", fmt.Errorf("id %q: use letters, digits, '-' and '_' (it names the session directory)", id)
	}
	dir = a.SessionDir
	switch {
	case dir == "":
		dir = filepath.Join(stateDir, "whatsapp", id)
	case !filepath.IsAbs(dir):
		return "", "", fmt.Errorf("sessionDir %q must be an absolute path", dir)
	}
	return id, filepath.Clean(dir), nil
}

// checkWhatsAppPolicy refuses allowlist entries that could never match a
// WhatsApp sender (a number without "+", a name).
func checkWhatsAppPolicy(p config.AccountPolicy) error {
	for _, field := range []struct {
		name    string
		entries []string
	}{{"allowFrom", p.AllowFrom}, {"owners", p.Owners}} {
		for _, id := range field.entries {
			if id == providers.Wildcard && field.name == "allowFrom" {
				continue
			}
			if err := whatsapp.ValidAllowEntry(id); err != nil {
				return fmt.Errorf("%s: %w", field.name, err)
			}
		}
	}
	for _, id := range p.AllowTo {
		if id == providers.Wildcard {
			continue
		}
		if err := whatsapp.ValidDestination(id); err != nil {
			return fmt.Errorf("allowTo: %w", err)
		}
	}
	return nil
}

// whatsappAccount builds one account. Its provider holds the session lock
// from here on: a second gateway on the host fails at this point.
func whatsappAccount(a config.WhatsAppAccount, stateDir string, e env, log *slog.Logger) (providers.Account, *whatsapp.Provider, error) {
	id, dir, err := whatsappSessionDir(a, stateDir)
	if err != nil {
		return providers.Account{}, nil, err
	}
	if err := checkWhatsAppPolicy(a.AccountPolicy); err != nil {
		return providers.Account{}, nil, err
	}
	if a.QueueSize < 0 {
		return providers.Account{}, nil, errors.New("queueSize must not be negative")
	}
	p, err := whatsapp.New(whatsapp.Config{Dir: dir, Logger: log, QueueSize: a.QueueSize, Test: e.whatsappTest})
	if err != nil {
		return providers.Account{}, nil, err
	}
	return providers.Account{ID: id, Label: a.Label, Provider: p, Policy: policy(a.AccountPolicy, nil),
		TokenSource: "session"}, p, nil
}

// checkWhatsAppHelper: a configured WhatsApp account needs the
// clawgate-whatsapp helper where the gateway looks for it.
func (d *doctor) checkWhatsAppHelper() {
	if !d.cfgOK || len(d.cfg.Channels.WhatsApp) == 0 {
		return
	}
	d.checkHelper("whatsapp-helper", "WhatsApp", whatsapp.HelperName)
}

// whatsappLogins is the gateway.WebLoginer of the configured WhatsApp
// accounts, in configuration order.
type whatsappLogins struct {
	ids       []string
	providers []*whatsapp.Provider
}

var _ gateway.WebLoginer = (*whatsappLogins)(nil)

func (w *whatsappLogins) add(id string, p *whatsapp.Provider) {
	w.ids = append(w.ids, id)
	w.providers = append(w.providers, p)
}

func (w *whatsappLogins) close() {
	for _, p := range w.providers {
		p.Close()
	}
}

func (w *whatsappLogins) find(channel, account string) (string, *whatsapp.Provider, error) {
	if channel != "" && channel != whatsapp.Name {
		return "", nil, gateway.ErrWebLoginUnsupported
	}
	for i, id := range w.ids {
		if account == "" || account == id {
			return id, w.providers[i], nil
		}
	}
	return "", nil, providers.ErrUnknownAccount
}

func webLoginState(id string, st whatsapp.LoginStatus) gateway.WebLoginState {
	out := gateway.WebLoginState{Channel: whatsapp.Name, AccountID: id, Connected: st.Connected, Message: st.Message}
	switch st.State {
	case whatsapp.LinkUnknown:
		out.Status = "starting"
	case whatsapp.LinkLinked:
		out.Status = "linked"
		if st.Connected {
			out.Status = "connected"
		}
	case whatsapp.LinkQR:
		out.Status, out.QR = "qr", st.QR
	default:
		out.Status = string(st.State) // needs-relink, paired, timeout, failed
	}
	return out
}

func loginErr(err error) error {
	if errors.Is(err, whatsapp.ErrNotRunning) {
		return gateway.ErrWebLoginNotRunning
	}
	return err
}

// WebLoginStart implements gateway.WebLoginer.
func (w *whatsappLogins) WebLoginStart(ctx context.Context, channel, account string, force bool) (gateway.WebLoginState, error) {
	id, p, err := w.find(channel, account)
	if err != nil {
		return gateway.WebLoginState{}, err
	}
	st, err := p.StartLogin(ctx, force)
	if err != nil {
		return gateway.WebLoginState{}, loginErr(err)
	}
	return webLoginState(id, st), nil
}

// WebLoginWait implements gateway.WebLoginer.
func (w *whatsappLogins) WebLoginWait(ctx context.Context, channel, account, currentQR string) (gateway.WebLoginState, error) {
	id, p, err := w.find(channel, account)
	if err != nil {
		return gateway.WebLoginState{}, err
	}
	return webLoginState(id, p.WaitLogin(ctx, currentQR)), nil
}

// WebLoginStatus implements gateway.WebLoginer.
func (w *whatsappLogins) WebLoginStatus(channel, account string) (gateway.WebLoginState, error) {
	id, p, err := w.find(channel, account)
	if err != nil {
		return gateway.WebLoginState{}, err
	}
	return webLoginState(id, p.LoginStatus()), nil
}

// WatchWebLogin implements gateway.WebLoginer.
func (w *whatsappLogins) WatchWebLogin(fn func(gateway.WebLoginState)) (stop func()) {
	stops := make([]func(), 0, len(w.providers))
	for i, p := range w.providers {
		id := w.ids[i]
		stops = append(stops, p.WatchLogin(func(st whatsapp.LoginStatus) { fn(webLoginState(id, st)) }))
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// loginHub is what the gateway gets when WhatsApp is configured: the
// Supervisor, plus QR login for web.login.start/wait.
type loginHub struct {
	*providers.Supervisor
	*whatsappLogins
}

// channelsLoginFlags are `clawgate channels login`'s flags.
type channelsLoginFlags struct {
	account   string
	force     bool
	timeout   time.Duration
	config    string
	call      callFlags
	noClear   bool
	printCode bool
}

func runChannels(ctx context.Context, args []string, e env) error {
	if len(args) == 0 || args[0] != "login" {
		return errors.New("channels: usage: clawgate channels login whatsapp [--account ID] [--force]")
	}
	return runChannelsLogin(ctx, args[1:], e)
}

// runChannelsLogin links a WhatsApp account by QR code. With no gateway
// running it opens the session itself; when a gateway holds the session it
// asks that gateway (web.login.start/wait, admin scope), which is the only
// process allowed to open it.
func runChannelsLogin(ctx context.Context, args []string, e env) error {
	channel, rest := splitMethod(args)
	var f channelsLoginFlags
	fs := flag.NewFlagSet("channels login", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&f.account, "account", "", "account id (default: the first configured WhatsApp account)")
	fs.BoolVar(&f.force, "force", false, "unlink the current device and link a new one")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up after this long")
	fs.StringVar(&f.config, "config", "", "config file (default <state dir>/clawgate.json)")
	fs.BoolVar(&f.noClear, "no-clear", false, "do not clear the terminal between codes")
	fs.BoolVar(&f.printCode, "print-code", false, "also print each code as text (for another QR renderer)")
	fs.StringVar(&f.call.url, "url", "", "gateway URL, when a gateway holds the session (default ws://127.0.0.1:<port>)")
	fs.StringVar(&f.call.token, "token", "", "shared gateway token (default: environment, then the local state dir)")
	fs.StringVar(&f.call.stateDir, "state-dir", "", "state directory")
	f.call.tls.register(fs)
	if err := fs.Parse(rest); err != nil {
		return exitError{err: err, silent: true}
	}
	if channel == "" && fs.NArg() > 0 {
		channel = fs.Arg(0)
	}
	if channel != whatsapp.Name {
		return fmt.Errorf("channels login: only %q links by QR code (got %q)", whatsapp.Name, channel)
	}
	p, err := resolvePaths(f.call.stateDir, e)
	if err != nil {
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
	acct, err := pickWhatsApp(cfg.Channels.WhatsApp, f.account)
	if err != nil {
		return err
	}
	id, dir, err := whatsappSessionDir(acct, p.stateDir)
	if err != nil {
		return fmt.Errorf("config: channels.whatsapp %q: %w", acct.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	show := newQRScreen(e.stdout, !f.noClear, f.printCode)
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	prov, err := whatsapp.New(whatsapp.Config{Dir: dir, Logger: log, Test: e.whatsappTest})
	if errors.Is(err, whatsapp.ErrSessionLocked) {
		fmt.Fprintln(e.stderr, "A running gateway holds the WhatsApp session; linking through it.")
		return loginThroughGateway(ctx, f, id, show, e)
	}
	if err != nil {
		return err
	}
	defer prov.Close()
	err = prov.Link(ctx, f.force, func(st whatsapp.LoginStatus) {
		if st.State == whatsapp.LinkQR {
			show.code(st.QR, time.Until(st.QRExpires))
		}
	})
	switch {
	case errors.Is(err, whatsapp.ErrAlreadyLinked):
		fmt.Fprintln(e.stdout, "WhatsApp is already linked ("+prov.LoginStatus().Account+"). Use --force to link another device.")
		return nil
	case errors.Is(err, whatsapp.ErrQRTimeout):
		return errors.New("channels login: every QR code expired without a scan; run the command again")
	case err != nil:
		return fmt.Errorf("channels login: %w", err)
	}
	fmt.Fprintf(e.stdout, "WhatsApp linked as %s. Start the gateway (clawgate gateway) to use it.\n", prov.LoginStatus().Account)
	return nil
}

func pickWhatsApp(accts []config.WhatsAppAccount, id string) (config.WhatsAppAccount, error) {
	if len(accts) == 0 {
		return config.WhatsAppAccount{}, errors.New(`channels login: no WhatsApp account in the config; add "channels": {"whatsapp": [{"allowFrom": ["+<your number>"]}]}`)
	}
	for _, a := range accts {
		aid := a.ID
		if aid == "" {
			aid = "default"
		}
		if id == "" || id == aid {
			return a, nil
		}
	}
	return config.WhatsAppAccount{}, fmt.Errorf("channels login: no WhatsApp account %q in the config", id)
}

// webLoginReply is the part of web.login.start/wait's result the CLI reads.
type webLoginReply struct {
	QRDataURL string `json:"qrDataUrl"`
	QRCode    string `json:"qrCode"`
	Message   string `json:"message"`
	Connected bool   `json:"connected"`
	Status    string `json:"status"`
}

// loginThroughGateway drives web.login.start/wait on the running gateway
// and draws each new code.
func loginThroughGateway(ctx context.Context, f channelsLoginFlags, account string, show *qrScreen, e env) error {
	c, err := dialAdmin(ctx, f.call, e)
	if err != nil {
		return fmt.Errorf("channels login: reach the gateway: %w", err)
	}
	defer c.Close()
	call := func(method string, params map[string]any) (webLoginReply, error) {
		var r webLoginReply
		raw, err := c.Call(ctx, method, params)
		if err != nil {
			var re *client.RemoteError
			if errors.As(err, &re) {
				return r, fmt.Errorf("channels login: %s: %s", method, re.Message)
			}
			return r, fmt.Errorf("channels login: %s: %w", method, err)
		}
		return r, json.Unmarshal(raw, &r)
	}
	r, err := call("web.login.start", map[string]any{"channel": whatsapp.Name, "accountId": account,
		"force": f.force, "timeoutMs": 30000})
	if err != nil {
		return err
	}
	shown := ""
	for {
		switch {
		case r.Connected:
			if shown == "" && !f.force {
				fmt.Fprintln(e.stdout, "WhatsApp is already linked. Use --force to link another device.")
			} else {
				fmt.Fprintln(e.stdout, "WhatsApp linked; the gateway is connected.")
			}
			return nil
		case r.Status == "timeout":
			return errors.New("channels login: every QR code expired without a scan; run the command again")
		case r.Status == "failed":
			return fmt.Errorf("channels login: %s", r.Message)
		}
		if r.QRCode != "" && r.QRCode != shown {
			shown = r.QRCode
			show.code(r.QRCode, 0)
		}
		if ctx.Err() != nil {
			return errors.New("channels login: timed out")
		}
		params := map[string]any{"channel": whatsapp.Name, "accountId": account, "timeoutMs": 60000}
		if r.QRDataURL != "" {
			params["currentQrDataUrl"] = r.QRDataURL
		}
		next, err := call("web.login.wait", params)
		if err != nil {
			return err
		}
		if next.QRDataURL == "" {
			next.QRDataURL = r.QRDataURL // unchanged
		}
		r = next
	}
}

// qrScreen draws QR codes in the terminal, replacing the previous one.
type qrScreen struct {
	w         io.Writer
	clear     bool
	printCode bool
	n         int
}

func newQRScreen(w io.Writer, clear, printCode bool) *qrScreen {
	if f, ok := w.(*os.File); !ok || !isTerminal(f) {
		clear = false
	}
	return &qrScreen{w: w, clear: clear, printCode: printCode}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (s *qrScreen) code(code string, valid time.Duration) {
	q, err := qrcode.New(code, qrcode.Medium)
	if err != nil {
		fmt.Fprintln(s.w, "could not draw the QR code:", err)
		return
	}
	s.n++
	if s.clear {
		fmt.Fprint(s.w, "\x1b[H\x1b[2J")
	}
	when := ""
	if valid > 0 {
		when = fmt.Sprintf(", valid for %ds", int(valid.Round(time.Second).Seconds()))
	}
	fmt.Fprintf(s.w, "Scan with WhatsApp on your phone: Settings > Linked devices > Link a device (code %d%s).\n\n", s.n, when)
	fmt.Fprint(s.w, q.ToSmallString(false))
	if s.printCode {
		fmt.Fprintln(s.w, "\ncode: "+code)
	}
	fmt.Fprintln(s.w, "\nA new code replaces this one when it expires. Anyone who scans it links their WhatsApp here: keep it private.")
}
