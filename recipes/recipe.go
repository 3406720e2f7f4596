package recipes

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
)

// Version is the version of the recipe language this package reads and writes. Every recipe
// file states it (`version: 1`), so that a later, incompatible language can refuse old files
// by name instead of silently reading them differently.
const Version = 1

// Default is the preset a quantization uses when no recipe is named.
const Default = "w4a8-fptq"

// Self as calibration.data means data-free calibration: the model generates its own
// calibration sequences, starting from BOS and sampling with calibration.seed.
const Self = "self"

// Propagate says what the layers after a quantized one see during calibration.
type Propagate string

const (
	// PropagateQuantized feeds each layer the output of the already quantized layers before
	// it, as GPTQ's sequential mode does, so that later layers correct earlier errors.
	PropagateQuantized Propagate = "quantized"
	// PropagateFullPrecision feeds each layer the full-precision model's activations.
	PropagateFullPrecision Propagate = "full-precision"
)

// Calibration chooses the data that the activation statistics, the equalization scales and
// GPTQ's Hessians are computed from.
type Calibration struct {
	// Data is Self or the path of a text or JSONL file. Load makes a relative path relative
	// to the recipe file (see Recipe.CalibrationPath).
	Data string
	// Format is "text" or "jsonl" (as eval.LoadText reads them); empty when Data is Self.
	// When a recipe leaves it out, the extension of Data decides: .jsonl is jsonl, anything
	// else text.
	Format    string
	Samples   int   // number of sequences
	SeqLen    int   // tokens per sequence
	Seed      int64 // sampling seed (sequence choice, or generation for Self)
	Propagate Propagate
}

// EqualizationMethod is how activation outliers are moved into the weights before
// quantization.
type EqualizationMethod string

const (
	// LAE is FPTQ's logarithmic activation equalization, s_j = m_j / log2(2 + m_j).
	LAE EqualizationMethod = "lae"
	// SmoothQuant is s_j = max|X_j|^α / max|W_j|^(1−α).
	SmoothQuant EqualizationMethod = "smoothquant"
	// NoEqualization leaves activations as they are.
	NoEqualization EqualizationMethod = "none"
)

// Statistic is the per-channel activation statistic m_j that LAE's scales come from.
type Statistic string

const (
	AbsMax Statistic = "absmax" // max |x_j| over the calibration tokens
	Range  Statistic = "range"  // max x_j − min x_j
)

// Pair names one producer→consumer pair that an equalization scale is folded through: the
// consumer's input channels are divided by s and the producer's output (or the norm's gain)
// multiplied, which leaves the full-precision function unchanged.
type Pair string

const (
	PairQKV    Pair = "qkv"     // input RMSNorm → q_proj, k_proj, v_proj
	PairGateUp Pair = "gate_up" // post-attention RMSNorm → gate_proj, up_proj
	PairDown   Pair = "down"    // up_proj rows → down_proj
	PairO      Pair = "o"       // v_proj rows → o_proj
)

// Equalization configures activation equalization.
type Equalization struct {
	Method    EqualizationMethod
	Statistic Statistic // LAE only
	Alpha     float64   // SmoothQuant's migration strength α in [0, 1]; SmoothQuant only
	Pairs     []Pair    // where scales are folded; not for NoEqualization
}

// Policy decides how each layer's input activations are quantized to int8.
type Policy string

const (
	// PolicyFPTQ is FPTQ's layer-wise choice by the calibration range r of a layer's input:
	// r ≤ v0 static per-tensor; v0 < r ≤ v1 LAE then static per-tensor; r > v1 dynamic
	// per-token.
	PolicyFPTQ Policy = "fptq"
	// PolicyStatic is static per-tensor int8 everywhere, without equalization.
	PolicyStatic Policy = "static"
	// PolicyPerToken is dynamic per-token int8 everywhere.
	PolicyPerToken Policy = "per-token"
	// PolicyLAE is LAE then static per-tensor int8 everywhere.
	PolicyLAE Policy = "lae"
)

// Thresholds are PolicyFPTQ's range thresholds, v0 < v1.
type Thresholds struct {
	V0, V1 float64
}

