package artifact

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"sync"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/internal/parallel"
)

// NonFiniteError names the first NaN or ±Inf of a checkpoint tensor.
type NonFiniteError struct {
	File, Tensor string
	Shape        []int64
	Index        int64 // flat element index
	Value        float64
}

func (e *NonFiniteError) Error() string {
	idx := fmt.Sprint(e.Index)
	if len(e.Shape) == 2 && e.Shape[1] > 0 {
		idx = fmt.Sprintf("[%d, %d]", e.Index/e.Shape[1], e.Index%e.Shape[1])
	}
	return fmt.Sprintf("%s: tensor %s has a non-finite value (%v) at %s; a model with NaN or Inf weights cannot be quantized", e.File, e.Tensor, e.Value, idx)
}

// ScanFinite checks that every float tensor in infos holds only finite values, reading the
// bits directly (no conversion) on all cores, and returns a *NonFiniteError for the first
// offender in infos order. progress, when set, is called with the bytes checked so far.
//
// It reads the files with pread into a buffer per core rather than through the
// checkpoint's mapping: a scan of the whole model through the mapping would fault in (and
// keep resident) every page of it, and faulting 4 KiB at a time is slower than reading.
func ScanFinite(ck *safetensors.Checkpoint, infos []safetensors.TensorInfo, progress func(done, total int64)) error {
	type job struct {
		t      int // index into infos
		lo, hi int64
	}
	const chunk = 4 << 20
	var jobs []job
	var total int64
	for i, t := range infos {
		switch t.DType {
		case safetensors.F16, safetensors.BF16, safetensors.F32, safetensors.F64:
		default:
			continue
		}
		n := t.Bytes()
		es := int64(t.DType.Size())
		step := chunk / es * es
		for lo := int64(0); lo < n; lo += step {
			jobs = append(jobs, job{i, lo, min(n, lo+step)})
		}
		total += n
	}
	files := map[string]*dataFile{}
	defer func() {
		for _, f := range files {
			f.f.Close()
		}
	}()
	for _, t := range infos {
		if files[t.File] == nil {
			f, err := openDataFile(t.File)
			if err != nil {
				return err
			}
			files[t.File] = f
		}
	}
	results := make([]int64, len(jobs)) // first bad element index in the job, −1 if none
	errs := make([]error, len(jobs))
	var done int64
	var mu sync.Mutex
	bufs := make([][]byte, parallel.Workers(len(jobs)))
	parallel.For(len(jobs), func(worker, j int) {
		if bufs[worker] == nil {
			bufs[worker] = make([]byte, chunk)
		}
		jb := jobs[j]
		t := infos[jb.t]
		f := files[t.File]
		b := bufs[worker][:jb.hi-jb.lo]
		if _, err := f.f.ReadAt(b, f.base+t.Begin+jb.lo); err != nil {
			errs[j] = fmt.Errorf("artifact: reading %s from %s: %w", t.Name, t.File, err)
			return
		}
		es := int64(t.DType.Size())
		results[j] = -1
		if k := firstNonFinite(t.DType, b); k >= 0 {
			results[j] = jb.lo/es + int64(k)
		}
		if progress != nil {
			mu.Lock()
			done += jb.hi - jb.lo
			progress(done, total)
			mu.Unlock()
		}
	})
	for j, jb := range jobs {
		if errs[j] != nil {
			return errs[j]
		}
		if results[j] < 0 {
			continue
		}
		t := infos[jb.t]
		b, _ := ck.Bytes(t.Name)
		return &NonFiniteError{File: t.File, Tensor: t.Name, Shape: t.Shape, Index: results[j], Value: elemValue(t.DType, b, results[j])}
	}
	return nil
}

// dataFile is a safetensors file opened for pread, with the offset of its data section.
type dataFile struct {
	f    *os.File
	base int64
}

// openDataFile opens a safetensors file that safetensors.Open has already validated and
// finds its data section (after the 8-byte length and the header).
func openDataFile(path string) (*dataFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	var n [8]byte
	if _, err := f.ReadAt(n[:], 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("artifact: %s: %w", path, err)
	}
	return &dataFile{f: f, base: 8 + int64(binary.LittleEndian.Uint64(n[:]))}, nil
}

// firstNonFinite returns the index of the first NaN or ±Inf element of b, or −1. On amd64
// with AVX2 a vector kernel (kernels_amd64.s) skips the leading 128-byte blocks that hold
// only finite values and stops at the first that does not; firstNonFiniteGo finishes from
// there (the exact index, and the last len(b)%128 bytes). Elsewhere, and with -tags purego,
// finiteBlocks returns 0 and firstNonFiniteGo does it all.
func firstNonFinite(dt safetensors.DType, b []byte) int {
	n := finiteBlocks(dt, b) // a multiple of 128 bytes, so of the element size
	i := firstNonFiniteGo(dt, b[n:])
	if i >= 0 {
		i += n / dt.Size()
	}
	return i
}

// firstNonFiniteGo is firstNonFinite in Go, the reference of the vector kernels. fp16 and
// bf16 are tested four at a time: an element is non-finite when its exponent bits are all
// ones, and the SWAR test below finds a 16-bit lane equal to the exponent mask.
func firstNonFiniteGo(dt safetensors.DType, b []byte) int {
	switch dt {
	case safetensors.F16, safetensors.BF16:
		var mask uint64 = 0x7C007C007C007C00
		var m16 uint16 = 0x7C00
		if dt == safetensors.BF16 {
			mask, m16 = 0x7F807F807F807F80, 0x7F80
		}
		i := 0
		for ; i+8 <= len(b); i += 8 {
			v := binary.LittleEndian.Uint64(b[i:])
			y := (v & mask) ^ mask // a lane is 0 exactly when its exponent is all ones
			if (y-0x0001000100010001)&^y&0x8000800080008000 != 0 {
				break
			}
		}
		for ; i+2 <= len(b); i += 2 {
			if binary.LittleEndian.Uint16(b[i:])&m16 == m16 {
				return i / 2
			}
		}
	case safetensors.F32:
		for i := 0; i+4 <= len(b); i += 4 {
			if binary.LittleEndian.Uint32(b[i:])&0x7F800000 == 0x7F800000 {
				return i / 4
			}
		}
	case safetensors.F64:
		for i := 0; i+8 <= len(b); i += 8 {
			if binary.LittleEndian.Uint64(b[i:])&0x7FF0000000000000 == 0x7FF0000000000000 {
				return i / 8
			}
		}
	}
	return -1
}

func elemValue(dt safetensors.DType, b []byte, i int64) float64 {
	switch dt {
	case safetensors.F16:
		return float64(safetensors.HalfToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
	case safetensors.BF16:
		return float64(safetensors.BFloat16ToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
	case safetensors.F32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	case safetensors.F64:
		return math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return math.NaN()
}
