//go:build linux

package safetensors

import (
	"os"

	"golang.org/x/sys/unix"
)

// copyRange copies n bytes from src at srcOff to dst at dstOff inside the kernel
// (copy_file_range(2)): no user-space buffer, no page faults on a mapping, and on file
// systems with reflinks (XFS, btrfs) the blocks may be shared instead of copied. It returns
// how many bytes it copied; fewer than n (0 when the call is unsupported between these
// files, as across file systems on older kernels) leaves the rest to the caller.
func copyRange(dst *os.File, dstOff int64, src *os.File, srcOff, n int64) (int64, error) {
	var done int64
	for done < n {
		so, do := srcOff+done, dstOff+done
		c, err := unix.CopyFileRange(int(src.Fd()), &so, int(dst.Fd()), &do, int(min(n-done, 1<<30)), 0)
		if err != nil {
			switch err {
			case unix.EXDEV, unix.EINVAL, unix.ENOSYS, unix.EOPNOTSUPP, unix.EBADF:
				return done, nil // unsupported here: the caller copies the rest
			}
			return done, err
		}
		if c == 0 {
			return done, nil
		}
		done += int64(c)
	}
	return done, nil
}
