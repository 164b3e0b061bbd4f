//go:build !linux

package faultsuite

import "syscall"

// sysProcAttr: outside Linux there is no parent-death signal; the tests' cleanups stop the
// children.
func sysProcAttr() *syscall.SysProcAttr { return nil }
