package artifact

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
	"github.com/odyssey-llm/odyssey/quant"
)

// encodeLinear returns the stored tensors of one linear (docs/fastgemm-layout.md for a
// quantized one; the fp16 weight for one the recipe skips) and the float32 copies a resumed
// run needs to compute exactly as the interrupted one did (the bias, and a skipped linear's
// weight, which the artifact rounds to fp16).
func encodeLinear(lin *qresult.LinearResult) (tensors, extras []safetensors.Tensor, err error) {
	name := lin.Name
	if lin.Bias != nil {
		// float32, like the norms: a bias with an equalization folded in (v_proj's under
		// LAE on Qwen2) holds new numbers that fp16 would round, away from what the
		// layer's static scales were calibrated on.
		for j, v := range lin.Bias {
			if !(v >= -math.MaxFloat32 && v <= math.MaxFloat32) {
				return nil, nil, fmt.Errorf("artifact: %s: %w: value %v at [%d] is not finite", name+SuffixBias, ErrNotRepresentable, v, j)
			}
		}
		tensors = append(tensors, f32Tensor(name+SuffixBias, lin.Bias, int64(lin.Out)))
	}
	if lin.Skipped {
		b, err := f16Bytes(name+SuffixWeight, lin.Float)
		if err != nil {
			return nil, nil, err
		}
		tensors = append(tensors, safetensors.Tensor{Name: name + SuffixWeight, DType: safetensors.F16, Shape: []int64{int64(lin.Out), int64(lin.In)}, Data: b})
		extras = append(extras, f32Tensor(resumePrefix+name+SuffixWeight, lin.Float, int64(lin.Out), int64(lin.In)))
		return tensors, extras, nil
	}
	if w8 := lin.Weight8; w8 != nil && lin.Bits == 8 {
		if w8.Out != lin.Out || w8.In != lin.In || len(w8.Q) != lin.Out*lin.In || len(w8.Scales) != lin.Out {
			return nil, nil, fmt.Errorf("artifact: %s: int8 weight is %d×%d, linear %d×%d", name, w8.Out, w8.In, lin.Out, lin.In)
		}
		q := make([]byte, len(w8.Q))
		for i, v := range w8.Q {
			q[i] = byte(v)
		}
		tensors = append(tensors,
			safetensors.Tensor{Name: name + SuffixQWeight8, DType: safetensors.I8, Shape: []int64{int64(lin.Out), int64(lin.In)}, Data: q},
			f32Tensor(name+SuffixScale8, w8.Scales, int64(lin.Out)))
		act, err := encodeAct(lin)
		if err != nil {
			return nil, nil, err
		}
		return append(tensors, act...), extras, nil
	}
	if lin.Weight8 != nil || lin.Bits != 4 || lin.Weight == nil {
		return nil, nil, fmt.Errorf("artifact: %s: %w: %d-bit weights (the artifact holds int4 weights in the FastGEMM layout, docs/fastgemm-layout.md)", name, ErrNotRepresentable, lin.Bits)
	}
	w := lin.Weight
	if w.Out != lin.Out || w.In != lin.In {
		return nil, nil, fmt.Errorf("artifact: %s: weight is %d×%d, linear %d×%d", name, w.Out, w.In, lin.Out, lin.In)
	}
	n, k := w.Out, w.In
	np, kp := quant.PackedDims(n, k)
	packed, err := packInt4(w.Q, n, k)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	tensors = append(tensors, safetensors.Tensor{Name: name + SuffixQWeight, DType: safetensors.U8,
		Shape: []int64{int64(np / 8), int64(kp / 128), 32, 16}, Data: packed})
	G, ng := storedGroups(k, kp, w.GroupSize), w.NumGroups()

	chScale := make([]float32, np)
	if iw := lin.IntScale; iw != nil {
		gs := make([]byte, 2*G*np)
		alpha := make([]byte, np)
		for c := range n {
			e := int(iw.Log2Alpha[c])
			for g := range ng {
				binary.LittleEndian.PutUint16(gs[2*(g*np+c):], uint16(int16(iw.IntScales[c*ng+g])))
			}
			alpha[c] = byte(e)
			f := iw.EpilogueFactor(c)
			// The reader recovers s_c as f_c·2^(4+e_c); that is exact unless f_c underflowed
			// into the subnormals, which would silently change the channel's scale.
			if back := float32(math.Ldexp(float64(f), 4+e)); back != iw.ChannelScale[c] {
				return nil, nil, fmt.Errorf("artifact: %s: channel %d: %w: scale %g / 2^%d is not exact in float32", name, c, ErrNotRepresentable, iw.ChannelScale[c], 4+e)
			}
			chScale[c] = f
		}
		tensors = append(tensors,
			safetensors.Tensor{Name: name + SuffixGroupScale, DType: safetensors.I16, Shape: []int64{int64(G), int64(np)}, Data: gs},
			safetensors.Tensor{Name: name + SuffixAlphaLog2, DType: safetensors.U8, Shape: []int64{int64(np)}, Data: alpha})
	} else {
		gs := make([]float32, G*np)
		for c := range n {
			for g := range ng {
				gs[g*np+c] = w.Scales[c*ng+g]
			}
			chScale[c] = 1.0 / quant.Int4Shift
		}
		tensors = append(tensors, f32Tensor(name+SuffixGroupScale, gs, int64(G), int64(np)))
	}
	tensors = append(tensors, f32Tensor(name+SuffixChannelScale, chScale, int64(np)))
	act, err := encodeAct(lin)
	if err != nil {
		return nil, nil, err
	}
	return append(tensors, act...), extras, nil
}

