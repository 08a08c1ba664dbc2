package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/config"
	"github.com/clawgate/clawgate/ipc"
	"github.com/clawgate/clawgate/tsnode/tsipc"
)

// severity orders doctor findings; only critical changes the exit status.
type severity int

const (
	sevOK severity = iota
	sevInfo
	sevWarn
	sevCritical
)

func (s severity) String() string {
	return [...]string{"ok", "info", "warning", "critical"}[s]
}

func (s severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *severity) UnmarshalText(b []byte) error {
	for v := sevOK; v <= sevCritical; v++ {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("unknown severity %q", b)
}

// finding is one result of `clawgate doctor`. Nothing in it is secret:
// tokens appear only as their length and source.
type finding struct {
	ID       string   `json:"id"`
	Severity severity `json:"severity"`
	Title    string   `json:"title"`
	Detail   string   `json:"detail,omitempty"`
	Fix      string   `json:"fix,omitempty"`
}

// doctorReport is the --json output.
type doctorReport struct {
	OK        bool      `json:"ok"`
	StateDir  string    `json:"stateDir"`
	Config    string    `json:"config"`
	Listen    string    `json:"listen"`
	Critical  int       `json:"critical"`
	Warnings  int       `json:"warnings"`
	Findings  []finding `json:"findings"`
	CheckedAt string    `json:"checkedAt"`
}

// doctor audits one state directory and configuration the way the gateway
// would run it.
type doctor struct {
	e        env
	p        paths
	cfgPath  string
	cfg      config.File
	cfgOK    bool
	bind     string // --bind or config
	port     int
	tls      bool   // --tls or --tls-cert given
	keyFile  string // TLS key to check, if any
	certFile string
	procNet  string // /proc/net, or a test directory
	euid     int
	findings []finding
}

func runDoctor(ctx context.Context, args []string, e env) error {
	d, asJSON, err := newDoctor(args, e)
	if err != nil {
		return err
	}
	d.runChecks(ctx)
	return d.report(asJSON)
}

// newDoctor parses doctor's flags.
func newDoctor(args []string, e env) (*doctor, bool, error) {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	stateDir := fs.String("state-dir", "", "state directory to audit (default as for the gateway)")
	cfgPath := fs.String("config", "", "config file (default <state-dir>/clawgate.json)")
	bind := fs.String("bind", "", "the gateway's --bind, if it is given one")
	port := fs.Int("port", 0, "the gateway's --port, if it is given one")
	useTLS := fs.Bool("tls", false, "the gateway runs with --tls")
	certFile := fs.String("tls-cert", "", "the gateway's --tls-cert")
	keyFile := fs.String("tls-key", "", "the gateway's --tls-key")
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, `usage: clawgate doctor [flags]

Audits the gateway's configuration and files like a security review and
explains each finding. Give the same --bind/--port/--tls flags the gateway
runs with. Exits non-zero when a finding is critical.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, false, exitError{err: err, silent: true}
	}
	if fs.NArg() > 0 {
		return nil, false, fmt.Errorf("doctor: unexpected argument %q", fs.Arg(0))
	}
	p, err := resolvePaths(*stateDir, e)
	if err != nil {
		return nil, false, err
	}
	d := &doctor{e: e, p: p, cfgPath: *cfgPath, bind: *bind, port: *port,
		tls: *useTLS || *certFile != "", certFile: *certFile, keyFile: *keyFile,
		procNet: "/proc/net", euid: os.Geteuid()}
	if d.cfgPath == "" {
		d.cfgPath = p.configFile()
	}
	return d, *asJSON, nil
}

func (d *doctor) add(id string, sev severity, title, detail, fix string) {
	d.findings = append(d.findings, finding{ID: id, Severity: sev, Title: title, Detail: detail, Fix: fix})
}

func (d *doctor) runChecks(ctx context.Context) {
	d.checkStateDir()
	d.checkConfig()
	d.checkWhatsAppHelper() // whatsapp.go
	d.resolveListen()
	d.checkBind()
	d.checkToken()
	d.checkTLS()
	d.checkOrigins()
	d.checkHosts()
	d.checkTailnet()
	d.checkPorts()
	d.checkRunning(ctx)
}

func (d *doctor) listenAddr() string {
	return netip.AddrPortFrom(d.bindAddr(), uint16(d.port)).String()
}

func (d *doctor) report(asJSON bool) error {
	var crit, warn int
	for _, f := range d.findings {
		switch f.Severity {
		case sevCritical:
			crit++
		case sevWarn:
			warn++
		}
	}
	if asJSON {
		enc := json.NewEncoder(d.e.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(doctorReport{OK: crit == 0, StateDir: d.p.stateDir, Config: d.cfgPath, Listen: d.listenAddr(),
			Critical: crit, Warnings: warn, Findings: d.findings, CheckedAt: time.Now().UTC().Format(time.RFC3339)})
	} else {
		w := d.e.stdout
		fmt.Fprintf(w, "clawgate doctor: state %s, config %s, listen %s\n\n", d.p.stateDir, d.cfgPath, d.listenAddr())
		for _, f := range d.findings {
			fmt.Fprintf(w, "%-9s %-22s %s\n", strings.ToUpper(f.Severity.String()), f.ID, f.Title)
			if f.Detail != "" {
				fmt.Fprintf(w, "%33s%s\n", "", f.Detail)
			}
			if f.Fix != "" {
				fmt.Fprintf(w, "%33sfix: %s\n", "", f.Fix)
			}
		}
		fmt.Fprintf(w, "\n%d critical, %d warnings, %d findings in all\n", crit, warn, len(d.findings))
	}
	if crit > 0 {
		return exitError{err: fmt.Errorf("doctor: %d critical findings", crit), silent: true}
	}
	return nil
}

// checkStateDir: the directory and everything in it must be private to the
// gateway's user; secrets (token, keys, device identities, tailnet state)
// are critical when others can read them.
func (d *doctor) checkStateDir() {
	dir := d.p.stateDir
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.add("state-dir", sevInfo, "The state directory does not exist yet",
			dir+" is created with mode 0700 on the gateway's first start.", "")
		return
	case err != nil:
		d.add("state-dir", sevWarn, "The state directory cannot be inspected", err.Error(), "run doctor as the gateway's user (or root)")
		return
	case st.Mode()&fs.ModeSymlink != 0:
		d.add("state-dir-symlink", sevWarn, "The state directory is a symbolic link",
			dir+" points elsewhere; whoever controls the link controls where secrets are written.", "use a real directory")
		if st, err = os.Stat(dir); err != nil {
			return
		}
	}
	if !st.IsDir() {
		d.add("state-dir", sevCritical, "The state path is not a directory", dir, "")
		return
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		d.add("state-dir-open", sevCritical, "The state directory is open to other users",
			fmt.Sprintf("%s has mode %04o; it holds the gateway token, keys and the device database, and the gateway refuses to start with it.", dir, perm),
			"chmod 700 "+shellQuote(dir))
	} else {
		d.add("state-dir-mode", sevOK, "The state directory is private (0700)", dir, "")
	}
	if uid, ok := fileUID(st); ok {
		if uid == 0 && d.euid == 0 {
			d.add("state-owner-root", sevWarn, "The state directory belongs to root",
				"The gateway seems to run as root; it needs no privileges at all.",
				"run it as a dedicated user: clawgate service install (systemd DynamicUser, or the _clawgate user on macOS)")
		} else if uid != d.euid && d.euid != 0 {
			d.add("state-owner", sevWarn, "The state directory belongs to another user",
				fmt.Sprintf("%s is owned by uid %d, doctor runs as uid %d: the findings below may be incomplete.", dir, uid, d.euid), "")
		}
	}
	d.checkStateFiles(dir)
}

// secretFile reports whether a state file holds a secret.
func secretFile(rel string) bool {
	base := filepath.Base(rel)
	switch {
	case base == "gateway.token", strings.HasSuffix(base, ".key"), strings.HasSuffix(base, ".token"),
		strings.HasPrefix(rel, "identity"+string(filepath.Separator)),
		strings.HasPrefix(rel, "tls"+string(filepath.Separator)) && strings.Contains(base, "key"),
		strings.Contains(rel, "tailscale"), strings.Contains(rel, "tsnet"), strings.HasSuffix(base, ".state"),
		base == "clawgate.db", strings.HasSuffix(base, ".backup"):
		return true
	}
	return false
}

func (d *doctor) checkStateFiles(dir string) {
	var openSecrets, openOther, links []string
	n := 0
	_ = filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return nil
		}
		if n++; n > 10000 {
			return filepath.SkipAll
		}
		rel, _ := filepath.Rel(dir, path)
		if de.Type()&fs.ModeSymlink != 0 {
			links = append(links, rel)
			return nil
		}
		info, err := de.Info()
		if err != nil {
			return nil
		}
		perm := info.Mode().Perm()
		if perm&0o077 == 0 {
			return nil
		}
		desc := fmt.Sprintf("%s (%04o)", rel, perm)
		if !de.IsDir() && secretFile(rel) {
			openSecrets = append(openSecrets, desc)
		} else {
			openOther = append(openOther, desc)
		}
		return nil
	})
	if len(openSecrets) > 0 {
		d.add("secret-file-mode", sevCritical, "Secret files are readable or writable by other users",
			strings.Join(openSecrets, ", ")+" in "+dir+": tokens, private keys and device records must be 0600.",
			"chmod 600 the files (and chmod 700 "+shellQuote(dir)+")")
	} else {
		d.add("secret-files", sevOK, "Token, keys and database are private", "", "")
	}
	if len(openOther) > 0 {
		d.add("state-file-mode", sevWarn, "Files in the state directory are open to other users",
			strings.Join(openOther, ", "), "chmod -R go= "+shellQuote(dir))
	}
	if len(links) > 0 {
		d.add("state-symlinks", sevWarn, "The state directory contains symbolic links",
			strings.Join(links, ", ")+": a link can send the gateway's writes outside the state directory.", "replace them with regular files")
	}
}

// checkConfig: the file parses as the gateway would parse it, and only
// the gateway's user can change it.
func (d *doctor) checkConfig() {
	cfg, err := config.Load(d.cfgPath)
	if err != nil {
		d.add("config-invalid", sevCritical, "The config file does not load; the gateway will not start", err.Error(), "fix or remove "+shellQuote(d.cfgPath))
		d.cfg = config.File{Version: config.CurrentVersion}
		return
	}
	d.cfg, d.cfgOK = cfg, true
	st, err := os.Stat(d.cfgPath)
	if err != nil {
		d.add("config", sevInfo, "No config file; defaults apply", d.cfgPath, "")
		return
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		d.add("config-writable", sevCritical, "Other users can change the config file",
			fmt.Sprintf("%s has mode %04o: whoever can write it chooses the bind address and the allowed origins.", d.cfgPath, perm),
			"chmod 600 "+shellQuote(d.cfgPath))
	} else if perm&0o044 != 0 {
		d.add("config-readable", sevInfo, "Other users can read the config file",
			fmt.Sprintf("%s has mode %04o; it holds no secret, but 0600 is tidier.", d.cfgPath, perm), "chmod 600 "+shellQuote(d.cfgPath))
	} else {
		d.add("config", sevOK, "The config file loads and is private", d.cfgPath, "")
	}
}

// resolveListen applies the gateway's precedence: flags over the config
// over the defaults.
func (d *doctor) resolveListen() {
	if d.bind == "" {
		d.bind = d.cfg.Gateway.Bind
	}
	if d.port == 0 {
		d.port = d.cfg.Gateway.Port
	}
	if d.port == 0 {
		d.port = config.DefaultPort
	}
}

// bindAddr is the address the bind names (the unspecified address for
// "lan"); an unparsable bind reads as unspecified, the worst case.
func (d *doctor) bindAddr() netip.Addr {
	switch d.bind {
	case "", "loopback", "localhost":
		return netip.MustParseAddr("127.0.0.1")
	case "lan", "all":
		return netip.IPv4Unspecified()
	}
	a, err := netip.ParseAddr(d.bind)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return a
}

func (d *doctor) remote() bool { return !d.bindAddr().Unmap().IsLoopback() }

// checkBind: beyond loopback the gateway must speak TLS, and remote peers
// then meet signed devices, pairing approval, the token and the limiter.
func (d *doctor) checkBind() {
	addr := d.listenAddr()
	switch {
	case !d.remote():
		d.add("bind-loopback", sevOK, "The gateway listens on loopback only",
			addr+": reach it from elsewhere through the tailnet or an SSH tunnel (ssh -N -L "+strconv.Itoa(d.port)+":127.0.0.1:"+strconv.Itoa(d.port)+" host).", "")
	case !d.tls:
		d.add("plaintext-bind", sevCritical, "Plaintext listener beyond loopback",
			addr+" without TLS would send the token and every message across the network in the clear; the gateway refuses it unless forced.",
			"add --tls (clients pin the fingerprint from: clawgate tls fingerprint), or bind loopback and use the tailnet or an SSH tunnel")
	default:
		d.add("bind-remote-tls", sevInfo, "The gateway listens beyond loopback, over TLS",
			addr+": remote peers need a signed device, pairing approval and the token; failed attempts are rate limited.", "")
	}
	if d.bindAddr().IsUnspecified() {
		d.add("bind-all-interfaces", sevWarn, "The gateway listens on every interface",
			"Interfaces added later (a VPN, a public address) are exposed too.", "bind the one LAN address clients use")
	}
}

// checkToken: where the shared token comes from and whether it is strong
// enough. The value is never printed.
func (d *doctor) checkToken() {
	tok, source := envToken(d.e), "the environment"
	if tok == "" {
		file := d.p.tokenFile()
		if d.cfg.Gateway.TokenFile != "" {
			file = d.cfg.Gateway.TokenFile
		}
		source = file
		st, err := os.Stat(file)
		if errors.Is(err, fs.ErrNotExist) {
			d.add("token", sevInfo, "No token yet", "The gateway generates a 256-bit token in "+file+" (0600) on first start.", "")
			return
		}
		if err != nil {
			d.add("token", sevWarn, "The token file cannot be inspected", err.Error(), "")
			return
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			d.add("token-file-mode", sevCritical, "The token file is open to other users",
				fmt.Sprintf("%s has mode %04o: anyone who reads it is the gateway's operator.", file, perm), "chmod 600 "+shellQuote(file))
			return
		}
		tok, err = config.ReadSecret(file)
		if err != nil {
			d.add("token", sevWarn, "The token file cannot be read", err.Error(), "run doctor as the gateway's user (or root)")
			return
		}
	} else {
		d.add("token-env", sevInfo, "The token comes from the environment",
			"CLAWGATE_GATEWAY_TOKEN or OPENCLAW_GATEWAY_TOKEN is set here; every process started from this shell inherits it.", "")
	}
	if err := authn.CheckTokenStrength(tok); err != nil {
		d.add("token-weak", sevCritical, "The shared token is too short",
			fmt.Sprintf("The token from %s has %d characters; at least %d random characters are needed (local clients are not rate limited, so a short token can be guessed).",
				source, len(tok), authn.MinTokenLen),
			"remove it and let the gateway generate one (256 bits), then: clawgate token")
		return
	}
	if bits := tokenBits(tok); bits < 128 {
		d.add("token-entropy", sevWarn, "The shared token looks guessable",
			fmt.Sprintf("The token from %s carries about %.0f bits (fewer than 128): it repeats characters or uses a small alphabet.", source, bits),
			"use the generated token (clawgate token)")
		return
	}
	d.add("token", sevOK, "The shared token is long and random-looking", fmt.Sprintf("%d characters from %s", len(tok), source), "")
}

// tokenBits estimates a token's entropy from its length, the alphabet its
// character classes span, and repeats (a run of one character counts once).
func tokenBits(tok string) float64 {
	var lower, upper, digit, other bool
	distinct := map[rune]bool{}
	for _, r := range tok {
		distinct[r] = true
		switch {
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= '0' && r <= '9':
			digit = true
		default:
			other = true
		}
	}
	alphabet := 0
	for _, c := range []struct {
		on bool
		n  int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {other, 4}} {
		if c.on {
			alphabet += c.n
		}
	}
	n := min(len(tok), len(distinct)*4)
	return float64(n) * math.Log2(float64(max(alphabet, 2)))
}

// checkTLS: the key must be private, the certificate valid.
func (d *doctor) checkTLS() {
	cert, key := d.certFile, d.keyFile
	if cert == "" {
		cert, key = filepath.Join(d.p.stateDir, "tls", "gateway.crt"), filepath.Join(d.p.stateDir, "tls", "gateway.key")
	}
	if st, err := os.Stat(key); err == nil {
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			d.add("tls-key-mode", sevCritical, "The TLS private key is open to other users",
				fmt.Sprintf("%s has mode %04o: whoever reads it can impersonate the gateway to pinned clients.", key, perm), "chmod 600 "+shellQuote(key))
		} else {
			d.add("tls-key", sevOK, "The TLS private key is private", key, "")
		}
	} else if d.tls && d.certFile != "" {
		d.add("tls-key", sevCritical, "The TLS key file is missing", err.Error(), "")
	}
	data, err := os.ReadFile(cert)
	if err != nil {
		if d.tls && d.certFile != "" {
			d.add("tls-cert", sevCritical, "The TLS certificate cannot be read", err.Error(), "")
		}
		return
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		d.add("tls-cert", sevCritical, "The TLS certificate is not PEM", cert, "")
		return
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		d.add("tls-cert", sevCritical, "The TLS certificate does not parse", err.Error(), "")
		return
	}
	switch left := time.Until(c.NotAfter); {
	case left <= 0:
		d.add("tls-cert-expired", sevCritical, "The TLS certificate has expired",
			fmt.Sprintf("%s expired %s; clients without a pin refuse it.", cert, c.NotAfter.UTC().Format(time.RFC3339)), "clawgate tls rotate")
	case left < 30*24*time.Hour:
		d.add("tls-cert-expiry", sevWarn, "The TLS certificate expires soon",
			fmt.Sprintf("%s expires %s.", cert, c.NotAfter.UTC().Format(time.RFC3339)), "clawgate tls rotate")
	default:
		d.add("tls-cert", sevOK, "The TLS certificate is valid", fmt.Sprintf("%s, until %s", cert, c.NotAfter.UTC().Format("2006-01-02")), "")
	}
}

// checkOrigins: browser origins that may open a WebSocket. A wildcard or
// "null" would let any page (or a sandboxed iframe) drive the gateway.
func (d *doctor) checkOrigins() {
	origins := d.cfg.Gateway.AllowedOrigins
	if len(origins) == 0 {
		d.add("origins", sevOK, "No extra browser origins are allowed", "Only the gateway's own loopback page may connect from a browser.", "")
		return
	}
	bad := false
	for _, o := range origins {
		lo := strings.ToLower(strings.TrimSpace(o))
		u, err := url.Parse(lo)
		switch {
		case strings.Contains(lo, "*"):
			d.add("origin-wildcard", sevCritical, "An allowed origin is a wildcard",
				fmt.Sprintf("%q: origins are matched exactly, and a wildcard would invite every web page to drive the gateway.", o), "list each origin exactly")
		case lo == "null":
			d.add("origin-null", sevCritical, `The allowed origins include "null"`,
				"Sandboxed iframes, file:// pages and redirects send Origin: null; allowing it lets any of them connect.", `remove "null"`)
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			d.add("origin-invalid", sevWarn, "An allowed origin is not scheme://host[:port]",
				fmt.Sprintf("%q never matches a browser's Origin header.", o), "write it as https://host or https://host:port")
		case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil:
			d.add("origin-invalid", sevWarn, "An allowed origin has a path, query or user",
				fmt.Sprintf("%q never matches: an Origin header is only scheme://host[:port].", o), "drop everything after the host")
		case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
			d.add("origin-plaintext", sevWarn, "An allowed origin is plain http",
				fmt.Sprintf("%q: a page served without TLS can be altered on the network to drive the gateway.", o), "serve the page over https")
		default:
			continue
		}
		bad = true
	}
	if !bad {
		d.add("origins", sevOK, "The allowed origins are exact https origins", strings.Join(origins, ", "), "")
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// checkHosts: extra Host header values; a wildcard would undo the DNS
// rebinding defense.
func (d *doctor) checkHosts() {
	for _, h := range d.cfg.Gateway.AllowedHosts {
		if strings.Contains(h, "*") {
			d.add("host-wildcard", sevCritical, "An allowed host is a wildcard",
				fmt.Sprintf("%q: hosts are matched exactly; the Host check is what stops DNS rebinding.", h), "list each host name exactly")
		}
	}
}

// checkHelper reports whether the helper binary name is where the gateway
// looks for it (ipc.Lookup) and safe to run: a missing one and one any user
// could replace both keep the gateway from starting.
func (d *doctor) checkHelper(id, what, name string) {
	path, err := ipc.Lookup(name)
	switch {
	case err == nil:
		d.add(id, sevOK, "The "+what+" helper is installed", path, "")
	case errors.Is(err, ipc.ErrNotFound):
		d.add(id, sevCritical, "The "+what+" helper is missing; the gateway will not start", err.Error(),
			"install it next to clawgate: go install github.com/clawgate/clawgate/cmd/...@latest")
	default:
		d.add(id, sevCritical, "The "+what+" helper cannot be used; the gateway will not start", err.Error(),
			"keep clawgate and its helpers in a directory only their owner can write (chmod o-w)")
	}
}

// checkTailnet reports tailnet state kept in the state directory.
func (d *doctor) checkTailnet() {
	if d.cfgOK && d.cfg.Tailnet.Enabled {
		// The node runs in a helper the gateway starts from beside itself.
		d.checkHelper("tailnet-helper", "tailnet", tsipc.HelperName)
	}
	for _, name := range []string{"tailscale", "tsnet"} {
		dir := filepath.Join(d.p.stateDir, name)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			d.add("tailnet-state", sevInfo, "Tailnet state is present",
				dir+" holds the node key: whoever copies it joins the tailnet as this gateway (its mode is checked with the other secrets).", "")
		}
	}
}

// checkPorts lists the sockets listening on the gateway port (Linux
// /proc/net/tcp{,6}); one beyond loopback while the configuration says
// plaintext means something exposes the port.
func (d *doctor) checkPorts() {
	if runtime.GOOS != "linux" {
		return
	}
	addrs, err := listeningOn(d.procNet, d.port)
	if err != nil {
		d.add("ports", sevInfo, "Listening sockets could not be read", err.Error(), "")
		return
	}
	if len(addrs) == 0 {
		d.add("ports", sevInfo, "Nothing listens on port "+strconv.Itoa(d.port), "The gateway is not running here (or runs in another network namespace).", "")
		return
	}
	var exposed []string
	for _, a := range addrs {
		if !a.Addr().Unmap().IsLoopback() {
			exposed = append(exposed, a.String())
		}
	}
	list := make([]string, len(addrs))
	for i, a := range addrs {
		list[i] = a.String()
	}
	switch {
	case len(exposed) == 0:
		d.add("ports", sevOK, "Port "+strconv.Itoa(d.port)+" listens on loopback only", strings.Join(list, ", "), "")
	case !d.tls:
		d.add("port-exposed", sevCritical, "Port "+strconv.Itoa(d.port)+" is reachable beyond loopback",
			strings.Join(exposed, ", ")+" listens beyond loopback, but this configuration has no TLS: the gateway runs with "+
				"--dangerously-allow-plaintext-lan, or another program holds the port.",
			"restart the gateway on loopback (or with --tls); find the process with: ss -ltnp 'sport = :"+strconv.Itoa(d.port)+"'")
	default:
		d.add("ports", sevInfo, "Port "+strconv.Itoa(d.port)+" is reachable beyond loopback (TLS)", strings.Join(list, ", "), "")
	}
}

// listeningOn parses dir/tcp and dir/tcp6 for sockets in LISTEN state on
// port.
func listeningOn(dir string, port int) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	found := false
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		found = true
		addrs, err := parseProcNetTCP(f, port)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, addrs...)
	}
	if !found {
		return nil, fmt.Errorf("no %s/tcp or tcp6", dir)
	}
	return out, nil
}

func parseProcNetTCP(r io.Reader, port int) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		hexIP, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		ip, err := procNetIP(hexIP)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.AddrPortFrom(ip, uint16(p)))
	}
	return out, sc.Err()
}

// procNetIP decodes the kernel's hex address: 32-bit words in host byte
// order (little-endian on every platform clawgate ships for).
func procNetIP(h string) (netip.Addr, error) {
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.Addr{}, fmt.Errorf("bad address %q", h)
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	a, _ := netip.AddrFromSlice(b)
	return a, nil
}

// checkRunning asks a gateway on the loopback port for its health and its
// counters (/metrics is open to local clients).
func (d *doctor) checkRunning(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	base := "http://" + netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(d.port)).String()
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	if d.tls {
		// The loopback listener speaks TLS too. Nothing secret is sent
		// (local clients read /metrics without a token) and only counts
		// come back, so the certificate is not checked here; its files
		// are checked above.
		base = "https" + strings.TrimPrefix(base, "http")
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see above
	}
	c := &http.Client{Transport: tr}
	get := func(path string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return "", err
		}
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return "", errors.New(resp.Status)
		}
		return string(b), err
	}
	if _, err := get("/healthz"); err != nil {
		return
	}
	m, err := get("/metrics")
	if err != nil {
		d.add("running", sevInfo, "A gateway answers on "+base, "Its metrics are not readable: "+err.Error(), "")
		return
	}
	vals := promValues(m)
	d.add("running", sevOK, "A gateway answers on "+base,
		fmt.Sprintf("%.0f connections open, %.0f handshakes ok, %.0f failed", vals["clawgate_connections_open"],
			vals[`clawgate_handshakes_total{outcome="ok"}`], vals[`clawgate_handshakes_total{outcome="failed"}`]), "")
	if n := vals["clawgate_auth_failures_total"]; n >= 10 {
		d.add("auth-failures", sevWarn, fmt.Sprintf("%.0f failed authentication attempts since the gateway started", n),
			"Someone may be guessing tokens; repeated failures are locked out per client.", "check the log: journalctl -u clawgate | grep unauthorized")
	}
	d.checkProviders(vals)
	if n := vals["clawgate_pairing_requests_pending"]; n > 0 {
		d.add("pairing-pending", sevInfo, fmt.Sprintf("%.0f device pairing requests wait for approval", n), "", "clawgate devices list")
	}
}

var promLabelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// checkProviders flags messaging accounts that need the operator: failed
// (a permanent error such as refused credentials) or logged out.
func (d *doctor) checkProviders(vals map[string]float64) {
	var need []string
	n := 0
	for series, v := range vals {
		if !strings.HasPrefix(series, "clawgate_provider_state{") || v != 1 {
			continue
		}
		n++
		labels := map[string]string{}
		for _, m := range promLabelRE.FindAllStringSubmatch(series, -1) {
			labels[m[1]] = m[2]
		}
		switch labels["state"] {
		case "failed", "logged-out":
			need = append(need, fmt.Sprintf("%s account %q is %s", labels["channel"], labels["account"], labels["state"]))
		}
	}
	sort.Strings(need)
	switch {
	case len(need) > 0:
		d.add("provider-relink", sevWarn, "Messaging accounts need re-linking",
			strings.Join(need, "; ")+": they stay down until their credentials are fixed or they are linked again.",
			"check the log (journalctl -u clawgate | grep provider), fix the account's token, then restart the gateway")
	case n > 0:
		d.add("providers", sevOK, fmt.Sprintf("%d messaging accounts, none needs re-linking", n), "", "")
	}
}

// promValues reads a Prometheus text page into name{labels} → value;
// series of one name without labels-specific keys are summed under the
// bare name too.
func promValues(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		out[series] = v
		if name, _, ok := strings.Cut(series, "{"); ok {
			out[name] += v
		}
	}
	return out
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
