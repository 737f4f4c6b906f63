//go:build !linux

package plugins

import "os/exec"

// setProcAttr does nothing where there is no parent-death signal: the sdk
// makes a plugin exit when its parent is gone.
func setProcAttr(*exec.Cmd) {}

func killGroup(int) {}