// encodeAct returns the .act_scale and .policy tensors of a quantized linear.
func encodeAct(lin *qresult.LinearResult) ([]safetensors.Tensor, error) {
	policy, actScale := PolicyNone, float32(0)
	if lin.ActBits != 16 {
		if err := lin.Act.Validate(); err != nil {
			return nil, fmt.Errorf("artifact: %s: %w", lin.Name, err)
		}
		policy = Policy(lin.Act.Policy)
		if lin.Act.Policy != quant.DynamicPerToken {
			actScale = lin.Act.Scale
		}
	}
	return []safetensors.Tensor{
		f32Tensor(lin.Name+SuffixActScale, []float32{actScale}, 1),
		{Name: lin.Name + SuffixPolicy, DType: safetensors.U8, Shape: []int64{1}, Data: []byte{byte(policy)}},
	}, nil
}

// storedGroups is the number of group rows G of .group_scale: Kp/group_size, or one group
// spanning Kp for per-channel weights (group_size == K).
func storedGroups(k, kp, groupSize int) int {
	if groupSize == k {
		return 1
	}
	return kp / groupSize
}

// tensorSource is where decodeLinear reads: a layer checkpoint or an artifact's weights.
type tensorSource interface {
	Info(name string) (safetensors.TensorInfo, bool)
	Bytes(name string) ([]byte, error)
}

// linearSpec is what the model's config says about one linear.
type linearSpec struct {
	name    string
	kind    model.LinearKind
	out, in int
	bias    bool
	// requestedGroup is the recipe's group size (0: per-channel), to tell a fallback apart.
	requestedGroup int
}

