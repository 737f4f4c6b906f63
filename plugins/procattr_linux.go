package plugins

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill the plugin when pearld dies, however
// it dies (kill -9 included), and puts the plugin in a process group of
// its own, so that a terminal's Ctrl-C reaches pearld only (which then
// stops its plugins) and killGroup reaches whatever the plugin started.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
