//go:build unix

package quantizejob

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockOutput takes an exclusive lock on OUT.partial.lock, beside OUT, for the whole run, so
// two runs into the same output never write into one OUT.partial (which would publish an
// artifact mixing both). The lock file holds the owner's PID; a second run is refused with a
// *BusyError naming it. The lock is released when the process ends, however it ends.
func LockOutput(out string) (unlock func(), err error) {
	path := out + ".partial.lock"
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(path)), 0o777); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			return nil, fmt.Errorf("locking %s: %w", out, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			b := make([]byte, 32)
			n, _ := f.ReadAt(b, 0)
			f.Close()
			holder := "another process"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil && pid > 0 {
				holder = fmt.Sprintf("process %d", pid)
			}
			return nil, &BusyError{Err: fmt.Errorf("%s is being written by %s (lock %s); wait for it to finish or stop it", out, holder, path)}
		}
		// The file may have been removed (and a new one locked) by the previous holder between
		// our open and our lock: then this lock guards nothing, try again.
		var a, b syscall.Stat_t
		if syscall.Fstat(int(f.Fd()), &a) != nil || syscall.Stat(path, &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
			f.Close()
			if attempt < 10 {
				continue
			}
			return nil, fmt.Errorf("locking %s: %s keeps changing", out, path)
		}
		f.Truncate(0)
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		return func() {
			os.Remove(path) // while still holding the lock; see the inode check above
			f.Close()
		}, nil
	}
}

// LockIsNoop reports that LockOutput does nothing on this system.
const LockIsNoop = false
