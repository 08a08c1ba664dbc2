package deploy

import (
	"embed"
	"fmt"
)

//go:embed systemd/*.service launchd/agent/*.plist launchd/daemon/*.plist
var files embed.FS

// DefaultBinary is the clawgate path the shipped files name in ExecStart
// and ProgramArguments.
const DefaultBinary = "/usr/local/bin/clawgate"

// AgentHome is the placeholder home directory of the LaunchAgent.
const AgentHome = "/Users/YOU"

// Label is the launchd label, and the plist's file name without ".plist".
const Label = "io.clawgate.gateway"

// UnitName is the systemd unit name both variants are installed as.
const UnitName = "clawgate.service"

// SystemdUnit returns the systemd unit; tsnet selects the variant that
// also joins the tailnet.
func SystemdUnit(tsnet bool) []byte {
	name := "systemd/clawgate.service"
	if tsnet {
		name = "systemd/clawgate-tsnet.service"
	}
	return mustRead(name)
}

// LaunchdPlist returns the LaunchAgent (per user) or, with system, the
// LaunchDaemon property list.
func LaunchdPlist(system bool) []byte {
	kind := "agent"
	if system {
		kind = "daemon"
	}
	return mustRead("launchd/" + kind + "/" + Label + ".plist")
}

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		// The names are fixed at build time by the embed directive.
		panic(fmt.Sprintf("deploy: embedded %s: %v", name, err))
	}
	return b
}
