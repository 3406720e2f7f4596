package gemm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPackAsm checks the assembly packing routines against the pure-Go ones over panel
// widths (every kernel's mr and nr), ragged widths w < r, k lengths around the 16-step
// transpose block, and padded source strides. Without AVX-512 the assembly is AVX2 (the
// transpose, and the copy for r = 6 and 16; also covered by TestPackTransposeAVX2 and
// TestPackCopyAVX2); under -tags purego there is nothing to compare, and the Go versions are
// covered by the Sgemm tests.
func TestPackAsm(t *testing.T) {
	if !packTransposeAsm(make([]float32, 16*16), make([]float32, 16*16), 16, 16, 16, 16) {
		t.Skip("no assembly packing on this build/CPU")
	}
	r := rand.New(rand.NewPCG(13, 14))
	for _, width := range []int{4, 6, 9, 12, 14, 15, 16, 17, 32, 48, 64} {
		for _, w := range []int{1, width / 2, width - 1, width} {
			if w < 1 {
				continue
			}
			for _, kc := range []int{1, 15, 16, 17, 33, 64, 100, 384} {
				for _, pad := range []int{0, 5} {
					// Transposing pack: w source rows of kc values, stride ld.
					ld := kc + pad
					src := randSlice(r, (w-1)*ld+kc)
					want := slices.Repeat([]float32{-7}, kc*width+8)
					got := slices.Clone(want)
					packTransposeGo(want, src, ld, kc, w, width)
					if packTransposeAsm(got, src, ld, kc, w, width) && !slices.Equal(got, want) {
						t.Fatalf("packTranspose r=%d w=%d kc=%d ld=%d differs", width, w, kc, ld)
					}
					// Copying pack: kc source rows of w values, stride ld.
					ld = w + pad
					src = randSlice(r, (kc-1)*ld+w)
					want = slices.Repeat([]float32{-7}, kc*width+8)
					got = slices.Clone(want)
					packCopyGo(want, src, ld, kc, w, width)
					if packCopyAsm(got, src, ld, kc, w, width) && !slices.Equal(got, want) {
						t.Fatalf("packCopy r=%d w=%d kc=%d ld=%d differs", width, w, kc, ld)
					}
				}
			}
		}
	}
}

// packTransposeBenchShapes are the transposing packs of the NT forward pass: A panels
// (mr = 6 or 14) and B panels (nr = 16 or 32), kc steps of rows 4096 floats apart.
var packTransposeBenchShapes = []struct{ r, w, kc int }{
	{6, 6, 256}, {16, 16, 256}, {14, 14, 384}, {32, 32, 384},
}

func packTransposeBenchOperands(s struct{ r, w, kc int }) (src, dst []float32) {
	rnd := rand.New(rand.NewPCG(23, 24))
	return randSlice(rnd, 512*4096), alignedFloats((512 + 64) * s.kc)
}

// BenchmarkPackTranspose compares packTranspose (assembly where the CPU has it) with
// packTransposeGo on 512 source rows of a [512×4096] matrix, in panels of w rows.
func BenchmarkPackTranspose(b *testing.B) {
	for _, s := range packTransposeBenchShapes {
		src, dst := packTransposeBenchOperands(s)
		for _, impl := range []struct {
			name string
			f    func(dst, src []float32, ld, kc, w, r int)
		}{{"asm", packTranspose}, {"go", packTransposeGo}} {
			b.Run(fmt.Sprintf("r%d_w%d_kc%d/%s", s.r, s.w, s.kc, impl.name), func(b *testing.B) {
				for b.Loop() {
					for i := 0; i+s.w <= 512; i += s.w {
						impl.f(dst[i*s.kc:], src[i*4096:], 4096, s.kc, s.w, s.r)
					}
				}
				b.ReportMetric(float64(512/s.w*s.w*s.kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
			})
		}
	}
}
