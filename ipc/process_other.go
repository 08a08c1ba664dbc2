//go:build !linux

package ipc

import "syscall"

// sysProcAttr: elsewhere the helper exits when its connection closes.
func sysProcAttr() *syscall.SysProcAttr { return nil }
