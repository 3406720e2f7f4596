package artifact

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
)

// Export to compressed-tensors (the checkpoint format of llm-compressor that vLLM loads), in
// its "pack-quantized" form. Per quantized linear NAME:
//
//	NAME.weight_packed  I32 [out, ⌈in/8⌉]  eight int4 codes per int32 along the input
//	                                        dimension, code i of a word in bits 4i..4i+3
//	                                        (little nibble first), stored as code + 8
//	                                        (0..15), padding nibbles 0
//	NAME.weight_scale   F16 [out, in/group] float group scales (per channel: [out, 1])
//	NAME.weight_shape   I64 [2]             [out, in]
//	NAME.bias           F16 [out]           when the linear has one
//
// Dequantized, W[o, k] = weight_scale[o, k/group] · code[o, k]: the integer scales are
// multiplied out (ŝ·s_c/α_c, the scale the W4A8 kernel computes with) and rounded to fp16.
// Norms, embeddings and lm_head are fp16 (the folded norms rounded; vLLM holds them in the
// model's dtype). config.json's quantization_config has quant_method "compressed-tensors", format
// "pack-quantized", one config group per weight strategy (group of the recipe's size, or
// channel for the linears that fell back), int8 dynamic per-token symmetric input
// activations (none for 16-bit activations), and ignore ["lm_head", skipped linears...].
//
// A W8 linear (w8a8-smoothquant) is exported in the "int-quantized" form instead:
//
//	NAME.weight         I8  [out, in]           the int8 codes (−127..127)
//	NAME.weight_scale   F16 [out, 1]            per-channel scales
//
// in a config group with 8-bit per-channel weights and format "int-quantized" (the global
// format too, or "mixed-precision" beside pack-quantized groups). compressed-tensors
// quantizes per-token activations with absmax/127.5 and codes −128..127, Odyssey with
// absmax/127 and −127..127 (docs/artifact.md gives the perplexity difference).
//
// What is not carried over: the static per-tensor activation scales and the per-layer
// policy (compressed-tensors W4A8 quantizes every input per token at run time; LAE stays
// folded into the norms and v/up rows, so it still helps), the exact integer scales (the
// fp16 float scale is their product), and the FastGEMM packing (the importer packs for its
// own kernel).

// ctSuffixes of the compressed-tensors tensors of one quantized linear.
const (
	ctPacked = ".weight_packed"
	ctScale  = ".weight_scale"
	ctShape  = ".weight_shape"
)

// PackInt32 packs int4 codes q [n, k] (row-major, each in −8..7) into compressed-tensors'
// pack-quantized int32 words [n, ⌈k/8⌉], returned as little-endian bytes: word j of row r
// holds code k = 8j+i, plus 8, in bits 4i..4i+3; nibbles past k are 0.
func PackInt32(q []int8, n, k int) []byte {
	w := (k + 7) / 8
	out := make([]byte, 4*n*w)
	for r := range n {
		row := q[r*k : (r+1)*k]
		for j := range w {
			var word uint32
			for i := range 8 {
				if c := 8*j + i; c < k {
					word |= uint32(uint8(row[c]+8)&0x0F) << (4 * i)
				}
			}
			binary.LittleEndian.PutUint32(out[4*(r*w+j):], word)
		}
	}
	return out
}

// UnpackInt32 reverses PackInt32.
func UnpackInt32(packed []byte, n, k int) ([]int8, error) {
	w := (k + 7) / 8
	if len(packed) != 4*n*w {
		return nil, fmt.Errorf("artifact: unpack int32: %d bytes, a %d×%d weight packs into %d", len(packed), n, k, 4*n*w)
	}
	q := make([]int8, n*k)
	for r := range n {
		for j := range w {
			word := binary.LittleEndian.Uint32(packed[4*(r*w+j):])
			for i := range 8 {
				if c := 8*j + i; c < k {
					q[r*k+c] = int8((word>>(4*i))&0x0F) - 8
				}
			}
		}
	}
	return q, nil
}

