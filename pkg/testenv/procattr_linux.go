package testenv

import "syscall"

// childProcAttr puts a child process in its own process group, so that a
// terminal's Ctrl-C (SIGINT to the foreground group) reaches only the program
// that started it, which then stops the child once, gracefully. (Otherwise
// the child takes SIGINT as its first signal and that program's SIGTERM as a
// second one, which makes svcguard exit at once with code 1.) The child is
// killed when the program dies without stopping it (a test binary killed
// by a timeout), so that no replica outlives its suite.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