// decodeLinear rebuilds the ptq result of one linear from its stored tensors, checking them
// as untrusted input: dtypes, shapes, code and scale ranges, padding, the int32 overflow
// bound. With exact, the float32 copies of a layer checkpoint replace the fp16 bias and
// skipped weight, so that the result computes exactly as the one that was written.
func decodeLinear(src tensorSource, sp linearSpec, exact bool) (*qresult.LinearResult, error) {
	name := sp.name
	lin := &qresult.LinearResult{Kind: sp.kind, Name: name, Out: sp.out, In: sp.in}
	var err error
	if sp.bias {
		if lin.Bias, err = readFloat(src, name+SuffixBias, exact, sp.out); err != nil {
			return nil, err
		}
	} else if _, ok := src.Info(name + SuffixBias); ok {
		return nil, fmt.Errorf("artifact: %s has a bias, but the config says the linear has none", name)
	}
	if _, ok := src.Info(name + SuffixQWeight8); ok {
		raw, err := readRaw(src, name+SuffixQWeight8, safetensors.I8, sp.out, sp.in)
		if err != nil {
			return nil, err
		}
		w8 := &qresult.Int8Weight{Out: sp.out, In: sp.in, Q: make([]int8, len(raw))}
		for i, b := range raw {
			if int8(b) == -128 {
				return nil, fmt.Errorf("artifact: %s: code -128 at [%d] (int8 weights are -127..127)", name+SuffixQWeight8, i)
			}
			w8.Q[i] = int8(b)
		}
		if w8.Scales, err = readF32(src, name+SuffixScale8, sp.out); err != nil {
			return nil, err
		}
		for c, v := range w8.Scales {
			if !(v > 0 && v <= math.MaxFloat32) {
				return nil, fmt.Errorf("artifact: %s: [%d] = %v is not positive and finite", name+SuffixScale8, c, v)
			}
		}
		lin.Weight8, lin.Bits = w8, 8
		if err := decodeAct(src, lin); err != nil {
			return nil, err
		}
		return lin, nil
	}
	if _, ok := src.Info(name + SuffixQWeight); !ok {
		if _, ok := src.Info(name + SuffixWeight); !ok {
			return nil, fmt.Errorf("artifact: %s: missing (neither %s nor %s)", name, name+SuffixQWeight, name+SuffixWeight)
		}
		lin.Skipped, lin.Bits, lin.ActBits = true, 32, 32
		if lin.Float, err = readFloat(src, name+SuffixWeight, exact, sp.out, sp.in); err != nil {
			return nil, err
		}
		return lin, nil
	}
	n, k := sp.out, sp.in
	np, kp := quant.PackedDims(n, k)
	packed, err := readRaw(src, name+SuffixQWeight, safetensors.U8, np/8, kp/128, 32, 16)
	if err != nil {
		return nil, err
	}
	q, err := unpackInt4(packed, n, k)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name+SuffixQWeight, err)
	}
	gInfo, ok := src.Info(name + SuffixGroupScale)
	if !ok || len(gInfo.Shape) != 2 || gInfo.Shape[1] != int64(np) || gInfo.Shape[0] < 1 || gInfo.Shape[0] > int64(kp) || int64(kp)%gInfo.Shape[0] != 0 {
		return nil, fmt.Errorf("artifact: %s: missing or malformed (want [G, %d] with G dividing %d)", name+SuffixGroupScale, np, kp)
	}
	G := int(gInfo.Shape[0])
	gsz := k
	if G > 1 {
		gsz = kp / G
		if k%gsz != 0 {
			return nil, fmt.Errorf("artifact: %s: %d groups of %d do not tile the %d input channels", name+SuffixGroupScale, G, gsz, k)
		}
	}
	ng := k / gsz
	lin.Bits, lin.GroupSize = 4, gsz
	lin.GroupFallback = gsz == k && sp.requestedGroup > 0 && sp.requestedGroup != k
	qw := &quant.QuantizedWeight{Out: n, In: k, GroupSize: gsz, Q: q, Scales: make([]float32, n*ng)}
	lin.Weight = qw
	chScale, err := readF32(src, name+SuffixChannelScale, np)
	if err != nil {
		return nil, err
	}
	if err := zeroPadding(name+SuffixChannelScale, chScale[n:]); err != nil {
		return nil, err
	}
	switch gInfo.DType {
	case safetensors.I16:
		raw, err := readRaw(src, name+SuffixGroupScale, safetensors.I16, G, np)
		if err != nil {
			return nil, err
		}
		alpha, err := readRaw(src, name+SuffixAlphaLog2, safetensors.U8, np)
		if err != nil {
			return nil, err
		}
		iw := &quant.IntScaleWeight{QuantizedWeight: qw, ChannelScale: make([]float32, n),
			Log2Alpha: make([]uint8, n), IntScales: make([]int32, n*ng), Bound: make([]int64, n)}
		for g := range G {
			for c := range np {
				v := int32(int16(binary.LittleEndian.Uint16(raw[2*(g*np+c):])))
				if c >= n || g >= ng {
					if v != 0 {
						return nil, fmt.Errorf("artifact: %s: padding [%d, %d] is %d, want 0", name+SuffixGroupScale, g, c, v)
					}
					continue
				}
				iw.IntScales[c*ng+g] = v
			}
		}
		for c := range np {
			if c >= n {
				if alpha[c] != 0 {
					return nil, fmt.Errorf("artifact: %s: padding [%d] is %d, want 0", name+SuffixAlphaLog2, c, alpha[c])
				}
				continue
			}
			if alpha[c] > quant.MaxLog2Alpha {
				return nil, fmt.Errorf("artifact: %s: [%d] = %d exceeds %d", name+SuffixAlphaLog2, c, alpha[c], quant.MaxLog2Alpha)
			}
			f := chScale[c]
			if !(f > 0 && f <= math.MaxFloat32) {
				return nil, fmt.Errorf("artifact: %s: [%d] = %v is not positive and finite", name+SuffixChannelScale, c, f)
			}
			iw.Log2Alpha[c] = alpha[c]
			iw.ChannelScale[c] = float32(math.Ldexp(float64(f), 4+int(alpha[c])))
		}
		// The float group scales are not stored; the effective ones stand in for them (only
		// reports read them), and the overflow bound is recomputed from the codes.
		copy(qw.Scales, iw.EffectiveScales())
		iw.RecomputeBounds()
		if err := iw.Validate(); err != nil {
			return nil, fmt.Errorf("artifact: %s: %w", name, err)
		}
		lin.IntScale = iw
	case safetensors.F32:
		if _, ok := src.Info(name + SuffixAlphaLog2); ok {
			return nil, fmt.Errorf("artifact: %s: float group scales with an %s tensor", name, SuffixAlphaLog2)
		}
		gs, err := readF32(src, name+SuffixGroupScale, G*np)
		if err != nil {
			return nil, err
		}
		for g := range G {
			for c := range np {
				v := gs[g*np+c]
				if c >= n || g >= ng {
					if v != 0 {
						return nil, fmt.Errorf("artifact: %s: padding [%d, %d] is %v, want 0", name+SuffixGroupScale, g, c, v)
					}
					continue
				}
				if !(v > 0 && v <= math.MaxFloat32) {
					return nil, fmt.Errorf("artifact: %s: [%d, %d] = %v is not positive and finite", name+SuffixGroupScale, g, c, v)
				}
				qw.Scales[c*ng+g] = v
			}
		}
		for c := range n {
			if chScale[c] != 1.0/quant.Int4Shift {
				return nil, fmt.Errorf("artifact: %s: [%d] = %v; float group scales need 1/16", name+SuffixChannelScale, c, chScale[c])
			}
		}
	default:
		return nil, fmt.Errorf("artifact: %s: dtype %s (want I16 integer scales or F32 float scales)", name+SuffixGroupScale, gInfo.DType)
	}

	if err := decodeAct(src, lin); err != nil {
		return nil, err
	}
	return lin, nil
}

