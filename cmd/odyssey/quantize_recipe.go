package main

import (
	"fmt"
	"math/bits"
	"strings"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/ptq"
	"github.com/odyssey-llm/odyssey/quant"
	"github.com/odyssey-llm/odyssey/recipes"
)

// The recipe language (package recipes) and the pipeline's options (ptq.Options) are kept
// apart on purpose: the recipe is the user-facing, versioned file, ptq.Options the Go API.
// This file is the one place that translates between them, so a new recipe key needs a line
// here and nowhere else.

// recipePairs maps the recipe's pair names to ptq's.
var recipePairs = map[recipes.Pair]ptq.Pair{
	recipes.PairQKV: ptq.PairNormQKV, recipes.PairGateUp: ptq.PairNormGateUp,
	recipes.PairDown: ptq.PairUpDown, recipes.PairO: ptq.PairVO,
}

// ptqOptions translates a validated recipe, with its plan for the model (which linears are
// skipped), into ptq.Options. calibPath is the calibration file to read, "" for self.
//
// It starts from the zero Options, not ptq.DefaultOptions: the recipe is the whole
// description of the run (it is what odyssey.json records and what its hash identifies), so
// a pipeline knob the recipe language cannot express yet keeps its zero value (ptq's
// documented baseline) rather than whatever ptq's defaults become.
func ptqOptions(r *recipes.Recipe, plan *recipes.Plan, calibPath string) (ptq.Options, error) {
	var o ptq.Options
	c := r.Calibration
	o.Calib = calib.Options{Source: calib.SourceSelf, Samples: c.Samples, SeqLen: c.SeqLen, Seed: uint64(c.Seed)}
	if calibPath != "" {
		o.Calib.Source, o.Calib.Format = calibPath, c.Format
	}
	switch c.Propagate {
	case recipes.PropagateQuantized:
		o.Calib.Propagate = calib.PropagateQuantized
	case recipes.PropagateFullPrecision:
		o.Calib.Propagate = calib.PropagateFloat
	default:
		return o, fmt.Errorf("calibration.propagate %q has no pipeline equivalent", c.Propagate)
	}

	e := r.Equalization
	o.Equalization = ptq.Equalization{Method: string(e.Method), Statistic: string(e.Statistic), Alpha: e.Alpha, Pairs: []ptq.Pair{}}
	if e.Method == recipes.NoEqualization {
		o.Equalization.Method = ptq.EqualizeNone
	}
	for _, p := range e.Pairs {
		pp, ok := recipePairs[p]
		if !ok {
			return o, fmt.Errorf("equalization pair %q has no pipeline equivalent", p)
		}
		o.Equalization.Pairs = append(o.Equalization.Pairs, pp)
	}
	if len(o.Equalization.Pairs) == 0 {
		o.Equalization.Pairs = ptq.AllPairs() // method none: the pairs do not matter
	}
	if o.Equalization.Alpha == 0 {
		o.Equalization.Alpha = 0.5
	}

	a := r.Activations
	o.Activations.Bits = a.Bits
	switch a.Policy {
	case recipes.PolicyFPTQ:
		o.Activations.Rule = quant.PolicyRule{Kind: quant.FPTQ, V0: float32(a.Thresholds.V0), V1: float32(a.Thresholds.V1)}
	case recipes.PolicyStatic:
		o.Activations.Rule = quant.PolicyRule{Kind: quant.AlwaysStatic}
	case recipes.PolicyPerToken:
		o.Activations.Rule = quant.PolicyRule{Kind: quant.AlwaysPerToken}
	case recipes.PolicyLAE:
		o.Activations.Rule = quant.PolicyRule{Kind: quant.AlwaysLAE}
	default:
		return o, fmt.Errorf("activations.policy %q has no pipeline equivalent", a.Policy)
	}

	w := r.Weights
	o.Weights.Bits, o.Weights.Method, o.Weights.Fallback = w.Bits, string(w.Method), string(w.Fallback)
	o.Weights.GroupSize = w.GroupSize
	if !w.Grouped() {
		o.Weights.GroupSize = -1
	}
	var grid []float32
	if w.Clip.Search {
		for i := 0; i <= w.Clip.Steps; i++ {
			grid = append(grid, float32(1-float64(i)*(1-w.Clip.Min)/float64(w.Clip.Steps)))
		}
	}
	o.Weights.RTN = quant.RTNOptions{ClipSearch: w.Clip.Search, ClipGrid: grid}
	// Activation-aware clipping replaces the plain search (ptq weighs each channel's error by
	// its calibration energy over the same grid).
	o.Weights.ActAwareClip = w.Method == recipes.RTN && w.Clip.Search && w.Clip.ActivationAware
	o.Weights.GPTQ = ptq.GPTQOptions{BlockSize: w.GPTQ.BlockSize, PercDamp: w.GPTQ.Damp, ActOrder: w.GPTQ.ActOrder,
		StaticGroups: w.GPTQ.StaticGroups, ClipSearch: w.Clip.Search, ClipGrid: grid}

	is := r.IntegerScale
	o.IntegerScale.Enabled = is.Enabled
	if is.Enabled {
		rule := quant.AmplifierRule{Kind: quant.MaxSafePerChannel, Log2Alpha: log2(is.MaxAmplifier)}
		if is.Amplifier != recipes.MaxSafe {
			rule = quant.AmplifierRule{Kind: quant.FixedAlpha, Log2Alpha: log2(is.Amplifier)}
		}
		if rule.Log2Alpha < 1 || rule.Log2Alpha > quant.MaxLog2Alpha {
			return o, fmt.Errorf("integer_scale: amplifier 2^%d is outside what the kernel's int16 group scales hold (2^1 to 2^%d)", rule.Log2Alpha, quant.MaxLog2Alpha)
		}
		o.IntegerScale.Rule = rule
	}

	// The recipe's skip patterns are globs over module names; ptq takes layer/linear
	// entries. The plan has already matched the patterns against this model.
	o.Skip = nil
	for _, m := range plan.Modules {
		if m.Skip != "" && m.Layer >= 0 {
			o.Skip = append(o.Skip, fmt.Sprintf("layers.%d.%s", m.Layer, m.Kind))
		}
	}
	return o, nil
}

