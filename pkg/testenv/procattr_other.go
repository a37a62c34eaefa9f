//go:build !linux

package testenv

import "syscall"

// childProcAttr puts a child process in its own process group (see
// procattr_linux.go; only Linux can also tie its life to this process).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