// decodeAct reads the .policy and .act_scale tensors of a quantized linear into lin.
func decodeAct(src tensorSource, lin *qresult.LinearResult) error {
	name := lin.Name
	pol, err := readRaw(src, name+SuffixPolicy, safetensors.U8, 1)
	if err != nil {
		return err
	}
	as, err := readF32(src, name+SuffixActScale, 1)
	if err != nil {
		return err
	}
	switch p := Policy(pol[0]); p {
	case PolicyNone:
		lin.ActBits = 16
		if as[0] != 0 {
			return fmt.Errorf("artifact: %s: %v with 16-bit activations, want 0", name+SuffixActScale, as[0])
		}
	case PolicyStatic, PolicyLAE, PolicyPerToken:
		lin.ActBits = 8
		lin.Act = quant.ActQuant{Policy: quant.ActPolicy(p)}
		if p == PolicyPerToken {
			if as[0] != 0 {
				return fmt.Errorf("artifact: %s: %v with dynamic per-token activations, want 0", name+SuffixActScale, as[0])
			}
		} else {
			lin.Act.Scale = as[0]
		}
		if err := lin.Act.Validate(); err != nil {
			return fmt.Errorf("artifact: %s: %w", name+SuffixActScale, err)
		}
	default:
		return fmt.Errorf("artifact: %s: unknown policy code %d (want 0..3)", name+SuffixPolicy, p)
	}
	return nil
}

