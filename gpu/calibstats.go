package gpu

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/model"
)

// The statistics file of `odyssey-rt calib`'s collect command (docs/gpu-calibration.md,
// "Statistics file"): a 32-byte header, four input records (q, o, gate, down) with their
// per-channel vectors and optional XᵀX, the output records, and a trailer.

// Magic numbers of the statistics file.
const (
	CalibStatsMagic   = "ODYCALS1"
	CalibStatsTrailer = "ODYCALE1"
)

// XᵀX storage codes of an input record.
const (
	xtxNone = 0
	xtxF32  = 1
	xtxF64  = 2
)

// calibInputKinds are the four inputs in file order.
var calibInputKinds = calib.InputKinds()

// CalibInputWidth returns the width of the input that kind reads in a layer of cfg.
func CalibInputWidth(cfg *hf.Config, kind model.LinearKind) int {
	switch kind.SharedInput()[0] {
	case model.O:
		return cfg.NumHeads * cfg.HeadDim
	case model.Down:
		return cfg.IntermediateSize
	}
	return cfg.HiddenSize
}

// ReadCalibStats reads a statistics file for layer of cfg. hessian says which inputs must
// carry XᵀX (the collect command's list) and outputs whether output records are expected
// for the linears reading them; anything else, a width that is not the config's, a
// truncated or longer file, is an error naming the file. Vectors are read as they are
// decoded (XᵀX widened to float64 straight into its accumulator), so the host holds one
// copy of the largest Hessian, never the file.
func ReadCalibStats(path string, cfg *hf.Config, layer int, hessian func(model.LinearKind) bool, outputs bool) (*calib.LayerStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ls, err := decodeCalibStats(bufio.NewReaderSize(f, 1<<20), cfg, layer, hessian, outputs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ls, nil
}

func decodeCalibStats(r io.Reader, cfg *hf.Config, layer int, hessian func(model.LinearKind) bool, outputs bool) (*calib.LayerStats, error) {
	le := binary.LittleEndian
	var hdr [32]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("statistics header: %w", noEOF(err))
	}
	if string(hdr[:8]) != CalibStatsMagic {
		return nil, fmt.Errorf("not a statistics file (magic %q, want %q)", hdr[:8], CalibStatsMagic)
	}
	gotLayer, nIn, nOut := le.Uint32(hdr[8:]), le.Uint32(hdr[12:]), le.Uint32(hdr[16:])
	rows := int64(le.Uint64(hdr[24:]))
	switch {
	case int64(gotLayer) != int64(layer):
		return nil, fmt.Errorf("statistics of layer %d, want %d", gotLayer, layer)
	case nIn != uint32(len(calibInputKinds)):
		return nil, fmt.Errorf("%d input records, want %d", nIn, len(calibInputKinds))
	case nOut > uint32(len(model.LayerKinds)):
		return nil, fmt.Errorf("%d output records, at most %d", nOut, len(model.LayerKinds))
	case rows <= 0 || rows > 1<<40:
		return nil, fmt.Errorf("%d rows", rows)
	}
	ls := &calib.LayerStats{Layer: layer, Inputs: map[model.LinearKind]*calib.Stats{}}
	for _, kind := range calibInputKinds {
		var ih [32]byte
		if _, err := io.ReadFull(r, ih[:]); err != nil {
			return nil, fmt.Errorf("%v input record: %w", kind, noEOF(err))
		}
		k, in, xt := le.Uint32(ih[0:]), le.Uint32(ih[4:]), le.Uint32(ih[8:])
		want := CalibInputWidth(cfg, kind)
		wantH := hessian != nil && hessian(kind)
		switch {
		case k != uint32(kind):
			return nil, fmt.Errorf("input record of kind %d where %v (%d) belongs", k, kind, int(kind))
		case int64(in) != int64(want):
			return nil, fmt.Errorf("%v input of width %d, the config says %d", kind, in, want)
		case xt > xtxF64:
			return nil, fmt.Errorf("%v input: XᵀX storage %d is not 0, 1 or 2", kind, xt)
		case (xt != xtxNone) != wantH:
			return nil, fmt.Errorf("%v input: XᵀX present %v, requested %v", kind, xt != xtxNone, wantH)
		}
		s := calib.Sums{In: want, Rows: rows,
			TokenSum: math.Float64frombits(le.Uint64(ih[16:])),
			TokenMin: math.Float32frombits(le.Uint32(ih[24:])),
			Min:      make([]float32, want), Max: make([]float32, want), SumSq: make([]float64, want)}
		if err := readF32s(r, s.Min); err != nil {
			return nil, fmt.Errorf("%v input min: %w", kind, err)
		}
		if err := readF32s(r, s.Max); err != nil {
			return nil, fmt.Errorf("%v input max: %w", kind, err)
		}
		if err := readF64s(r, s.SumSq); err != nil {
			return nil, fmt.Errorf("%v input sumsq: %w", kind, err)
		}
		if xt != xtxNone {
			s.XTX = make([]float64, want*want)
			var err error
			if xt == xtxF32 {
				err = readF32sAsF64(r, s.XTX)
			} else {
				err = readF64s(r, s.XTX)
			}
			if err != nil {
				return nil, fmt.Errorf("%v input XᵀX: %w", kind, err)
			}
		}
		st, err := calib.StatsFromSums(s)
		if err != nil {
			return nil, fmt.Errorf("%v input: %w", kind, err)
		}
		ls.Inputs[kind] = st
	}
	var wantOut []model.LinearKind
	if outputs && hessian != nil {
		for _, k := range model.LayerKinds {
			if hessian(k.SharedInput()[0]) {
				wantOut = append(wantOut, k)
			}
		}
	}
	if int(nOut) != len(wantOut) {
		return nil, fmt.Errorf("%d output records, want %d", nOut, len(wantOut))
	}
	for _, kind := range wantOut {
		var oh [16]byte
		if _, err := io.ReadFull(r, oh[:]); err != nil {
			return nil, fmt.Errorf("%v output record: %w", kind, noEOF(err))
		}
		if k := le.Uint32(oh[0:]); k != uint32(kind) {
			return nil, fmt.Errorf("output record of kind %d where %v (%d) belongs", k, kind, int(kind))
		}
		if ls.Outputs == nil {
			ls.Outputs = map[model.LinearKind]*calib.OutputStats{}
		}
		ls.Outputs[kind] = &calib.OutputStats{SumSq: math.Float64frombits(le.Uint64(oh[8:])), Rows: rows}
	}
	var tr [8]byte
	if _, err := io.ReadFull(r, tr[:]); err != nil {
		return nil, fmt.Errorf("trailer: %w", noEOF(err))
	}
	if string(tr[:]) != CalibStatsTrailer {
		return nil, fmt.Errorf("trailer %q, want %q", tr[:], CalibStatsTrailer)
	}
	if n, _ := io.Copy(io.Discard, io.LimitReader(r, 1)); n != 0 {
		return nil, errors.New("bytes after the trailer")
	}
	if err := calib.CheckLayerStats(ls); err != nil {
		return nil, err
	}
	return ls, nil
}

