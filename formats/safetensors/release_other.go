//go:build !linux

package safetensors

// releasePages and releaseRange are no-ops where the standard library has no madvise; the
// pages stay resident until memory pressure evicts them.
func releasePages(b []byte) {}

func releaseRange(b []byte) {}