// Activations configures activation quantization.
type Activations struct {
	Bits       int        // 8, or 16 for weight-only quantization
	Policy     Policy     // 8-bit only
	Thresholds Thresholds // PolicyFPTQ only
}

// WeightMethod is the weight quantizer.
type WeightMethod string

const (
	RTN  WeightMethod = "rtn"  // round to nearest
	GPTQ WeightMethod = "gptq" // GPTQ's Hessian-based error compensation
)

// PerChannel as Weights.GroupSize means one scale per output channel.
const PerChannel = 0

// groupSizes are the group sizes the W4A8 kernel supports.
var groupSizes = []int{32, 64, 128, 256}

// Fallback says what happens to a layer whose input dimension the group size does not
// divide.
type Fallback string

const (
	FallbackPerChannel Fallback = "per-channel" // quantize that layer per channel instead
	FallbackError      Fallback = "error"       // refuse the model
)

// Clip configures the clipping search: each group's (or channel's) scale is shrunk by the
// ratio, from the grid 1 − i·(1−Min)/Steps for i = 0..Steps, that minimises the group's
// quantization MSE. Ratio 1 (no clipping) is always a candidate, so the search never does
// worse than plain absmax scales.
type Clip struct {
	Search bool
	Min    float64 // smallest ratio, in (0, 1); Search only
	Steps  int     // grid steps, 1..1000; Search only
	// ActivationAware weights each input channel's error by its calibration energy E[x_j²]
	// when choosing a group's ratio, so the search minimises the output error the layer will
	// see rather than the weight error (RTN only; GPTQ already weighs by the Hessian).
	ActivationAware bool
}

// GPTQOptions are GPTQ's parameters.
type GPTQOptions struct {
	BlockSize int     // columns updated together (lazy batch updates)
	Damp      float64 // added to the Hessian's diagonal, as a fraction of its mean, in (0, 1]
	// ActOrder quantizes columns in order of decreasing Hessian diagonal. With groups it
	// needs StaticGroups, which keeps each group's columns contiguous in the input dimension
	// as the kernel's layout requires.
	ActOrder bool
	// StaticGroups computes every group's scale from the original weights before GPTQ
	// starts, instead of when the group's first column is reached.
	StaticGroups bool
}

// Weights configures weight quantization: symmetric integers, int4 in −7..7 (see
// quant.Int4Min) or int8 in −127..127.
type Weights struct {
	Bits      int // 4, or 8 (per-channel, for the W8A8 baseline)
	GroupSize int // 32, 64, 128 or 256 (what the W4A8 kernel supports), or PerChannel
	Method    WeightMethod
	Clip      Clip
	GPTQ      GPTQOptions // GPTQ only
	Fallback  Fallback    // grouped weights only
}

// MaxSafe as IntegerScale.Amplifier chooses α per output channel: the largest power of two
// up to MaxAmplifier for which the exact int32 overflow bound of that channel holds.
const MaxSafe = 0

// IntegerScale configures Integer Scale: each group scale s becomes the integer
// ŝ = round(α·s/s_channel), so that the kernel accumulates groups in int32 and converts to
// float once per channel.
type IntegerScale struct {
	Enabled bool
	// Amplifier is α: MaxSafe, or a fixed power of two (quantization fails, naming the
	// layer, when it would overflow int32).
	Amplifier int
	// MaxAmplifier caps α for MaxSafe; a power of two.
	MaxAmplifier int
}

// OutputFormat is the layout of the quantized checkpoint.
type OutputFormat string

const (
	FormatOdyssey           OutputFormat = "odyssey"            // this project's packed W4A8 layout
	FormatCompressedTensors OutputFormat = "compressed-tensors" // vLLM's compressed-tensors
)

// Output configures the written checkpoint.
type Output struct {
	ShardSize int64 // bytes per safetensors shard, at least 1 MiB
	Format    OutputFormat
}

