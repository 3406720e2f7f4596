package ptq

import (
	"fmt"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

// quantizeLayerFromCheckpoint quantizes decoder layer i of hm for options that need no
// calibration, reading each weight straight from the checkpoint: round-to-nearest with
// integer scales runs over blocks of rows converted from the checkpoint's bytes as they are
// quantized (quant.RTNIntScaleRows), so the layer is never held in float32. The result is
// the one quantizeLayer gives on the float layer, bit for bit. Linears that are skipped, or
// quantized some other way (float scales, int8), are converted whole and go through
// quantizeWeight.
func quantizeLayerFromCheckpoint(hm *hf.Model, i int, opt *Options, cfg *hf.Config) (*LayerResult, error) {
	if hm.Tensors == nil {
		return nil, fmt.Errorf("ptq: hf.Model has no tensors (closed?)")
	}
	hl := &hm.Layers[i]
	lr := &LayerResult{Layer: i}
	var err error
	if lr.AttnNorm, err = floatTensor(hm, hl.InputNorm, cfg.HiddenSize); err != nil {
		return nil, err
	}
	if lr.MLPNorm, err = floatTensor(hm, hl.PostAttnNorm, cfg.HiddenSize); err != nil {
		return nil, err
	}
	acts := map[model.LinearKind]quant.ActQuant{}
	for _, kind := range calib.InputKinds() {
		ir := &InputResult{Kind: kind, Pair: pairOf(kind)}
		lr.Inputs = append(lr.Inputs, ir)
		anyQuantized := false
		for _, c := range consumers(kind) {
			anyQuantized = anyQuantized || !opt.skipped(i, c)
		}
		if act, ok := uncalibratedInput(ir, opt, anyQuantized); ok {
			acts[kind] = act
		}
	}
	qdim, kvdim := cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim
	shapes := map[model.LinearKind][2]int{
		model.Q: {qdim, cfg.HiddenSize}, model.K: {kvdim, cfg.HiddenSize}, model.V: {kvdim, cfg.HiddenSize},
		model.O: {cfg.HiddenSize, qdim}, model.Gate: {cfg.IntermediateSize, cfg.HiddenSize},
		model.Up: {cfg.IntermediateSize, cfg.HiddenSize}, model.Down: {cfg.HiddenSize, cfg.IntermediateSize},
	}
	wo := &opt.Weights
	for _, kind := range model.LayerKinds {
		h := hfLinear(hl, kind)
		out, in := shapes[kind][0], shapes[kind][1]
		if h.Out != out || h.In != in {
			return nil, fmt.Errorf("model: layer %d %v: shape %d×%d, want %d×%d", i, kind, h.Out, h.In, out, in)
		}
		lin := &LinearResult{Kind: kind, Name: linearName(i, kind), Out: out, In: in}
		lr.Linears = append(lr.Linears, lin)
		if h.Bias != nil {
			if lin.Bias, err = floatTensor(hm, *h.Bias, out); err != nil {
				return nil, err
			}
		}
		in0 := kind.SharedInput()[0]
		streaming := !opt.skipped(i, kind) && wo.Bits == 4 && wo.Method == MethodRTN && !wo.ActAwareClip && opt.IntegerScale.Enabled
		if !streaming {
			w, err := floatTensor(hm, h.Weight, out, in)
			if err != nil {
				return nil, err
			}
			if opt.skipped(i, kind) {
				lin.Skipped, lin.Float, lin.Bits, lin.ActBits = true, w, 32, 32
				continue
			}
			lin.ActBits, lin.Act = opt.Activations.Bits, acts[in0]
			if err := quantizeWeight(lin, w, nil, nil, nil, nil, opt); err != nil {
				return nil, fmt.Errorf("%s: %w", lin.Name, err)
			}
			continue
		}
		lin.ActBits, lin.Act = opt.Activations.Bits, acts[in0]
		g, fell := quant.EffectiveGroupSize(in, wo.GroupSize)
		if fell && wo.Fallback == FallbackError {
			return nil, fmt.Errorf("%s: group size %d does not divide the %d input channels (fallback is \"error\")", lin.Name, wo.GroupSize, in)
		}
		lin.Bits, lin.GroupSize, lin.GroupFallback = 4, g, fell
		load, err := rowLoader(hm, h.Weight, out, in)
		if err != nil {
			return nil, err
		}
		iw, fe, ie, err := quant.RTNIntScaleRows(out, in, g, wo.RTN, opt.IntegerScale.Rule, load)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", lin.Name, err)
		}
		lin.Weight, lin.IntScale, lin.FloatScaleWeightError, lin.WeightError = iw.QuantizedWeight, iw, fe, ie
		setAlphaStats(lin)
	}
	return lr, nil
}

// rowLoader returns a quant.RowLoader that converts rows of the checkpoint tensor t
// [out×in] from the checkpoint's bytes.
func rowLoader(hm *hf.Model, t safetensors.TensorInfo, out, in int) (quant.RowLoader, error) {
	if err := checkShape(t, out, in); err != nil {
		return nil, err
	}
	b, err := hm.Tensors.Bytes(t.Name)
	if err != nil {
		return nil, fmt.Errorf("model: tensor %s: %w", t.Name, err)
	}
	es := t.DType.Size()
	if len(b) != out*in*es {
		return nil, fmt.Errorf("model: tensor %s: %d bytes, want %d×%d of %s", t.Name, len(b), out, in, t.DType)
	}
	return func(dst []float32, r0, r1 int) error {
		return safetensors.DecodeFloat32(t.DType, dst, b[r0*in*es:r1*in*es])
	}, nil
}

// floatTensor converts a checkpoint tensor of the given shape to float32.
func floatTensor(hm *hf.Model, t safetensors.TensorInfo, shape ...int) ([]float32, error) {
	if err := checkShape(t, shape...); err != nil {
		return nil, err
	}
	v, err := hm.Tensors.Float32(t.Name)
	if err != nil {
		return nil, fmt.Errorf("model: tensor %s: %w", t.Name, err)
	}
	return v, nil
}

func checkShape(t safetensors.TensorInfo, shape ...int) error {
	ok := len(t.Shape) == len(shape)
	for i := 0; ok && i < len(shape); i++ {
		ok = t.Shape[i] == int64(shape[i])
	}
	if !ok {
		return fmt.Errorf("model: tensor %s has shape %v, want %v", t.Name, t.Shape, shape)
	}
	if !t.DType.IsFloat() {
		return fmt.Errorf("model: tensor %s has type %s, want a float type", t.Name, t.DType)
	}
	return nil
}

// hfLinear returns the checkpoint tensors of one linear of a layer.
func hfLinear(hl *hf.Layer, kind model.LinearKind) hf.Linear {
	switch kind {
	case model.Q:
		return hl.Q
	case model.K:
		return hl.K
	case model.V:
		return hl.V
	case model.O:
		return hl.O
	case model.Gate:
		return hl.Gate
	case model.Up:
		return hl.Up
	case model.Down:
		return hl.Down
	}
	panic(fmt.Sprintf("ptq: %v is not a decoder-layer linear", kind))
}
