//go:build !linux

package ipc

import "syscall"

// sysProcAttr: elsewhere the helper exits when its connection closes.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// closeInheritedOnExec: elsewhere inherited descriptors are left as they
// are (there is no /proc to list them).
func closeInheritedOnExec() {}