// readRaw returns the bytes of a tensor after checking its dtype and shape.
func readRaw(src tensorSource, name string, dt safetensors.DType, shape ...int) ([]byte, error) {
	info, ok := src.Info(name)
	if !ok {
		return nil, fmt.Errorf("artifact: %s: missing", name)
	}
	if info.DType != dt || !sameShape(info.Shape, shape) {
		return nil, fmt.Errorf("artifact: %s: %s%v, want %s%v", name, info.DType, info.Shape, dt, shape)
	}
	return src.Bytes(name)
}

func sameShape(got []int64, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != int64(want[i]) {
			return false
		}
	}
	return true
}

// readF32 reads an F32 tensor of n elements (any shape with n elements is accepted only as
// [n] or the caller's checked 2-D shape, so the shape is checked by element count here and
// by the caller where it matters).
func readF32(src tensorSource, name string, n int) ([]float32, error) {
	info, ok := src.Info(name)
	if !ok {
		return nil, fmt.Errorf("artifact: %s: missing", name)
	}
	if info.DType != safetensors.F32 || info.NumElements() != int64(n) {
		return nil, fmt.Errorf("artifact: %s: %s%v, want F32 with %d elements", name, info.DType, info.Shape, n)
	}
	b, err := src.Bytes(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	safetensors.F32FromBytes(out, b)
	return out, nil
}

// readFloat reads a float tensor of the given shape into float32, preferring its float32
// resume copy when exact and the copy exists.
func readFloat(src tensorSource, name string, exact bool, shape ...int) ([]float32, error) {
	if exact {
		if _, ok := src.Info(resumePrefix + name); ok {
			name = resumePrefix + name
		}
	}
	info, ok := src.Info(name)
	if !ok {
		return nil, fmt.Errorf("artifact: %s: missing", name)
	}
	if !info.DType.IsFloat() || !sameShape(info.Shape, shape) {
		return nil, fmt.Errorf("artifact: %s: %s%v, want a float tensor of shape %v", name, info.DType, info.Shape, shape)
	}
	b, err := src.Bytes(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, info.NumElements())
	switch info.DType {
	case safetensors.F16:
		safetensors.F16ToF32(out, b)
	case safetensors.BF16:
		safetensors.BF16ToF32(out, b)
	case safetensors.F32:
		safetensors.F32FromBytes(out, b)
	default:
		return nil, fmt.Errorf("artifact: %s: dtype %s (want F16, BF16 or F32)", name, info.DType)
	}
	return out, nil
}

func zeroPadding(name string, pad []float32) error {
	for i, v := range pad {
		if v != 0 {
			return fmt.Errorf("artifact: %s: padding [%d] is %v, want 0", name, len(pad)+i, v)
		}
	}
	return nil
}

func f32Tensor(name string, v []float32, shape ...int64) safetensors.Tensor {
	b := make([]byte, 4*len(v))
	safetensors.Float32ToBytes(b, v)
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: b}
}

// f16Bytes encodes v as fp16, refusing a value that overflows fp16 (it would become ±Inf):
// folded equalization scales can push an RMSNorm weight or a bias out of range.
func f16Bytes(name string, v []float32) ([]byte, error) {
	b := make([]byte, 2*len(v))
	safetensors.Float32ToF16(b, v)
	for i := range v {
		if h := binary.LittleEndian.Uint16(b[2*i:]); h&0x7C00 == 0x7C00 {
			return nil, fmt.Errorf("artifact: %s: %w: value %g at [%d] does not fit in fp16 (largest 65504)", name, ErrNotRepresentable, v[i], i)
		}
	}
	return b, nil
}
