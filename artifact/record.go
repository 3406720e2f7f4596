package artifact

import (
	"github.com/odyssey-llm/odyssey/ptq/qresult"
	"github.com/odyssey-llm/odyssey/quant"
)

// LayerRecord is what odyssey.json keeps about one decoder layer: every decision with the
// numbers it was made on, and the resulting errors. It holds no timings, so that the same
// inputs give the same bytes; timings are in the quantize command's --json summary.
type LayerRecord struct {
	Layer   int            `json:"layer"`
	Inputs  []InputRecord  `json:"inputs"`
	Linears []LinearRecord `json:"linears"`
}

// InputRecord is one of the four distinct linear inputs of a layer.
type InputRecord struct {
	// Input names the input by its first consumer: q_proj (read by q/k/v), o_proj,
	// gate_proj (read by gate/up) or down_proj.
	Input string `json:"input"`
	// Pair is the producer→consumer pair that equalization folds through.
	Pair string `json:"pair"`
	// Equalized is "lae", "smoothquant" or empty.
	Equalized string `json:"equalized,omitempty"`
	// Decision is the activation policy with the ranges and thresholds it was decided on
	// (zero for 16-bit activations).
	Decision quant.Decision `json:"decision"`
	// ActScale is the static int8 scale (0 for dynamic per-token and 16-bit activations).
	ActScale float32              `json:"act_scale"`
	Before   qresult.InputSummary `json:"before"`
	After    qresult.InputSummary `json:"after"`
}

// LinearRecord is one linear of a layer.
type LinearRecord struct {
	Name    string `json:"name"`
	Out     int    `json:"out"`
	In      int    `json:"in"`
	Skipped bool   `json:"skipped,omitempty"`
	Bits    int    `json:"bits"`
	ActBits int    `json:"act_bits"`
	// Policy is the stored activation policy ("" for a skipped linear).
	Policy        string  `json:"policy,omitempty"`
	ActScale      float32 `json:"act_scale"`
	GroupSize     int     `json:"group_size,omitempty"`
	GroupFallback bool    `json:"group_fallback,omitempty"`
	IntegerScale  bool    `json:"integer_scale,omitempty"`
	// WeightError is ‖Ŵ − W‖_F/‖W‖_F of the weight the kernel computes with against the
	// float (folded) weight; FloatScaleWeightError the same with float group scales.
	WeightError           float64 `json:"weight_error"`
	FloatScaleWeightError float64 `json:"float_scale_weight_error,omitempty"`
	// OutputError is ‖X·(Ŵ − W)ᵀ‖²/‖X·Wᵀ‖² on the calibration inputs, when the quantizer
	// measured it (GPTQ).
	OutputError   float64     `json:"output_error,omitempty"`
	AlphaLog2Min  int         `json:"alpha_log2_min,omitempty"`
	AlphaLog2Max  int         `json:"alpha_log2_max,omitempty"`
	AlphaLog2Mean float64     `json:"alpha_log2_mean,omitempty"`
	GPTQ          *GPTQRecord `json:"gptq,omitempty"`
}

// GPTQRecord is GPTQ's account of a linear, without its timings.
type GPTQRecord struct {
	Loss         float64 `json:"loss"`
	PercDamp     float64 `json:"perc_damp"`
	Damp         float64 `json:"damp"`
	Retries      int     `json:"retries,omitempty"`
	DeadColumns  int     `json:"dead_columns,omitempty"`
	StaticGroups bool    `json:"static_groups,omitempty"`
}

// newLayerRecord summarises a ptq layer result.
func newLayerRecord(lr *qresult.LayerResult) LayerRecord {
	rec := LayerRecord{Layer: lr.Layer, Inputs: []InputRecord{}, Linears: []LinearRecord{}}
	for _, in := range lr.Inputs {
		ir := InputRecord{Input: in.Kind.String(), Pair: string(in.Pair), Equalized: in.Equalized,
			Decision: in.Decision, Before: in.Before, After: in.After}
		if in.Act.Policy != quant.DynamicPerToken {
			ir.ActScale = in.Act.Scale
		}
		rec.Inputs = append(rec.Inputs, ir)
	}
	for _, l := range lr.Linears {
		r := LinearRecord{Name: l.Name, Out: l.Out, In: l.In, Skipped: l.Skipped, Bits: l.Bits, ActBits: l.ActBits,
			GroupSize: l.GroupSize, GroupFallback: l.GroupFallback, IntegerScale: l.IntScale != nil,
			WeightError: l.WeightError, FloatScaleWeightError: l.FloatScaleWeightError, OutputError: l.OutputError,
			AlphaLog2Min: l.AlphaLog2Min, AlphaLog2Max: l.AlphaLog2Max, AlphaLog2Mean: l.AlphaLog2Mean}
		if g := l.GPTQ; g != nil {
			r.GPTQ = &GPTQRecord{Loss: g.Loss, PercDamp: g.PercDampUsed, Damp: g.DampUsed, Retries: g.Retries,
				DeadColumns: g.DeadColumns, StaticGroups: g.StaticGroups}
		}
		if !l.Skipped {
			p := PolicyNone
			if l.ActBits != 16 {
				p = Policy(l.Act.Policy)
				if l.Act.Policy != quant.DynamicPerToken {
					r.ActScale = l.Act.Scale
				}
			}
			r.Policy = p.String()
		}
		rec.Linears = append(rec.Linears, r)
	}
	return rec
}
