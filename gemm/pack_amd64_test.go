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
