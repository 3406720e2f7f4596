package gemm

// Packing copies a block of op(A) or op(B) into the layout the micro-kernel streams:
//
//	A block (mb×kc) → ⌈mb/mr⌉ micro-panels, each kc steps of mr consecutive values
//	                  (panel[p·mr+i] = op(A)[i][p]);
//	B block (kc×nb) → ⌈nb/nr⌉ micro-panels, each kc steps of nr consecutive values
//	                  (panel[p·nr+j] = op(B)[p][j]).
//
// Rows or columns past the matrix edge are zero-filled, so the kernel always computes a full
// tile and the padding contributes nothing. Whether a panel is a plain copy or a transpose
// depends on the storage order: op(A) = A (row-major, the forward pass's X) and op(B) = Bᵀ
// (the weight matrix W[n×k]) need a transpose; Aᵀ and B are straight copies.

// packA packs op(A)[i0:i0+mb, p0:p0+kc] into dst.
func packA(dst []float32, transA bool, a []float32, lda, i0, p0, mb, kc, mr int) {
	for ii := 0; ii < mb; ii += mr {
		w := min(mr, mb-ii)
		panel := dst[ii*kc : (ii+mr)*kc]
		if transA { // op(A)[i][p] = a[p·lda+i]: each k step is a contiguous run of w values
			packCopy(panel, a[p0*lda+i0+ii:], lda, kc, w, mr)
		} else { // op(A)[i][p] = a[i·lda+p]: each panel row is a contiguous run over k
			packTranspose(panel, a[(i0+ii)*lda+p0:], lda, kc, w, mr)
		}
	}
}

// packB packs op(B)[p0:p0+kc, j0:j0+nb] into dst.
func packB(dst []float32, transB bool, b []float32, ldb, p0, j0, kc, nb, nr int) {
	for jj := 0; jj < nb; jj += nr {
		w := min(nr, nb-jj)
		panel := dst[jj*kc : (jj+nr)*kc]
		if transB { // op(B)[p][j] = b[j·ldb+p]
			packTranspose(panel, b[(j0+jj)*ldb+p0:], ldb, kc, w, nr)
		} else { // op(B)[p][j] = b[p·ldb+j]
			packCopy(panel, b[p0*ldb+j0+jj:], ldb, kc, w, nr)
		}
	}
}

// packCopy: dst[p·r+q] = src[p·ld+q] for p < kc, q < w; zero for w ≤ q < r.
func packCopy(dst, src []float32, ld, kc, w, r int) {
	if packCopyAsm(dst, src, ld, kc, w, r) {
		return
	}
	packCopyGo(dst, src, ld, kc, w, r)
}

func packCopyGo(dst, src []float32, ld, kc, w, r int) {
	for p := 0; p < kc; p++ {
		d := dst[p*r : p*r+r]
		copy(d[:w], src[p*ld:p*ld+w])
		clear(d[w:])
	}
}

// packTranspose: dst[p·r+q] = src[q·ld+p] for p < kc, q < w; zero for w ≤ q < r.
func packTranspose(dst, src []float32, ld, kc, w, r int) {
	if packTransposeAsm(dst, src, ld, kc, w, r) {
		return
	}
	packTransposeGo(dst, src, ld, kc, w, r)
}

// packTransposeGo is the portable transposing pack. Eight source rows are read together so each k step writes 32 contiguous bytes of dst
// instead of scattering single floats one cache line apart.
func packTransposeGo(dst, src []float32, ld, kc, w, r int) {
	dst = dst[:kc*r]
	q := 0
	for ; q+8 <= w; q += 8 {
		s0 := src[(q+0)*ld : (q+0)*ld+kc]
		s1 := src[(q+1)*ld : (q+1)*ld+kc]
		s2 := src[(q+2)*ld : (q+2)*ld+kc]
		s3 := src[(q+3)*ld : (q+3)*ld+kc]
		s4 := src[(q+4)*ld : (q+4)*ld+kc]
		s5 := src[(q+5)*ld : (q+5)*ld+kc]
		s6 := src[(q+6)*ld : (q+6)*ld+kc]
		s7 := src[(q+7)*ld : (q+7)*ld+kc]
		for p := range s0 {
			d := dst[p*r+q : p*r+q+8 : p*r+q+8]
			d[0], d[1], d[2], d[3] = s0[p], s1[p], s2[p], s3[p]
			d[4], d[5], d[6], d[7] = s4[p], s5[p], s6[p], s7[p]
		}
	}
	for ; q < w; q++ {
		s := src[q*ld : q*ld+kc]
		for p, v := range s {
			dst[p*r+q] = v
		}
	}
	if w < r {
		for p := 0; p < kc; p++ {
			clear(dst[p*r+w : p*r+r])
		}
	}
}
