package ptq

import (
	"fmt"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
	"slices"
	"strconv"
	"strings"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

// Options is a quantization recipe. Start from DefaultOptions and change what the recipe
// names: string and integer fields also read their zero value as the documented default, so
// a recipe decoded onto a zero Options gets the same result, but booleans cannot, so
// IntegerScale.Enabled must come from DefaultOptions or be set.
type Options struct {
	Calib        calib.Options
	Equalization Equalization
	Activations  Activations
	Weights      Weights
	IntegerScale IntegerScale
	// Skip lists linears kept in float32 (with any equalization folded in): "down_proj"
	// names that linear in every layer, "layers.3" every linear of layer 3 and
	// "layers.3.down_proj" one linear. The embedding and the LM head are never quantized.
	Skip []string
	// OutputError gathers the Hessian of every input even for RTN, so that every linear
	// reports LinearResult.OutputError (GPTQ always does). It costs In² float64s per input.
	OutputError bool
	// Resume, when set, is asked before each layer for a result computed earlier, by an
	// interrupted run with the same model, options and windows (the quantize command's
	// checkpoints). When it returns one, the layer is neither calibrated nor quantized
	// again: the result only carries the calibration activations on to the next layer (with
	// Propagate "float", the float layer does, as in a full run) and is reported through
	// progress like a computed one, without timings. nil means compute the layer.
	Resume func(layer int) (*LayerResult, error) `json:"-"`
	// NewPass, when set, makes the calibration pass (the GPU pass of
	// docs/gpu-calibration.md); nil means the CPU pass, calib.NewPass. RunWindows closes it.
	NewPass NewPassFunc `json:"-"`
}

// Equalization methods.
const (
	EqualizeLAE         = "lae"
	EqualizeSmoothQuant = "smoothquant"
	EqualizeNone        = "none"
)

// Equalization scopes.
const (
	ScopePolicy  = "policy"
	ScopeDynamic = "dynamic"
	ScopeAll     = "all"
)

// Equalization statistics.
const (
	StatAbsMax = "absmax"
	StatRange  = "range"
)

// Pair names one producer→consumer pair across which an equalization is folded: the
// producer's output channel j is divided by s_j and the consumer's input column j multiplied
// by it, which leaves the float function unchanged.
type Pair = qresult.Pair

// The four pairs of a LLaMA decoder layer, named producer-consumer.
const (
	// PairNormQKV: input_layernorm weight → q_proj, k_proj, v_proj (one s for the three).
	PairNormQKV Pair = "norm-qkv"
	// PairVO: v_proj rows (and bias) → o_proj columns, through grouped-query attention.
	PairVO Pair = "v-o"
	// PairNormGateUp: post_attention_layernorm weight → gate_proj, up_proj.
	PairNormGateUp Pair = "norm-gate_up"
	// PairUpDown: up_proj rows (and bias) → down_proj columns.
	PairUpDown Pair = "up-down"
)

// AllPairs returns the four pairs in execution order.
func AllPairs() []Pair { return []Pair{PairNormQKV, PairVO, PairNormGateUp, PairUpDown} }

// pairOf returns the pair whose consumer reads the input named by kind (Q, O, Gate, Down).
func pairOf(kind model.LinearKind) Pair {
	switch kind {
	case model.Q:
		return PairNormQKV
	case model.O:
		return PairVO
	case model.Gate:
		return PairNormGateUp
	case model.Down:
		return PairUpDown
	}
	panic(fmt.Sprintf("ptq: %v does not name a layer input", kind))
}

// Equalization chooses the per-channel scaling folded between producers and consumers before
// quantization.
type Equalization struct {
	// Method is "lae" (FPTQ's logarithmic activation equalization, s_j = m_j/log2(2+m_j),
	// applied to the inputs the activation policy marks LAE), "smoothquant"
	// (s_j = max|X_j|^α / max|W_j|^(1−α) on every pair listed) or "none". Default "lae".
	Method string
	// Statistic is the LAE channel statistic m_j: "absmax" (max |x_j|, the default) or
	// "range" (max x_j − min x_j).
	Statistic string
	// Pairs lists the pairs that may be equalized; nil means all four.
	Pairs []Pair
	// Scope says which inputs of the listed pairs LAE is folded into:
	//   - "policy": only those the activation rule marks LAE, as in the FPTQ paper, where an
	//     input whose range exceeds v1 is quantized per token without LAE;
	//   - "dynamic" (the default): those, and the inputs the rule quantizes per token, which
	//     are equalized first: per-token scales follow token outliers but not channel
	//     outliers, which LAE tames (and it lifts the consumer's weight columns that such
	//     outliers shrink, so int4 can represent them);
	//   - "all": every input of the listed pairs, small-range static ones included.
	Scope string
	// Alpha is SmoothQuant's migration strength; 0 means 0.5.
	Alpha float64
}

// Activations chooses how linear inputs are quantized.
type Activations struct {
	// Bits is 8 (int8 activations, W4A8) or 16 (activations stay float: weight-only W4A16);
	// 0 means 8.
	Bits int
	// Rule assigns each input its policy (static per-tensor, LAE then static, dynamic
	// per-token) from its calibrated range. The zero value is FPTQ with the paper's
	// thresholds v0 = 15, v1 = 150: FPTQ with both thresholds 0 reads as the default.
	Rule quant.PolicyRule
}

// Weight quantization methods.
const (
	MethodRTN  = "rtn"
	MethodGPTQ = "gptq"
)

// Group-size fallbacks.
const (
	FallbackPerChannel = "per-channel"
	FallbackError      = "error"
)

// Weights chooses the weight quantizer.
type Weights struct {
	// Bits is 4 (symmetric int4 in groups, the W4A8 format) or 8 (symmetric int8 per output
	// channel, for the W8A8 SmoothQuant baseline); 0 means 4.
	Bits int
	// GroupSize is the int4 group along the input dimension; 0 means 128, −1 per-channel.
	GroupSize int
	// Method is "rtn" (round to nearest, default) or "gptq".
	Method string
	// RTN configures round-to-nearest (clipping search).
	RTN quant.RTNOptions
	// ActAwareClip makes RTN search each group's clip factor (over RTN.ClipGrid, nil: the
	// default grid) against the error weighted by each input channel's calibration energy
	// E[x_j²] rather than the plain weight error; see rtnActAware.
	ActAwareClip bool
	// GPTQ configures GPTQ.
	GPTQ GPTQOptions
	// Fallback says what happens when GroupSize does not divide a linear's input width:
	// "per-channel" (default: one group per output channel, recorded in the result) or
	// "error".
	Fallback string
}

// IntegerScale chooses between integer group scales (the W4A8 kernel's format) and float
// group scales.
type IntegerScale struct {
	Enabled bool
	// Rule picks the amplifiers; the zero value is max-safe per channel, capped at 2¹⁰.
	Rule quant.AmplifierRule
}

// DefaultOptions returns the project's default recipe, W4A8 FPTQ: calibration on 64×256
// windows sampled from the model itself (128×512 when Calib.Source names a text file),
// seed 0, quantized propagation; LAE on the max |x| statistic for all four pairs, folded
// where FPTQ's rule (v0 = 15, v1 = 150) says and before every per-token input (scope
// "dynamic"); int4 RTN weights in groups of 128 with per-channel fallback and the
// activation-aware clipping search (GPTQ, when chosen, with act-order); integer scales with
// max-safe amplifiers capped at 1024.
func DefaultOptions() Options {
	return Options{
		Calib:        calib.Options{Source: calib.SourceSelf, Propagate: calib.PropagateQuantized},
		Equalization: Equalization{Method: EqualizeLAE, Statistic: StatAbsMax, Pairs: AllPairs()},
		Activations:  Activations{Bits: 8, Rule: quant.DefaultPolicyRule()},
		Weights: Weights{Bits: 4, GroupSize: 128, Method: MethodRTN, Fallback: FallbackPerChannel,
			ActAwareClip: true, GPTQ: GPTQOptions{ActOrder: true}},
		IntegerScale: IntegerScale{Enabled: true, Rule: quant.AmplifierRule{Kind: quant.MaxSafePerChannel, Log2Alpha: quant.DefaultLog2Alpha}},
	}
}

// resolved returns o with defaults filled in and checks every field.
func (o Options) resolved() (Options, error) {
	var err error
	if o.Calib, err = o.Calib.Resolved(); err != nil {
		return o, fmt.Errorf("ptq: %w", err)
	}
	e := &o.Equalization
	if e.Method == "" {
		e.Method = EqualizeLAE
	}
	if e.Statistic == "" {
		e.Statistic = StatAbsMax
	}
	if e.Pairs == nil {
		e.Pairs = AllPairs()
	}
	if e.Alpha == 0 {
		e.Alpha = 0.5
	}
	if e.Scope == "" {
		e.Scope = ScopeDynamic
	}
	switch {
	case e.Method != EqualizeLAE && e.Method != EqualizeSmoothQuant && e.Method != EqualizeNone:
		return o, fmt.Errorf("ptq: equalization method %q (want lae, smoothquant or none)", e.Method)
	case e.Statistic != StatAbsMax && e.Statistic != StatRange:
		return o, fmt.Errorf("ptq: equalization statistic %q (want absmax or range)", e.Statistic)
	case e.Scope != ScopePolicy && e.Scope != ScopeDynamic && e.Scope != ScopeAll:
		return o, fmt.Errorf("ptq: equalization scope %q (want policy, dynamic or all)", e.Scope)
	case !(e.Alpha > 0 && e.Alpha < 1):
		return o, fmt.Errorf("ptq: SmoothQuant alpha %v must be in (0, 1)", e.Alpha)
	}
	for _, p := range e.Pairs {
		if !slices.Contains(AllPairs(), p) {
			return o, fmt.Errorf("ptq: unknown equalization pair %q (want %v)", p, AllPairs())
		}
	}
	a := &o.Activations
	if a.Bits == 0 {
		a.Bits = 8
	}
	if a.Bits != 8 && a.Bits != 16 {
		return o, fmt.Errorf("ptq: activation bits %d (want 8, or 16 for weight-only)", a.Bits)
	}
	if a.Rule.Kind == quant.FPTQ && a.Rule.V0 == 0 && a.Rule.V1 == 0 {
		a.Rule = quant.DefaultPolicyRule()
	}
	if err := a.Rule.Validate(); err != nil {
		return o, fmt.Errorf("ptq: %w", err)
	}
	w := &o.Weights
	if w.Bits == 0 {
		w.Bits = 4
	}
	if w.GroupSize == 0 {
		w.GroupSize = 128
	}
	if w.Method == "" {
		w.Method = MethodRTN
	}
	if w.Fallback == "" {
		w.Fallback = FallbackPerChannel
	}
	switch {
	case w.Bits != 4 && w.Bits != 8:
		return o, fmt.Errorf("ptq: weight bits %d (want 4, or 8 for the SmoothQuant baseline)", w.Bits)
	case w.GroupSize < -1:
		return o, fmt.Errorf("ptq: group size %d (want a positive size, or −1 for per-channel)", w.GroupSize)
	case w.Method != MethodRTN && w.Method != MethodGPTQ:
		return o, fmt.Errorf("ptq: weight method %q (want rtn or gptq)", w.Method)
	case w.Fallback != FallbackPerChannel && w.Fallback != FallbackError:
		return o, fmt.Errorf("ptq: group-size fallback %q (want per-channel or error)", w.Fallback)
	case w.Bits == 8 && w.Method != MethodRTN:
		return o, fmt.Errorf("ptq: 8-bit weights are quantized per channel by round to nearest only (method %q)", w.Method)
	case w.Bits == 8 && o.Equalization.Method == EqualizeLAE:
		return o, fmt.Errorf("ptq: 8-bit weights are the SmoothQuant baseline; use equalization smoothquant or none")
	case o.Equalization.Method == EqualizeSmoothQuant && a.Bits != 8:
		return o, fmt.Errorf("ptq: SmoothQuant equalization needs int8 activations")
	}
	if o.IntegerScale.Enabled && w.Bits == 4 {
		if _, err := quant.IntegerScales(&quant.QuantizedWeight{Out: 1, In: 1, GroupSize: 1, Q: []int8{0}, Scales: []float32{1}}, o.IntegerScale.Rule); err != nil {
			return o, fmt.Errorf("ptq: integer scale rule: %w", err)
		}
	}
	for _, s := range o.Skip {
		if _, _, err := parseSkip(s, -1); err != nil {
			return o, err
		}
	}
	return o, nil
}

// parseSkip parses a Skip entry into a layer (−1: every layer) and a kind (−1: every
// linear). nLayers ≥ 0 bounds the layer index.
func parseSkip(s string, nLayers int) (layer int, kind model.LinearKind, err error) {
	layer, kind = -1, -1
	rest := s
	if strings.HasPrefix(s, "layers.") {
		num, after, _ := strings.Cut(strings.TrimPrefix(s, "layers."), ".")
		n, perr := strconv.Atoi(num)
		if perr != nil || n < 0 || (nLayers >= 0 && n >= nLayers) {
			return 0, 0, fmt.Errorf("ptq: skip entry %q: bad layer index", s)
		}
		layer, rest = n, after
		if rest == "" {
			return layer, kind, nil
		}
	}
	for _, k := range model.LayerKinds {
		if k.String() == rest {
			return layer, k, nil
		}
	}
	return 0, 0, fmt.Errorf("ptq: skip entry %q: want <linear>, layers.<i> or layers.<i>.<linear> with linear one of q_proj … down_proj", s)
}

// skipped reports whether the linear kind of layer i is to stay in float.
func (o *Options) skipped(i int, kind model.LinearKind) bool {
	for _, s := range o.Skip {
		l, k, err := parseSkip(s, -1)
		if err == nil && (l < 0 || l == i) && (k < 0 || k == kind) {
			return true
		}
	}
	return false
}
