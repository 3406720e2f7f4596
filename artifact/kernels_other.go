//go:build !amd64 || purego

package artifact

import "github.com/odyssey-llm/odyssey/formats/safetensors"

// Without the amd64 vector kernels (other architectures, or -tags purego) firstNonFinite and
// packInt4 run their Go code; the constants let the compiler drop the dispatch.
const hasScanKernel, hasPackKernel = false, false

func finiteBlocks(safetensors.DType, []byte) int { return 0 }

func packBlockAsm(dst, src []byte, k, rows, nkb int) bool {
	return packBlockGo(dst, src, k, rows, nkb)
}
