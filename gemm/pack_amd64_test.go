//go:build amd64 && !purego

package gemm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPackTransposeAVX2 checks the AVX2 transposing pack (pack_avx2_amd64.s) bit for bit
// against packTransposeGo, also on CPUs with AVX-512 (where packTransposeAsm takes the
// AVX-512 one): every w ≤ r for panel widths around the 8-column groups (6 and 16 are the
// AVX2 kernel's mr and nr), kc from 1 to 70 (tails of every length) and a few long ones,
// padded strides, unaligned source and destination offsets, and canaries on both sides
// of dst[:kc·r].
func TestPackTransposeAVX2(t *testing.T) {
	if !hasPackAVX2 {
		t.Skip("no AVX2")
	}
	const canary = -7.25
	rnd := rand.New(rand.NewPCG(21, 22))
	widths := []int{1, 4, 6, 7, 8, 9, 12, 14, 15, 16, 17, 24, 32, 48, 64}
	kcs := []int{}
	for kc := 1; kc <= 70; kc++ {
		kcs = append(kcs, kc)
	}
	kcs = append(kcs, 128, 255, 256, 384)
	if testing.Short() {
		widths = []int{1, 6, 9, 14, 16, 32}
	}
	for _, r := range widths {
		for w := 1; w <= r; w++ {
			if testing.Short() && w != 1 && w != r && w != r-1 && w != r/2 && w != 8 {
				continue
			}
			for _, kc := range kcs {
				if kc > 70 && w%3 != 0 && w != r {
					continue
				}
				pad := (w + kc) % 4 // 0..3: strides both equal to and above kc
				ld := kc + pad
				soff, doff := kc%3, (w+kc)%5 // unaligned starts
				src := randSlice(rnd, soff+(w-1)*ld+kc)[soff:]
				want := slices.Repeat([]float32{canary}, kc*r)
				packTransposeGo(want, src, ld, kc, w, r)
				buf := slices.Repeat([]float32{canary}, doff+kc*r+16)
				got := buf[doff:]
				ok := packTransposeAVX2(got, src, ld, kc, w, r)
				if ok != (kc >= 8) {
					t.Fatalf("packTransposeAVX2 r=%d w=%d kc=%d returned %v", r, w, kc, ok)
				}
				if !ok {
					continue
				}
				if !slices.Equal(got[:kc*r], want) {
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("packTransposeAVX2 r=%d w=%d kc=%d ld=%d: dst[%d] (p=%d q=%d) = %v, want %v",
								r, w, kc, ld, i, i/r, i%r, got[i], want[i])
						}
					}
				}
				for i, v := range buf {
					if (i < doff || i >= doff+kc*r) && v != canary {
						t.Fatalf("packTransposeAVX2 r=%d w=%d kc=%d ld=%d wrote outside dst[:kc*r] at %d", r, w, kc, ld, i-doff)
					}
				}
			}
		}
	}
}

