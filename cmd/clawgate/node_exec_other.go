//go:build !unix

package main

import "os/exec"

// setProcessGroup: no process groups here; cancellation kills the process.
func setProcessGroup(*exec.Cmd) {}