// WriteCalibStats writes ls in the statistics file format, XᵀX in float64 (the Go test
// double of the runtime uses it, so that decoding is checked bit for bit; the runtime writes
// float32). outputs lists the output records to write, in LayerKinds order.
func WriteCalibStats(w io.Writer, ls *calib.LayerStats, outputs []model.LinearKind) error {
	le := binary.LittleEndian
	bw := bufio.NewWriterSize(w, 1<<20)
	var hdr [32]byte
	copy(hdr[:], CalibStatsMagic)
	le.PutUint32(hdr[8:], uint32(ls.Layer))
	le.PutUint32(hdr[12:], uint32(len(calibInputKinds)))
	le.PutUint32(hdr[16:], uint32(len(outputs)))
	s0 := ls.Inputs[calibInputKinds[0]]
	if s0 == nil {
		return errors.New("gpu: no statistics for the q input")
	}
	le.PutUint64(hdr[24:], uint64(s0.Rows))
	bw.Write(hdr[:])
	buf := make([]byte, 8)
	for _, kind := range calibInputKinds {
		s := ls.Inputs[kind]
		if s == nil {
			return fmt.Errorf("gpu: no statistics for the %v input", kind)
		}
		sums := s.Sums()
		var ih [32]byte
		le.PutUint32(ih[0:], uint32(kind))
		le.PutUint32(ih[4:], uint32(sums.In))
		if sums.XTX != nil {
			le.PutUint32(ih[8:], xtxF64)
		}
		le.PutUint64(ih[16:], math.Float64bits(sums.TokenSum))
		le.PutUint32(ih[24:], math.Float32bits(sums.TokenMin))
		bw.Write(ih[:])
		for _, v := range sums.Min {
			le.PutUint32(buf, math.Float32bits(v))
			bw.Write(buf[:4])
		}
		for _, v := range sums.Max {
			le.PutUint32(buf, math.Float32bits(v))
			bw.Write(buf[:4])
		}
		for _, v := range sums.SumSq {
			le.PutUint64(buf, math.Float64bits(v))
			bw.Write(buf)
		}
		for _, v := range sums.XTX {
			le.PutUint64(buf, math.Float64bits(v))
			bw.Write(buf)
		}
	}
	for _, k := range outputs {
		o := ls.Outputs[k]
		if o == nil {
			return fmt.Errorf("gpu: no output statistics for %v", k)
		}
		var oh [16]byte
		le.PutUint32(oh[0:], uint32(k))
		le.PutUint64(oh[8:], math.Float64bits(o.SumSq))
		bw.Write(oh[:])
	}
	bw.WriteString(CalibStatsTrailer)
	return bw.Flush()
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readF32s, readF64s and readF32sAsF64 fill dst from little-endian values, 64 KiB at a time.
func readF32s(r io.Reader, dst []float32) error {
	return readLE(r, dst, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
}

func readF32sAsF64(r io.Reader, dst []float64) error {
	return readLE(r, dst, 4, func(b []byte) float64 {
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	})
}

func readF64s(r io.Reader, dst []float64) error {
	return readLE(r, dst, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
}

// readLE reads len(dst) values of size bytes each through a 64 KiB buffer, decoding each with
// decode; a short read is io.ErrUnexpectedEOF.
func readLE[T any](r io.Reader, dst []T, size int, decode func([]byte) T) error {
	var b [1 << 16]byte
	for i := 0; i < len(dst); {
		n := min(len(dst)-i, len(b)/size)
		if _, err := io.ReadFull(r, b[:size*n]); err != nil {
			return noEOF(err)
		}
		for j := range n {
			dst[i+j] = decode(b[size*j:])
		}
		i += n
	}
	return nil
}