// Recipe is a complete, resolved quantization recipe: every value is set, whether the file
// said it or it came from the base preset or the defaults. Fields that do not apply (GPTQ
// options of an RTN recipe, say) hold their defaults and are left out of Marshal.
type Recipe struct {
	Version      int
	Description  string
	Calibration  Calibration
	Equalization Equalization
	Activations  Activations
	Weights      Weights
	IntegerScale IntegerScale
	// Skip lists patterns of modules kept in 16 bits. A pattern is dot-separated segments,
	// each a path.Match glob (*, ?, [a-z]) matched against one segment of a module name; it
	// matches a module when it matches consecutive segments anywhere in the name. Module
	// names are Hugging Face's: model.embed_tokens, model.layers.3.self_attn.q_proj,
	// model.layers.3.mlp.down_proj, lm_head. So "lm_head", "down_proj", "mlp.down_proj",
	// "layers.0" (all of layer 0), "layers.*.mlp" and "model.layers.3.mlp.down_proj" all work,
	// and "layers.1" does not match layers.10.
	Skip   []string
	Output Output

	// Source is where the recipe came from: a preset name or a file path. It is not part of
	// Marshal or Hash.
	Source string

	src *source // positions of what the file said, for later messages; nil when built in Go
}

// defaults returns the documented defaults, which are the values of the w4a8-fptq preset
// (a test holds them equal).
func defaults() *Recipe {
	return &Recipe{
		Version: Version,
		Calibration: Calibration{
			Data: Self, Samples: 128, SeqLen: 512, Seed: 0, Propagate: PropagateQuantized,
		},
		Equalization: Equalization{
			Method: LAE, Statistic: AbsMax, Alpha: 0.5,
			Pairs: []Pair{PairQKV, PairGateUp, PairDown, PairO},
		},
		Activations: Activations{Bits: 8, Policy: PolicyFPTQ, Thresholds: Thresholds{V0: 15, V1: 150}},
		Weights: Weights{
			Bits: 4, GroupSize: 128, Method: RTN,
			Clip:     Clip{Search: true, Min: 0.5, Steps: 20, ActivationAware: true},
			GPTQ:     GPTQOptions{BlockSize: 128, Damp: 0.01},
			Fallback: FallbackPerChannel,
		},
		IntegerScale: IntegerScale{Enabled: true, Amplifier: MaxSafe, MaxAmplifier: 1024},
		Skip:         []string{"lm_head", "embed_tokens"},
		Output:       Output{ShardSize: 2 << 30, Format: FormatOdyssey},
	}
}

// clone returns a deep copy (the slices are not shared).
func (r *Recipe) clone() *Recipe {
	c := *r
	c.Equalization.Pairs = slices.Clone(r.Equalization.Pairs)
	c.Skip = slices.Clone(r.Skip)
	return &c
}

// Grouped reports whether the weights are quantized in groups rather than per channel.
func (w Weights) Grouped() bool { return w.GroupSize != PerChannel }

// formatFor is the calibration format a data path implies.
func formatFor(data string) string {
	if strings.EqualFold(filepath.Ext(data), ".jsonl") {
		return "jsonl"
	}
	return "text"
}

// CalibrationPath returns the calibration file to read, or "" for Self. A relative
// calibration.data is relative to the recipe file's folder when the recipe was loaded from
// a file, and to the working directory otherwise.
func (r *Recipe) CalibrationPath() string {
	d := r.Calibration.Data
	if d == Self {
		return ""
	}
	if filepath.IsAbs(d) || r.src == nil || r.src.dir == "" {
		return d
	}
	return filepath.Join(r.src.dir, d)
}

