//go:build linux

package compat

import (
	"os/exec"
	"syscall"
)

// setChildAttrs puts the child in its own process group so a timeout can
// kill everything it started. (No Pdeathsig: it fires when the forking OS
// thread exits, which the Go runtime may do at any time.)
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills the child's whole process group.
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return cmd.Process.Kill()
	}
	return nil
}
