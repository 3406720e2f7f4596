package safetensors

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// benchN is the element count of the conversion benchmarks: 4 MiB of fp16, larger than L2
// so that the numbers include memory traffic, as converting a real tensor does.
const benchN = 2 << 20

func randomHalves(n int) []byte {
	r := rand.New(rand.NewPCG(1, 1))
	b := make([]byte, 2*n)
	for i := range n {
		// Realistic weights: normal values of magnitude around 0.01–1.
		binary.LittleEndian.PutUint16(b[2*i:], Float32ToHalf(float32(r.NormFloat64()*0.05)))
	}
	return b
}

// benchPaths runs f as sub-benchmarks "asm" (the exported converter, which uses the vector
// code of convert_amd64.s where the CPU has it) and "go" (the portable reference), so that
// the two are reported side by side. "asm" is skipped where the vector code is not in use.
func benchPaths(b *testing.B, haveAsm bool, bytes int64, asm, goRef func()) {
	for _, p := range []struct {
		name string
		f    func()
	}{{"asm", asm}, {"go", goRef}} {
		b.Run(p.name, func(b *testing.B) {
			if p.name == "asm" && !haveAsm {
				b.Skip("no vector code in this build or on this CPU")
			}
			b.SetBytes(bytes)
			for b.Loop() {
				p.f()
			}
		})
	}
}

// BenchmarkF16ToF32 reports throughput in source (fp16) bytes per second.
func BenchmarkF16ToF32(b *testing.B) {
	src := randomHalves(benchN)
	dst := make([]float32, benchN)
	benchPaths(b, hasF16C, int64(len(src)),
		func() { F16ToF32(dst, src) },
		func() { f16ToF32Go(dst, src) })
}

// BenchmarkF16ToF32Scalar is the same conversion through the branchy bit-manipulation
// function, the alternative to the table that f16ToF32Go uses.
func BenchmarkF16ToF32Scalar(b *testing.B) {
	src := randomHalves(benchN)
	dst := make([]float32, benchN)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		for i := range dst {
			dst[i] = HalfToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	}
}

// BenchmarkBF16ToF32 reports throughput in source (bf16) bytes per second.
func BenchmarkBF16ToF32(b *testing.B) {
	src := randomHalves(benchN) // any bit patterns do
	dst := make([]float32, benchN)
	benchPaths(b, hasAVX2, int64(len(src)),
		func() { BF16ToF32(dst, src) },
		func() { bf16ToF32Go(dst, src) })
}

func BenchmarkF32FromBytes(b *testing.B) {
	src := make([]byte, 4*benchN)
	dst := make([]float32, benchN)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		F32FromBytes(dst, src)
	}
}

// BenchmarkFloat32ToF16 reports throughput in destination (fp16) bytes per second, so that
// its numbers compare with the decoders'; the float32 source is twice as many bytes.
func BenchmarkFloat32ToF16(b *testing.B) {
	src := make([]float32, benchN)
	F16ToF32(src, randomHalves(benchN))
	for i := range src {
		src[i] *= 1.0001 // not exactly representable: exercise rounding
	}
	dst := make([]byte, 2*benchN)
	benchPaths(b, hasF16C, int64(len(dst)),
		func() { Float32ToF16(dst, src) },
		func() { float32ToF16Go(dst, src) })
}

func BenchmarkFloat32ToBF16(b *testing.B) {
	src := make([]float32, benchN)
	F16ToF32(src, randomHalves(benchN))
	dst := make([]byte, 2*benchN)
	b.SetBytes(int64(len(dst)))
	for b.Loop() {
		Float32ToBF16(dst, src)
	}
}

// BenchmarkOpenTiny opens and closes the committed tiny-llama checkpoint (10 MB, 39 tensors):
// the cost of parsing and validating a header and mapping the file.
func BenchmarkOpenTiny(b *testing.B) {
	p := sharedtest.Testdata("tiny-llama/model.safetensors")
	for b.Loop() {
		c, err := Open(p)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkFloat32Tiny converts every tensor of tiny-llama to float32 into a reused buffer:
// reading through the mapping plus conversion, in fp16 bytes per second.
func BenchmarkFloat32Tiny(b *testing.B) {
	c, err := Open(sharedtest.Testdata("tiny-llama/model.safetensors"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var total int64
	var buf []float32
	for _, t := range c.Tensors() {
		total += t.Bytes()
		buf = make([]float32, max(int64(len(buf)), t.NumElements()))
	}
	b.SetBytes(total)
	ts := c.Tensors()
	for b.Loop() {
		for _, t := range ts {
			if err := c.Float32Into(t.Name, buf[:t.NumElements()]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
