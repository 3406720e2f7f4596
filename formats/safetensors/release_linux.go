package safetensors

import (
	"syscall"
	"unsafe"
)

// releasePages drops the pages of a read-only file mapping from the resident set.
func releasePages(b []byte) { _ = syscall.Madvise(b, syscall.MADV_DONTNEED) }

// releaseRange releases the whole pages inside b, a view of a mapping (rounding inward, so
// that a page shared with a neighbouring tensor is left alone).
func releaseRange(b []byte) {
	if len(b) == 0 {
		return
	}
	ps := uintptr(syscall.Getpagesize())
	p := uintptr(unsafe.Pointer(&b[0]))
	lo := (p + ps - 1) &^ (ps - 1)
	hi := (p + uintptr(len(b))) &^ (ps - 1)
	if hi <= lo {
		return
	}
	_ = syscall.Madvise(b[lo-p:hi-p], syscall.MADV_DONTNEED)
}
