// Package deploy carries clawgate's service definitions, embedded so that
// `clawgate service install` writes exactly the files that are tested: the
// hardened systemd units in systemd/ and the launchd property lists in
// launchd/ (a per-user LaunchAgent and a system-wide LaunchDaemon).
//
// The files are usable as they are (copy and edit two paths); the installer
// only substitutes the binary path and, for the LaunchAgent, the user's home.
package deploy
