//go:build linux

package artifact

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing path's dirty pages to the disk now,
// without waiting for them (sync_file_range with SYNC_FILE_RANGE_WRITE), so that a later
// fsync finds most of the work done. Best effort: errors are ignored.
func startWriteback(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	f.Close()
}