// BenchmarkPackTransposeAVX2 is the AVX2 transposing pack alone (also on AVX-512 CPUs).
func BenchmarkPackTransposeAVX2(b *testing.B) {
	if !hasPackAVX2 {
		b.Skip("no AVX2")
	}
	for _, s := range packTransposeBenchShapes {
		src, dst := packTransposeBenchOperands(s)
		b.Run(fmt.Sprintf("r%d_w%d_kc%d", s.r, s.w, s.kc), func(b *testing.B) {
			for b.Loop() {
				for i := 0; i+s.w <= 512; i += s.w {
					packTransposeAVX2(dst[i*s.kc:], src[i*4096:], 4096, s.kc, s.w, s.r)
				}
			}
			b.ReportMetric(float64(512/s.w*s.w*s.kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}

// BenchmarkSgemmPackAVX2 runs NT products with few rows (decoding and calibration batches),
// where packing the weight W is a large share of the time, with the AVX2 transposing pack
// and with packTransposeGo (hasPackAVX2 off). Meaningful on CPUs without AVX-512 only.
func BenchmarkSgemmPackAVX2(b *testing.B) {
	if !hasPackAVX2 || hasPackAVX512 {
		b.Skip("needs AVX2 without AVX-512")
	}
	for _, s := range []benchShape{
		{"NT_m16_k4096_n4096", false, true, 16, 4096, 4096},
		{"NT_m64_k4096_n4096", false, true, 64, 4096, 4096},
		{"NT_m256_k4096_n4096", false, true, 256, 4096, 4096},
		{"NT_m2048_k4096_n4096", false, true, 2048, 4096, 4096},
	} {
		a, bb, c, lda, ldb, ldc := benchOperands(s)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		for _, avx2 := range []bool{true, false} {
			name := s.name + "/go"
			if avx2 {
				name = s.name + "/avx2"
			}
			b.Run(name, func(b *testing.B) {
				defer func(old bool) { hasPackAVX2 = old }(hasPackAVX2)
				hasPackAVX2 = avx2
				Sgemm(false, true, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, ldc)
				b.ResetTimer()
				cpu0 := cpuSeconds()
				for b.Loop() {
					Sgemm(false, true, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, ldc)
				}
				reportFlops(b, flops, cpu0)
			})
		}
	}
}

// TestPackCopyAVX2 checks the AVX2 copying pack (packCopyPanelAVX2) bit for bit against
// packCopyGo, also on CPUs with AVX-512: every w ≤ r for r = 6 and 16 (the AVX2 kernel's mr
// and nr; other r must report false), kc from 1 to 70 (odd and even, for the two-step
// loops) and a few long ones, strides ld = w..w+3 and 4096, unaligned source and
// destination offsets, and canaries on both sides of dst[:kc·r]. The source slice ends
// right after the last value read, so an over-read would fault under -race or be caught
// by the bounds check in packCopyAVX2.
func TestPackCopyAVX2(t *testing.T) {
	if !hasPackAVX2 {
		t.Skip("no AVX2")
	}
	const canary = -7.25
	rnd := rand.New(rand.NewPCG(31, 32))
	kcs := []int{}
	for kc := 1; kc <= 70; kc++ {
		kcs = append(kcs, kc)
	}
	kcs = append(kcs, 127, 128, 255, 256, 385)
	for _, r := range []int{1, 4, 5, 6, 7, 8, 9, 12, 14, 15, 16, 17, 24, 32, 48, 64} {
		for w := 1; w <= r; w++ {
			if r != 6 && r != 16 && w != 1 && w != r { // other widths only report false
				continue
			}
			for _, kc := range kcs {
				for _, extra := range []int{(w + kc) % 4, 4096 - w} {
					if extra > 4 && (kc%8 != 0 && kc%8 != 7 || testing.Short() && kc > 70) { // long strides: fewer kc
						continue
					}
					ld := w + extra
					soff, doff := kc%3, (w+kc)%5 // unaligned starts
					src := randSlice(rnd, soff+(kc-1)*ld+w)[soff:]
					want := slices.Repeat([]float32{canary}, kc*r)
					packCopyGo(want, src, ld, kc, w, r)
					buf := slices.Repeat([]float32{canary}, doff+kc*r+16)
					got := buf[doff:]
					ok := packCopyAVX2(got, src, ld, kc, w, r)
					if ok != (r == 6 || r == 16) {
						t.Fatalf("packCopyAVX2 r=%d w=%d kc=%d returned %v", r, w, kc, ok)
					}
					if !ok {
						for i, v := range buf {
							if v != canary {
								t.Fatalf("packCopyAVX2 r=%d w=%d kc=%d returned false but wrote dst[%d]", r, w, kc, i-doff)
							}
						}
						continue
					}
					if !slices.Equal(got[:kc*r], want) {
						for i := range want {
							if got[i] != want[i] {
								t.Fatalf("packCopyAVX2 r=%d w=%d kc=%d ld=%d: dst[%d] (p=%d q=%d) = %v, want %v",
									r, w, kc, ld, i, i/r, i%r, got[i], want[i])
							}
						}
					}
					for i, v := range buf {
						if (i < doff || i >= doff+kc*r) && v != canary {
							t.Fatalf("packCopyAVX2 r=%d w=%d kc=%d ld=%d wrote outside dst[:kc*r] at %d", r, w, kc, ld, i-doff)
						}
					}
				}
			}
		}
	}
}

// BenchmarkPackCopyAVX2 compares the AVX2 copying pack with packCopyGo on the packs of the
// AVX2 kernel (avx2-6x16, kc = 256): B panels (r = 16) of a row-major B[k×n] and A panels
// (r = 6) of Aᵀ, 512 columns of kc rows 4096 floats apart, in panels of w columns; w < r is a
// ragged edge panel.
func BenchmarkPackCopyAVX2(b *testing.B) {
	if !hasPackAVX2 {
		b.Skip("no AVX2")
	}
	const kc, ld, cols = 256, 4096, 510 // 510 = 85·6 = 34·15
	rnd := rand.New(rand.NewPCG(33, 34))
	src := randSlice(rnd, kc*ld)
	for _, s := range []struct{ r, w int }{{16, 16}, {16, 15}, {6, 6}, {6, 5}} {
		dst := alignedFloats((cols/s.w + 1) * s.r * kc)
		for _, impl := range []struct {
			name string
			f    func(dst, src []float32, ld, kc, w, r int)
		}{
			{"asm", func(dst, src []float32, ld, kc, w, r int) { packCopyAVX2(dst, src, ld, kc, w, r) }},
			{"go", packCopyGo},
		} {
			b.Run(fmt.Sprintf("r%d_w%d_kc%d/%s", s.r, s.w, kc, impl.name), func(b *testing.B) {
				for b.Loop() {
					for j, n := 0, 0; j+s.w <= cols; j, n = j+s.w, n+1 {
						impl.f(dst[n*s.r*kc:], src[j:], ld, kc, s.w, s.r)
					}
				}
				b.ReportMetric(float64(cols/s.w*s.w*kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
			})
		}
	}
}
