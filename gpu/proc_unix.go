//go:build unix

package gpu

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts the runtime in its own process group and makes cancellation kill
// the whole group: a runtime started through a wrapper script (or one that forks helpers)
// must not leave a child running on the GPU, or holding the output pipes open, after a
// timeout.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
}