func log2(n int) int {
	if n <= 0 {
		return 0
	}
	return bits.Len(uint(n)) - 1
}

// recipeNotes says what the recipe asks for that the artifact does differently.
func recipeNotes(plan *recipes.Plan) []string {
	var notes []string
	for _, m := range plan.Modules {
		if m.Layer < 0 && m.Skip == "" {
			notes = append(notes, fmt.Sprintf("%s stays fp16: Odyssey quantizes only the decoder layers' linears", m.Name))
		}
	}
	return notes
}

// schemeOf describes the recipe's scheme for quantization_config and odyssey.json.
func schemeOf(r *recipes.Recipe) artifact.Scheme {
	s := artifact.Scheme{}
	w := r.Weights
	s.Weights = artifact.WeightScheme{Bits: w.Bits, GroupSize: w.GroupSize, Method: string(w.Method), Scales: "float"}
	if r.IntegerScale.Enabled {
		s.Weights.Scales = "integer"
		if r.IntegerScale.Amplifier == recipes.MaxSafe {
			s.Weights.Amplifier, s.Weights.Log2Alpha = "max-safe", log2(r.IntegerScale.MaxAmplifier)
		} else {
			s.Weights.Amplifier, s.Weights.Log2Alpha = "fixed", log2(r.IntegerScale.Amplifier)
		}
	}
	a := r.Activations
	s.Activations = artifact.ActivationScheme{Bits: a.Bits}
	if a.Bits == 8 {
		s.Activations.Policy = string(a.Policy)
		if a.Policy == recipes.PolicyFPTQ {
			v0, v1 := a.Thresholds.V0, a.Thresholds.V1
			s.Activations.V0, s.Activations.V1 = &v0, &v1
		}
	}
	e := r.Equalization
	s.Equalization = artifact.EqualizationScheme{Method: string(e.Method)}
	switch e.Method {
	case recipes.LAE:
		s.Equalization.Statistic = string(e.Statistic)
	case recipes.SmoothQuant:
		s.Equalization.Alpha = e.Alpha
	}
	if e.Method != recipes.NoEqualization {
		for _, p := range e.Pairs {
			s.Equalization.Pairs = append(s.Equalization.Pairs, string(p))
		}
	}
	return s
}

// outputFormat returns the artifact format: --export when given, else the recipe's
// output.format.
func outputFormat(r *recipes.Recipe, export string) string {
	if export != "" {
		return export
	}
	return strings.TrimSpace(string(r.Output.Format))
}
