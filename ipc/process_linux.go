package ipc

import (
	"os"
	"strconv"
	"syscall"
)

// sysProcAttr: a helper dies with the gateway even if the gateway is
// killed before it can close the connection.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// closeInheritedOnExec marks every open descriptor above stderr
// close-on-exec before a helper starts. Go opens its own descriptors that
// way, but one the gateway inherited from whoever started it (a shell's
// `exec 5>file`, a supervisor's socket) is not, and exec would hand it to
// the helper, which faces the network. The helper gets only the
// descriptors exec.Cmd gives it.
func closeInheritedOnExec() {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return
	}
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
