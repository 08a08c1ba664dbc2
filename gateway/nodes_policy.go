package gateway

import (
	"slices"
	"strings"
)

// NodePolicy is the operator's node command policy: commands added to, or
// removed from, the per-platform allowlist (gateway.nodes.commands.allow
// and .deny in OpenClaw's config).
type NodePolicy struct {
	// AllowCommands are admitted on every platform, including commands that
	// are dangerous by default (camera.snap, sms.send, ...).
	AllowCommands []string
	// DenyCommands are never admitted, whatever else says so.
	DenyCommands []string
}

// Node command families, as OpenClaw's node-command-policy groups them.
var (
	cmdSystemRun     = []string{"system.run.prepare", "system.run", "system.which"}
	cmdExecApprovals = []string{"system.execApprovals.get", "system.execApprovals.set"}
	cmdFile          = []string{"fs.listDir", "terminal.upload"}
	cmdBrowserProxy  = []string{"browser.proxy", "browser.proxy.upload.v1"}
	cmdSystem        = concat(cmdSystemRun, cmdExecApprovals, cmdFile, []string{"system.notify"}, cmdBrowserProxy,
		[]string{"mcp.tools.call.v1", "agent.cli.claude.run.v1"})
	cmdScreen        = []string{"screen.snapshot"}
	cmdDesktopScreen = []string{"screen.snapshot", "desktop.stream"}
	cmdComputer      = []string{"computer.act"}
	cmdCamera        = []string{"camera.list"}
	cmdLocation      = []string{"location.get"}
	cmdDevice        = []string{"device.info", "device.status"}
	cmdContacts      = []string{"contacts.search"}
	cmdCalendar      = []string{"calendar.events"}
	cmdReminders     = []string{"reminders.list"}
	cmdPhotos        = []string{"photos.latest"}
	cmdMotion        = []string{"motion.activity", "motion.pedometer"}

	// dangerousNodeCommands are withheld at invoke time unless
	// AllowCommands names them.
	dangerousNodeCommands = []string{"camera.snap", "camera.clip", "camera.ptz.control", "screen.record",
		"contacts.add", "calendar.add", "reminders.add", "sms.send", "sms.search", "health.summary"}

	// desktopHostCommands run on the host itself; on desktop platforms
	// they are admitted at invoke time only once an operator approved them
	// in the node's surface.
	desktopHostCommands = concat(cmdSystemRun, cmdExecApprovals, cmdFile, cmdBrowserProxy,
		[]string{"mcp.tools.call.v1", "agent.cli.claude.run.v1"}, cmdScreen, []string{"desktop.stream"})

	// adminInvokeCommands need operator.admin on node.invoke (they reach
	// the host's files or browser profiles).
	adminInvokeCommands = concat(cmdBrowserProxy, cmdFile)

	// privateNodeCommands are worker controls no operator may invoke.
	privateNodeCommands = []string{"worker.bundle.install.v1", "worker.launch.v1", "worker.status.v1", "worker.cancel.v1",
		"worker.environment.stop.v1", "worker.workspace.exec.v1", "worker.workspace.prepare.v1", "worker.workspace.retain.v1",
		"worker.desktop.stream.v1", "worker.desktop.launch.v1", "worker.desktop.computer.v1", "worker.portal.stream.v1"}

	platformDefaults = map[string][]string{
		"ios": concat(cmdCamera, cmdLocation, cmdDevice, cmdContacts, cmdCalendar, cmdReminders, cmdPhotos, cmdMotion,
			[]string{"system.notify"}),
		"watchos": concat(cmdDevice, []string{"system.notify"}),
		"android": concat(cmdCamera, cmdLocation, []string{"notifications.list", "notifications.actions", "system.notify"},
			cmdDevice, []string{"device.permissions", "device.health", "device.apps"}, cmdContacts, cmdCalendar,
			[]string{"callLog.search"}, cmdReminders, cmdPhotos, cmdMotion, []string{"mobile.ui.observe", "mobile.ui.act"}),
		"macos": concat(cmdCamera, []string{"camera.ptz.status"}, cmdLocation, cmdDevice, []string{"device.apps"},
			cmdContacts, cmdCalendar, cmdReminders, cmdPhotos, cmdMotion, cmdSystem, cmdDesktopScreen, cmdComputer),
		"linux":   concat(cmdSystem, cmdDesktopScreen, cmdComputer),
		"windows": concat(cmdCamera, cmdLocation, cmdDevice, cmdSystem, cmdDesktopScreen, cmdComputer),
		"unknown": concat(cmdCamera, cmdLocation, []string{"system.notify"}),
	}
)

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// normalizeMeta is the policy form of platform and deviceFamily: trimmed
// and lowercased.
func normalizeMeta(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// platformID classifies a node as OpenClaw does: an exact platform name
// must agree with the device family, native labels ("macos 14.2") need
// their family, any other claimed platform is "unknown", and with no
// platform the family decides.
func platformID(platform, family string) string {
	raw, fam := normalizeMeta(platform), normalizeMeta(family)
	switch raw {
	case "ios", "watchos", "android", "macos", "windows", "linux":
		if platformMatchesFamily(raw, fam) {
			return raw
		}
		return "unknown"
	}
	if id := platformByNativeLabel(raw, fam); id != "" {
		return id
	}
	if raw != "" {
		return "unknown"
	}
	for _, r := range []struct{ id, tokens string }{
		{"ios", "iphone ipad ios"}, {"watchos", "apple watch|watchos"}, {"android", "android"},
		{"macos", "mac"}, {"windows", "windows"}, {"linux", "linux"},
	} {
		sep := " "
		if strings.Contains(r.tokens, "|") {
			sep = "|"
		}
		for _, tok := range strings.Split(r.tokens, sep) {
			if strings.Contains(fam, tok) {
				return r.id
			}
		}
	}
	return "unknown"
}

func platformMatchesFamily(id, fam string) bool {
	switch id {
	case "ios":
		return fam == "" || fam == "iphone" || fam == "ipad" || fam == "ios"
	case "watchos":
		return fam == "apple watch" || fam == "watchos"
	case "android":
		return fam == "" || fam == "android"
	case "macos":
		return fam == "mac"
	case "windows":
		return fam == "windows"
	case "linux":
		return fam == "linux"
	}
	return false
}

// platformByNativeLabel recognizes "ios 17.2", "macos 14", "android 14
// (sdk 34)" and the like.
func platformByNativeLabel(raw, fam string) string {
	name, ver, ok := strings.Cut(raw, " ")
	if !ok || !isVersionLabel(ver, name == "android") {
		return ""
	}
	switch name {
	case "ios", "ipados":
		if fam == "iphone" || fam == "ipad" || fam == "ios" {
			return "ios"
		}
	case "watchos":
		if fam == "apple watch" || fam == "watchos" {
			return "watchos"
		}
	case "macos":
		if fam == "mac" {
			return "macos"
		}
	case "android":
		if fam == "android" {
			return "android"
		}
	}
	return ""
}

// isVersionLabel matches "14", "14.2", "14.2.1" and, for Android,
// "14 (sdk 34)".
func isVersionLabel(s string, android bool) bool {
	if android {
		if v, sdk, ok := strings.Cut(s, " (sdk "); ok {
			return isVersionLabel(v, false) && strings.HasSuffix(sdk, ")") && isDigits(strings.TrimSuffix(sdk, ")"))
		}
	}
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return false
	}
	for _, p := range parts {
		if !isDigits(p) {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// pairingAllowlist is what a node of this platform may declare and have
// approved: the platform's defaults with desktop host and dangerous
// commands included, plus AllowCommands, minus DenyCommands (a deny does
// not take away a dangerous default's right to be declared), minus private
// worker controls.
func (p NodePolicy) pairingAllowlist(platform, family string) map[string]bool {
	id := platformID(platform, family)
	allow := map[string]bool{}
	for _, c := range platformDefaults[id] {
		allow[c] = true
	}
	for _, c := range dangerousNodeCommands {
		allow[c] = true
	}
	for _, c := range p.AllowCommands {
		if c = strings.TrimSpace(c); c != "" {
			allow[c] = true
		}
	}
	for _, c := range p.DenyCommands {
		if c = strings.TrimSpace(c); c != "" && !slices.Contains(dangerousNodeCommands, c) {
			delete(allow, c)
		}
	}
	for _, c := range privateNodeCommands {
		delete(allow, c)
	}
	return allow
}

// invokeAllowed reports whether the policy admits command at invoke time
// for a node whose effective (declared and approved) commands are given:
// within the platform allowlist, desktop host commands only once approved,
// dangerous defaults only when AllowCommands names them, never a denied or
// private command.
func (p NodePolicy) invokeAllowed(platform, family, command string, effective []string) bool {
	command = strings.TrimSpace(command)
	if command == "" || slices.Contains(privateNodeCommands, command) {
		return false
	}
	for _, d := range p.DenyCommands {
		if strings.TrimSpace(d) == command {
			return false
		}
	}
	for _, a := range p.AllowCommands {
		if strings.TrimSpace(a) == command {
			return true
		}
	}
	if slices.Contains(dangerousNodeCommands, command) {
		return false
	}
	id := platformID(platform, family)
	if !slices.Contains(platformDefaults[id], command) {
		return false
	}
	desktop := id == "macos" || id == "windows" || id == "linux"
	if desktop && slices.Contains(desktopHostCommands, command) {
		return slices.Contains(effective, command)
	}
	return true
}

// filterDeclared splits what a node declared into what policy lets it
// declare and what is withheld (trimmed, deduplicated, private controls
// dropped).
func (p NodePolicy) filterDeclared(platform, family string, commands []string) (declared, withheld []string) {
	allow := p.pairingAllowlist(platform, family)
	seen := map[string]bool{}
	for _, c := range commands {
		c = strings.TrimSpace(c)
		if c == "" || seen[c] || slices.Contains(privateNodeCommands, c) {
			continue
		}
		seen[c] = true
		if allow[c] {
			declared = append(declared, c)
		} else {
			withheld = append(withheld, c)
		}
	}
	return declared, withheld
}
