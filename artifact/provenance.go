package artifact

// Provenance is odyssey.json: how the artifact was made, enough to reproduce it and to
// explain every decision. It holds no timestamps, durations or memory figures, so that the
// same inputs give a byte-identical file (those go to `odyssey quantize --json`).
type Provenance struct {
	// Format is "odyssey" or "compressed-tensors": the layout of the weights beside it.
	Format        string        `json:"format"`
	FormatVersion int           `json:"format_version"`
	LayoutVersion int           `json:"layout_version,omitempty"`
	Tool          Tool          `json:"tool"`
	Recipe        RecipeInfo    `json:"recipe"`
	Source        SourceInfo    `json:"source_model"`
	Calibration   Calibration   `json:"calibration"`
	Scheme        Scheme        `json:"scheme"`
	Notes         []string      `json:"notes,omitempty"`
	Size          SizeInfo      `json:"size"`
	Summary       Summary       `json:"summary"`
	Layers        []LayerRecord `json:"layers"`
}

// Tool is the program that wrote the artifact.
type Tool struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version,omitempty"`
}

// RecipeInfo is the recipe in full, as canonical YAML (recipes.Recipe.Marshal), with the
// preset name or file it came from and its hash.
type RecipeInfo struct {
	Source string `json:"source"`
	Hash   string `json:"hash"`
	YAML   string `json:"yaml"`
}

// SourceInfo is the model that was quantized.
type SourceInfo struct {
	// Path is the model folder as it was given on the command line.
	Path         string      `json:"path"`
	Architecture string      `json:"architecture"`
	Fingerprint  Fingerprint `json:"fingerprint"`
	Parameters   int64       `json:"parameters"`
	// Bytes is the size of the source tensors, and FP16Bytes what they take in 16 bits
	// (the baseline of the compression ratio).
	Bytes     int64            `json:"bytes"`
	FP16Bytes int64            `json:"fp16_bytes"`
	DTypes    map[string]int64 `json:"dtype_bytes"`
}

// SizeInfo is what the artifact's tensors take.
type SizeInfo struct {
	TensorBytes int64 `json:"tensor_bytes"`
	Shards      int   `json:"shards"`
	// CompressionRatio is the source's fp16 size over TensorBytes.
	CompressionRatio float64 `json:"compression_ratio"`
}

// Summary counts what was done to the linears.
type Summary struct {
	Linears         int            `json:"linears"`
	Quantized       int            `json:"quantized"`
	Skipped         []string       `json:"skipped,omitempty"`
	Fallbacks       map[string]int `json:"group_size_fallbacks,omitempty"`
	Policies        map[string]int `json:"activation_policies"`
	MeanWeightError float64        `json:"mean_weight_error"`
	MaxWeightError  float64        `json:"max_weight_error"`
}

// Scheme is the quantization scheme as quantization_config and odyssey.json state it. The
// caller fills it from the recipe; Finish adds what the layers decided.
type Scheme struct {
	Weights      WeightScheme       `json:"weights"`
	Activations  ActivationScheme   `json:"activations"`
	Equalization EqualizationScheme `json:"equalization"`
}

// WeightScheme describes the weights: symmetric int4 codes in −7..7.
type WeightScheme struct {
	Bits int `json:"bits"`
	// GroupSize is the requested group size along the input dimension; 0 means per
	// output channel.
	GroupSize int    `json:"group_size"`
	Method    string `json:"method"`
	// Scales is "integer" (int16 group scales with per-channel amplifiers, Integer Scale)
	// or "float".
	Scales string `json:"scales"`
	// Amplifier is "max-safe" (per channel, the largest safe power of two up to
	// 2^Log2Alpha) or "fixed" (2^Log2Alpha everywhere); integer scales only.
	Amplifier string `json:"amplifier,omitempty"`
	Log2Alpha int    `json:"log2_alpha,omitempty"`
}

// ActivationScheme describes the activations.
type ActivationScheme struct {
	Bits int `json:"bits"`
	// Policy is the rule that chose each input's policy: fptq, static, per-token or lae.
	Policy string   `json:"policy,omitempty"`
	V0     *float64 `json:"v0,omitempty"`
	V1     *float64 `json:"v1,omitempty"`
}

// EqualizationScheme describes the equalization folded into the weights.
type EqualizationScheme struct {
	Method    string   `json:"method"`
	Statistic string   `json:"statistic,omitempty"`
	Alpha     float64  `json:"alpha,omitempty"`
	Pairs     []string `json:"pairs,omitempty"`
}
