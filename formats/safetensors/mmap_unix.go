//go:build unix

package safetensors

import (
	"os"
	"syscall"
)

// mmapFile maps the first size bytes of f read-only. Pages are loaded on first touch, so
// opening a checkpoint reads only its headers, and reading one tensor touches only its pages.
func mmapFile(f *os.File, size int64) ([]byte, error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, errNoMmap
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, &os.PathError{Op: "mmap", Path: f.Name(), Err: err}
	}
	return b, nil
}

func munmap(b []byte) error { return syscall.Munmap(b) }