// ctLayerItems lists layer i's tensors in compressed-tensors form, converted from its layer
// checkpoint.
func ctLayerItems(ck *safetensors.Checkpoint, cfg *hf.Config, i int, rec LayerRecord) ([]item, error) {
	var its []item
	copyOne := func(name string) error {
		t, ok := ck.Info(name)
		if !ok {
			return fmt.Errorf("artifact: layer checkpoint %d: %s missing", i, name)
		}
		its = append(its, item{info: safetensors.TensorInfo{Name: name, DType: t.DType, Shape: t.Shape}, layer: i,
			write: func(sw *safetensors.Writer, ck *safetensors.Checkpoint) error {
				b, err := ck.Bytes(name)
				if err != nil {
					return err
				}
				return sw.WriteTensor(name, b)
			}})
		return nil
	}
	// Norms go in the model's dtype, as every other float tensor of a compressed-tensors
	// checkpoint (vLLM loads them into fp16 parameters anyway).
	// A float32 vector of the checkpoint (norms, biases), converted to fp16.
	f16Vector := func(name string, n int) item {
		return item{info: safetensors.TensorInfo{Name: name, DType: safetensors.F16, Shape: []int64{int64(n)}}, layer: i,
			write: func(sw *safetensors.Writer, ck *safetensors.Checkpoint) error {
				v, err := readFloat(ck, name, false, n)
				if err != nil {
					return err
				}
				b, err := f16Bytes(name, v)
				if err != nil {
					return err
				}
				return sw.WriteTensor(name, b)
			}}
	}
	for _, n := range []string{attnNormName(i), mlpNormName(i)} {
		its = append(its, f16Vector(n, cfg.HiddenSize))
	}
	byName := map[string]LinearRecord{}
	for _, l := range rec.Linears {
		byName[l.Name] = l
	}
	for _, sp := range specs(cfg, i, 0) {
		lr, ok := byName[sp.name]
		if !ok {
			return nil, fmt.Errorf("artifact: layer checkpoint %d has no record of %s", i, sp.name)
		}
		if sp.bias {
			// In the model's dtype, like the norms (the artifact keeps it in float32).
			its = append(its, f16Vector(sp.name+SuffixBias, sp.out))
		}
		if lr.Skipped {
			if err := copyOne(sp.name + SuffixWeight); err != nil {
				return nil, err
			}
			continue
		}
		if lr.Bits == 8 {
			its = append(its, ctInt8Items(i, sp)...)
			continue
		}
		if lr.GroupSize <= 0 || sp.in%lr.GroupSize != 0 {
			return nil, fmt.Errorf("artifact: %s: group size %d does not tile %d input channels", sp.name, lr.GroupSize, sp.in)
		}
		// The three tensors are written one after another (names sort weight_packed,
		// weight_scale, weight_shape); the decoded linear is shared and dropped after.
		var dec *qresult.LinearResult
		spec := sp
		get := func(ck *safetensors.Checkpoint) (*qresult.LinearResult, error) {
			if dec == nil {
				var err error
				if dec, err = decodeLinear(ck, spec, false); err != nil {
					return nil, err
				}
			}
			return dec, nil
		}
		name := sp.name
		its = append(its,
			item{info: safetensors.TensorInfo{Name: name + ctPacked, DType: safetensors.I32, Shape: []int64{int64(sp.out), int64((sp.in + 7) / 8)}}, layer: i,
				write: func(sw *safetensors.Writer, ck *safetensors.Checkpoint) error {
					d, err := get(ck)
					if err != nil {
						return err
					}
					return sw.WriteTensor(name+ctPacked, PackInt32(d.Weight.Q, d.Out, d.In))
				}},
			item{info: safetensors.TensorInfo{Name: name + ctScale, DType: safetensors.F16, Shape: []int64{int64(sp.out), int64(sp.in / lr.GroupSize)}}, layer: i,
				write: func(sw *safetensors.Writer, ck *safetensors.Checkpoint) error {
					d, err := get(ck)
					if err != nil {
						return err
					}
					b, err := ctScales(d)
					if err != nil {
						return err
					}
					return sw.WriteTensor(name+ctScale, b)
				}},
			item{info: safetensors.TensorInfo{Name: name + ctShape, DType: safetensors.I64, Shape: []int64{2}}, layer: i,
				write: func(sw *safetensors.Writer, ck *safetensors.Checkpoint) error {
					dec = nil
					b := make([]byte, 16)
					binary.LittleEndian.PutUint64(b, uint64(spec.out))
					binary.LittleEndian.PutUint64(b[8:], uint64(spec.in))
					return sw.WriteTensor(name+ctShape, b)
				}},
		)
	}
	slices.SortStableFunc(its, func(a, b item) int { return strings.Compare(a.info.Name, b.info.Name) })
	return its, nil
}

// ctInt8Items are the int-quantized tensors of a W8 linear: NAME.weight, I8 [out, in] (the
// codes, −127..127), and NAME.weight_scale, F16 [out, 1] (the per-channel scales).
func ctInt8Items(i int, sp linearSpec) []item {
	name := sp.name
	return []item{
		{info: safetensors.TensorInfo{Name: name + SuffixWeight, DType: safetensors.I8, Shape: []int64{int64(sp.out), int64(sp.in)}}, layer: i,
			write: func(sw *safetensors.Writer, ck *safetensors.Checkpoint) error {
				b, err := ck.Bytes(name + SuffixQWeight8)
				if err != nil {
					return err
				}
				if len(b) != sp.out*sp.in {
					return fmt.Errorf("artifact: %s: %d bytes, want %d×%d", name+SuffixQWeight8, len(b), sp.out, sp.in)
				}
				return sw.WriteTensor(name+SuffixWeight, b)
			}},
		{info: safetensors.TensorInfo{Name: name + ctScale, DType: safetensors.F16, Shape: []int64{int64(sp.out), 1}}, layer: i,
			write: func(sw *safetensors.Writer, ck *safetensors.Checkpoint) error {
				s, err := readF32(ck, name+SuffixScale8, sp.out)
				if err != nil {
					return err
				}
				b, err := f16Scales(name, s)
				if err != nil {
					return err
				}
				return sw.WriteTensor(name+ctScale, b)
			}},
	}
}

