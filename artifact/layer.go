package artifact

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
)

// recordKey is the safetensors metadata key of a layer checkpoint that holds the layer's
// LayerRecord as JSON, so that the record and the tensors are written (atomically) together.
const recordKey = "odyssey.layer_record"

// encodeLayer returns every tensor of one quantized layer as the artifact stores it (the
// RMSNorm weights in float32 with the equalization folded in, each linear per
// docs/fastgemm-layout.md), the float32 copies a resumed run needs, and the layer's record.
//
// The norms are float32, not fp16, because the folded values are new numbers that fp16 would
// round by up to 2⁻¹¹, and the layer's static activation scales and int8 codes were
// calibrated on the exact ones: on small-llama-outliers, fp16 norms moved the W4A8
// perplexity by 0.3%, float32 norms reproduce the fake-quantized model exactly. They cost
// 8 bytes per hidden channel per layer.
func encodeLayer(lr *qresult.LayerResult) ([]safetensors.Tensor, LayerRecord, error) {
	var ts []safetensors.Tensor
	i := lr.Layer
	for _, norm := range []struct {
		name string
		v    []float32
	}{{attnNormName(i), lr.AttnNorm}, {mlpNormName(i), lr.MLPNorm}} {
		for j, v := range norm.v {
			if !(v >= -math.MaxFloat32 && v <= math.MaxFloat32) {
				return nil, LayerRecord{}, fmt.Errorf("artifact: %s: %w: value %v at [%d] is not finite", norm.name, ErrNotRepresentable, v, j)
			}
		}
		ts = append(ts, f32Tensor(norm.name, norm.v, int64(len(norm.v))))
	}
	if len(lr.Linears) != len(model.LayerKinds) {
		return nil, LayerRecord{}, fmt.Errorf("artifact: layer %d has %d linears, want %d", i, len(lr.Linears), len(model.LayerKinds))
	}
	for _, lin := range lr.Linears {
		if want := LinearName(i, lin.Kind); lin.Name != want {
			return nil, LayerRecord{}, fmt.Errorf("artifact: layer %d: linear named %q, want %q", i, lin.Name, want)
		}
		t, extra, err := encodeLinear(lin)
		if err != nil {
			return nil, LayerRecord{}, err
		}
		ts = append(ts, t...)
		ts = append(ts, extra...)
	}
	return ts, newLayerRecord(lr), nil
}

// specs returns the linears of layer i as the config describes them.
func specs(cfg *hf.Config, i, requestedGroup int) []linearSpec {
	h, qd, kvd, inter := cfg.HiddenSize, cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim, cfg.IntermediateSize
	dims := map[model.LinearKind][2]int{
		model.Q: {qd, h}, model.K: {kvd, h}, model.V: {kvd, h}, model.O: {h, qd},
		model.Gate: {inter, h}, model.Up: {inter, h}, model.Down: {h, inter},
	}
	bias := map[model.LinearKind]bool{
		model.Q: cfg.AttentionBias, model.K: cfg.AttentionBias, model.V: cfg.AttentionBias,
		model.O: cfg.AttentionOutputBias, model.Gate: cfg.MLPBias, model.Up: cfg.MLPBias, model.Down: cfg.MLPBias,
	}
	out := make([]linearSpec, 0, len(model.LayerKinds))
	for _, k := range model.LayerKinds {
		out = append(out, linearSpec{name: LinearName(i, k), kind: k, out: dims[k][0], in: dims[k][1], bias: bias[k], requestedGroup: requestedGroup})
	}
	return out
}

// decodeLayer rebuilds layer i's ptq result (norms and linears; no input records) from its
// stored tensors. With exact it uses a layer checkpoint's float32 copies; see decodeLinear.
func decodeLayer(src tensorSource, cfg *hf.Config, i, requestedGroup int, exact bool) (*qresult.LayerResult, error) {
	lr := &qresult.LayerResult{Layer: i}
	var err error
	if lr.AttnNorm, err = readFloat(src, attnNormName(i), exact, cfg.HiddenSize); err != nil {
		return nil, err
	}
	if lr.MLPNorm, err = readFloat(src, mlpNormName(i), exact, cfg.HiddenSize); err != nil {
		return nil, err
	}
	for _, sp := range specs(cfg, i, requestedGroup) {
		lin, err := decodeLinear(src, sp, exact)
		if err != nil {
			return nil, err
		}
		lr.Linears = append(lr.Linears, lin)
	}
	return lr, nil
}

// BuildLayer returns the decoder layer that computes lr as quantized: the folded norms and
// each linear's qresult.LinearResult.Module (quant.QLinear for W4A8 with integer scales), the
// same construction as ptq's fake-quantized model, so both compute the same bits.
func BuildLayer(lr *qresult.LayerResult, cfg *hf.Config) (*model.Layer, error) {
	l := &model.Layer{Index: lr.Layer, Config: cfg, AttnNorm: lr.AttnNorm, MLPNorm: lr.MLPNorm}
	for _, lin := range lr.Linears {
		m, err := lin.Module()
		if err != nil {
			return nil, fmt.Errorf("artifact: %s: %w", lin.Name, err)
		}
		l.SetLinear(lin.Kind, m)
	}
	return l, nil
}

// layerMetadata is the metadata of a layer checkpoint file.
func layerMetadata(rec LayerRecord) (map[string]string, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return map[string]string{recordKey: string(b), "format": "pt"}, nil
}
