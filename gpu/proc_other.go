//go:build !unix

package gpu

import "os/exec"

// setProcessGroup does nothing where there are no Unix process groups: cancellation kills
// the process itself (exec.CommandContext's default).
func setProcessGroup(cmd *exec.Cmd) {}