// ctScales returns the fp16 float group scales [out, groups] of a decoded linear: the
// integer scales multiplied out when there are any.
func ctScales(d *qresult.LinearResult) ([]byte, error) {
	s := d.Weight.Scales
	if d.IntScale != nil {
		s = d.IntScale.EffectiveScales()
	}
	return f16Scales(d.Name, s)
}

// f16Scales converts scales to fp16, refusing one that overflows or flushes to zero.
func f16Scales(name string, s []float32) ([]byte, error) {
	b := make([]byte, 2*len(s))
	safetensors.Float32ToF16(b, s)
	for i := range s {
		h := binary.LittleEndian.Uint16(b[2*i:])
		if h&0x7C00 == 0x7C00 || h&0x7FFF == 0 {
			return nil, fmt.Errorf("artifact: %s: scale %g at [%d] does not survive fp16 (compressed-tensors stores scales in the model's dtype)", name, s[i], i)
		}
	}
	return b, nil
}

// ctArgs are compressed-tensors' QuantizationArgs as serialised in config.json.
type ctArgs struct {
	NumBits        int            `json:"num_bits"`
	Type           string         `json:"type"`
	Symmetric      bool           `json:"symmetric"`
	GroupSize      *int           `json:"group_size"`
	Strategy       string         `json:"strategy"`
	BlockStructure *string        `json:"block_structure"`
	Dynamic        bool           `json:"dynamic"`
	Actorder       *string        `json:"actorder"`
	Observer       *string        `json:"observer"`
	ObserverKwargs map[string]any `json:"observer_kwargs"`
}

// ctScheme is one entry of config_groups.
type ctScheme struct {
	Targets           []string `json:"targets"`
	Weights           ctArgs   `json:"weights"`
	InputActivations  *ctArgs  `json:"input_activations"`
	OutputActivations *ctArgs  `json:"output_activations"`
	Format            string   `json:"format"`
}

// CTQuantConfig is the quantization_config block of a compressed-tensors export.
type CTQuantConfig struct {
	QuantMethod            string              `json:"quant_method"`
	Format                 string              `json:"format"`
	QuantizationStatus     string              `json:"quantization_status"`
	ConfigGroups           map[string]ctScheme `json:"config_groups"`
	Ignore                 []string            `json:"ignore"`
	KVCacheScheme          *ctArgs             `json:"kv_cache_scheme"`
	GlobalCompressionRatio *float64            `json:"global_compression_ratio"`
}

// ctQuantConfig builds the compressed-tensors config from the layer records: one group per
// weight strategy; with a single group it targets every Linear (lm_head ignored), with
// several each lists its modules by name, so that no module matches two groups.
func ctQuantConfig(recs []LayerRecord, p *Provenance) CTQuantConfig {
	type key struct {
		group   int // 0: channel
		bits    int
		actBits int
	}
	members := map[key][]string{}
	var keys []key
	ignore := []string{"lm_head"}
	for _, r := range recs {
		for _, l := range r.Linears {
			if l.Skipped {
				ignore = append(ignore, l.Name)
				continue
			}
			k := key{group: l.GroupSize, bits: l.Bits, actBits: l.ActBits}
			if l.Bits == 8 || l.GroupSize == l.In && (p.Scheme.Weights.GroupSize == 0 || l.GroupFallback) {
				k.group = 0
			}
			if _, ok := members[k]; !ok {
				keys = append(keys, k)
			}
			members[k] = append(members[k], l.Name)
		}
	}
	observer := "minmax"
	cfg := CTQuantConfig{QuantMethod: "compressed-tensors", Format: "pack-quantized", QuantizationStatus: "compressed",
		ConfigGroups: map[string]ctScheme{}, Ignore: ignore}
	formats := map[string]bool{}
	for gi, k := range keys {
		w := ctArgs{NumBits: 4, Type: "int", Symmetric: true, Strategy: "channel", Observer: &observer, ObserverKwargs: map[string]any{}}
		format := "pack-quantized"
		if k.bits == 8 {
			// int8 per-channel weights, stored unpacked: compressed-tensors' int-quantized
			// form (what llm-compressor writes for W8A8 int8 schemes).
			w.NumBits, format = 8, "int-quantized"
		}
		if k.group > 0 {
			g := k.group
			w.GroupSize, w.Strategy = &g, "group"
		}
		formats[format] = true
		s := ctScheme{Targets: []string{"Linear"}, Weights: w, Format: format}
		if len(keys) > 1 {
			s.Targets = members[k]
		}
		if k.actBits == 8 {
			s.InputActivations = &ctArgs{NumBits: 8, Type: "int", Symmetric: true, Strategy: "token", Dynamic: true, ObserverKwargs: map[string]any{}}
		}
		cfg.ConfigGroups[fmt.Sprintf("group_%d", gi)] = s
	}
	switch {
	case len(formats) > 1:
		cfg.Format = "mixed-precision"
	case formats["int-quantized"]:
		cfg.Format = "int-quantized"
	}
	return cfg
}
