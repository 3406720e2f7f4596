package gemm

// Pre-packed products, for a caller that multiplies the same operands many times in small
// pieces: quant's W4A8 engine multiplies a layer's weight codes, one group of 128 inputs at
// a time, by every chunk of calibration activations. Sgemm would pack both operands on every
// call, and with k = 128 the packing (a transposing copy that reads its rows a K-wide stride
// apart) cost a third as much as the multiply-adds. Here the caller lays the operands out in
// the micro-kernel's packed format itself, once:
//
//	A (m×k) → ⌈m/mr⌉ micro-panels of mr·k floats, panel i at [i·mr·k], a[i·mr·k + p·mr + r]
//	          = A[i·mr + r][p], zero (or any finite value) in rows past m;
//	B (n×k, used as Bᵀ) → ⌈n/nr⌉ micro-panels of nr·k floats, b[j·nr·k + p·nr + c]
//	          = B[j·nr + c][p], likewise padded;
//
// with (mr, nr) = Tile(), which depends on the CPU (it is fixed for the process).

// Tile returns the micro-kernel's register tile (mr, nr) that packed operands are laid out
// for.
func Tile() (mr, nr int) { return defaultKernel.mr, defaultKernel.nr }

// MulPacked computes C [m×n] = A·Bᵀ (overwriting C, row stride ldc) from operands packed as
// above with k steps each, on the calling goroutine. The panels of A and B may start
// anywhere in larger packed matrices (at a panel boundary: ap[i·mr·k:] of rows i·mr on).
// Computed in float32 with the kernel's summation order; k is blocked by the kernel's kc,
// later blocks accumulating onto C. It panics on buffers too short for their shapes.
func MulPacked(m, n, k int, ap, bp []float32, c []float32, ldc int) {
	ker := defaultKernel
	mr, nr := ker.mr, ker.nr
	if m < 0 || n < 0 || k < 0 {
		panic("gemm: negative dimension")
	}
	if m == 0 || n == 0 {
		return
	}
	checkMat("C", m, n, c, ldc)
	pm, pn := (m+mr-1)/mr, (n+nr-1)/nr
	if len(ap) < pm*mr*k || len(bp) < pn*nr*k {
		panic("gemm: MulPacked: packed operand too short for its dimensions")
	}
	if k == 0 {
		scaleC(m, n, 0, c, ldc)
		return
	}
	var tile []float32
	for p0 := 0; p0 < k; p0 += ker.kc {
		kc := min(ker.kc, k-p0)
		beta := float32(0)
		if p0 > 0 {
			beta = 1
		}
		for i := 0; i < pm; i++ {
			a := ap[i*mr*k+p0*mr : i*mr*k+(p0+kc)*mr]
			rows := min(mr, m-i*mr)
			for j := 0; j < pn; j++ {
				b := bp[j*nr*k+p0*nr : j*nr*k+(p0+kc)*nr]
				cols := min(nr, n-j*nr)
				ct := c[i*mr*ldc+j*nr:]
				if rows == mr && cols == nr {
					ker.fn(kc, a, b, ct, ldc, 1, beta)
					continue
				}
				// Ragged edge: the full tile into scratch, then merge the valid part.
				if tile == nil {
					tile = make([]float32, mr*nr)
				}
				ker.fn(kc, a, b, tile, nr, 1, 0)
				mergeTile(ct, ldc, tile, nr, rows, cols, 1, beta)
			}
		}
	}
}

// Kernel returns the name of the micro-kernel Sgemm and MulPacked use (avx512-14x32,
// avx2-6x16 or generic-4x4, or the one ODYSSEY_GEMM_KERNEL names). All compute the same
// canonical sums bit for bit (docs/determinism.md); only their speed differs.
func Kernel() string { return defaultKernel.name }
