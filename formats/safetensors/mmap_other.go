//go:build !unix

package safetensors

import "os"

// mmapFile is not available on this platform: the Checkpoint reads tensors with ReadAt
// instead, and Bytes returns a copy rather than a view.
func mmapFile(f *os.File, size int64) ([]byte, error) { return nil, errNoMmap }

func munmap(b []byte) error { return nil }
