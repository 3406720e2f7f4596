//go:build linux || darwin || freebsd

package bundle

import "syscall"

// freeBytes returns the space an unprivileged process may still write under dir.
func freeBytes(dir string) (int64, bool) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		return 0, false
	}
	return int64(s.Bavail) * int64(s.Bsize), true
}
