package gemm

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPackAsm checks the assembly packing routines against the pure-Go ones over panel
// widths (every kernel's mr and nr), ragged widths w < r, k lengths around the 16-step
// transpose block, and padded source strides. Under -tags purego (or without AVX-512)
// there is nothing to compare, and the Go versions are covered by the Sgemm tests.
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