// applicability lists every value that only means something in some recipes. One table
// drives three things, so they cannot disagree: Marshal leaves such a value out when it does
// not apply, normalize resets it to its default (so two recipes that mean the same are
// equal and hash the same), and Parse rejects a file that sets it anyway.
var applicability = []struct {
	path    string
	applies func(r *Recipe) bool
	reset   func(r, d *Recipe)
	// when says when the value applies, naming the key it depends on (for messages).
	when, on string
}{
	{"calibration.format", func(r *Recipe) bool { return r.Calibration.Data != Self },
		func(r, d *Recipe) { r.Calibration.Format = "" },
		"only with a calibration file", "calibration.data"},
	{"equalization.statistic", func(r *Recipe) bool { return r.Equalization.Method == LAE },
		func(r, d *Recipe) { r.Equalization.Statistic = d.Equalization.Statistic },
		"only to method lae", "equalization.method"},
	{"equalization.alpha", func(r *Recipe) bool { return r.Equalization.Method == SmoothQuant },
		func(r, d *Recipe) { r.Equalization.Alpha = d.Equalization.Alpha },
		"only to method smoothquant", "equalization.method"},
	{"equalization.pairs", func(r *Recipe) bool { return r.Equalization.Method != NoEqualization },
		func(r, d *Recipe) { r.Equalization.Pairs = d.Equalization.Pairs },
		"only to methods lae and smoothquant", "equalization.method"},
	{"activations.policy", func(r *Recipe) bool { return r.Activations.Bits == 8 },
		func(r, d *Recipe) { r.Activations.Policy = d.Activations.Policy },
		"only to 8-bit activations", "activations.bits"},
	{"activations.thresholds", func(r *Recipe) bool {
		return r.Activations.Bits == 8 && r.Activations.Policy == PolicyFPTQ
	},
		func(r, d *Recipe) { r.Activations.Thresholds = d.Activations.Thresholds },
		"only to policy fptq", "activations.policy"},
	{"weights.clip.min", func(r *Recipe) bool { return r.Weights.Clip.Search },
		func(r, d *Recipe) { r.Weights.Clip.Min = d.Weights.Clip.Min },
		"only with search: true", "weights.clip.search"},
	{"weights.clip.steps", func(r *Recipe) bool { return r.Weights.Clip.Search },
		func(r, d *Recipe) { r.Weights.Clip.Steps = d.Weights.Clip.Steps },
		"only with search: true", "weights.clip.search"},
	{"weights.clip.activation_aware", func(r *Recipe) bool { return r.Weights.Clip.Search && r.Weights.Method == RTN },
		func(r, d *Recipe) { r.Weights.Clip.ActivationAware = d.Weights.Clip.ActivationAware },
		"only with search: true and method rtn", "weights.clip.search"},
	{"weights.gptq", func(r *Recipe) bool { return r.Weights.Method == GPTQ },
		func(r, d *Recipe) { r.Weights.GPTQ = d.Weights.GPTQ },
		"only to method gptq", "weights.method"},
	{"weights.fallback", func(r *Recipe) bool { return r.Weights.Grouped() },
		func(r, d *Recipe) { r.Weights.Fallback = d.Weights.Fallback },
		"only to grouped weights", "weights.group_size"},
	{"integer_scale.amplifier", func(r *Recipe) bool { return r.IntegerScale.Enabled },
		func(r, d *Recipe) { r.IntegerScale.Amplifier = d.IntegerScale.Amplifier },
		"only with enabled: true", "integer_scale.enabled"},
	{"integer_scale.max_amplifier", func(r *Recipe) bool {
		return r.IntegerScale.Enabled && r.IntegerScale.Amplifier == MaxSafe
	},
		func(r, d *Recipe) { r.IntegerScale.MaxAmplifier = d.IntegerScale.MaxAmplifier },
		"only to amplifier max-safe", "integer_scale.amplifier"},
}

// applies reports whether the value at path means something in r.
func (r *Recipe) applies(path string) bool {
	for _, a := range applicability {
		if a.path == path || strings.HasPrefix(path, a.path+".") {
			if !a.applies(r) {
				return false
			}
		}
	}
	return true
}

// normalize puts r in canonical form: the calibration format derived when empty, and
// values that do not apply reset to the defaults.
func (r *Recipe) normalize() {
	if r.Calibration.Data != Self && r.Calibration.Format == "" {
		r.Calibration.Format = formatFor(r.Calibration.Data)
	}
	d := defaults()
	for _, a := range applicability {
		if !a.applies(r) {
			a.reset(r, d)
		}
	}
}

// Hash identifies what the recipe computes: "sha256:" and the hex SHA-256 of its canonical
// YAML without the description. Two recipes that differ only in comments, key order,
// spelling of defaults, base or description have the same hash.
func (r *Recipe) Hash() string {
	c := r.clone()
	c.Description = ""
	b, err := c.Marshal()
	if err != nil {
		// Marshal only fails on an encoder bug; a hash of nothing would be worse than a panic.
		panic("recipes: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
