package faultsuite

import "syscall"

// sysProcAttr makes the kernel kill a child when the test process dies, so a crashed or
// interrupted test run leaves no API, worker, Temporal server or simulator behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
