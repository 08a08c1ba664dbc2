package ipc

import "syscall"

// sysProcAttr: a helper dies with the gateway even if the gateway is
// killed before it can close the connection.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
