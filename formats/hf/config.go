package hf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
)

// family holds what differs between the supported config classes: the names, and the
// defaults that transformers applies when config.json leaves a key out. The defaults matter
// because transformers writes only keys it was given for hand-made or converted configs, and
// the checkpoint was run with the class defaults.
type family struct {
	arch      string
	modelType string
	// kvHeads is num_key_value_heads when the key is absent; 0 means "equal to the heads".
	// (An explicit null always means "equal to the heads".)
	kvHeads int
	maxPos  int
	eps     float64
	bos     int // -1: no default
	eos     []int
	theta   float64
	// window is the sliding window when the key is absent (Mistral's 4096).
	window int
}

// families lists the supported config classes, with the defaults of transformers'
// LlamaConfig, MistralConfig, Qwen2Config and MixtralConfig.
var families = []family{
	{arch: "LlamaForCausalLM", modelType: "llama", kvHeads: 0, maxPos: 2048, eps: 1e-6, bos: 1, eos: []int{2}, theta: 10000},
	{arch: "MistralForCausalLM", modelType: "mistral", kvHeads: 8, maxPos: 4096 * 32, eps: 1e-6, bos: 1, eos: []int{2}, theta: 10000, window: 4096},
	{arch: "Qwen2ForCausalLM", modelType: "qwen2", kvHeads: 32, maxPos: 32768, eps: 1e-6, bos: -1, eos: nil, theta: 10000},
	{arch: "MixtralForCausalLM", modelType: "mixtral", kvHeads: 8, maxPos: 4096 * 32, eps: 1e-5, bos: 1, eos: []int{2}, theta: 1e6},
}

// SupportedArchitectures returns the architectures ParseConfig accepts, sorted. Load runs
// all of them except MixtralForCausalLM.
func SupportedArchitectures() []string {
	var s []string
	for _, f := range families {
		s = append(s, f.arch)
	}
	sort.Strings(s)
	return s
}

func familyByArch(arch string) (family, bool) {
	for _, f := range families {
		if f.arch == arch {
			return f, true
		}
	}
	return family{}, false
}

func familyByModelType(mt string) (family, bool) {
	for _, f := range families {
		if f.modelType == mt {
			return f, true
		}
	}
	return family{}, false
}

// LoadConfig reads and parses a config.json file. Errors name the file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("hf: %w", err)
	}
	c, err := parseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("hf: %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses the contents of a config.json. It checks that the values describe a
// consistent model (positive sizes, heads divisible by KV heads, sane rope scaling) and
// reports every problem it finds, not just the first. A config that parses may still be one
// that the forward pass cannot run (Mixtral, another activation, another rope scaling);
// Config.Supported says so, and Load checks it.
func ParseConfig(data []byte) (Config, error) {
	c, err := parseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("hf: config: %w", err)
	}
	return c, nil
}

func parseConfig(data []byte) (Config, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return Config{}, fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil { // the file was the JSON literal null
		return Config{}, errors.New("not a JSON object")
	}
	f := &fields{m: m}

	fam, arch, err := pickFamily(f)
	if err != nil {
		return Config{}, err
	}
	c := Config{Architecture: arch, ModelType: fam.modelType}

	c.HiddenSize = f.requiredInt("hidden_size")
	c.IntermediateSize = f.requiredInt("intermediate_size")
	c.NumLayers = f.requiredInt("num_hidden_layers")
	c.NumHeads = f.requiredInt("num_attention_heads")
	c.VocabSize = f.requiredInt("vocab_size")

	c.NumKVHeads = c.NumHeads
	if f.present("num_key_value_heads") {
		c.NumKVHeads = f.int("num_key_value_heads", c.NumHeads)
	} else if fam.kvHeads != 0 {
		c.NumKVHeads = fam.kvHeads
	}

	headDimGiven := !f.null("head_dim")
	c.HeadDim = f.int("head_dim", 0)
	if !headDimGiven && c.NumHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumHeads
	}

	c.MaxPositionEmbeddings = f.int("max_position_embeddings", fam.maxPos)
	c.RMSNormEps = f.float("rms_norm_eps", fam.eps)
	c.HiddenAct = f.string("hidden_act", "silu")
	if c.HiddenAct == "swish" { // transformers' ACT2FN maps "swish" to the same SiLU
		c.HiddenAct = "silu"
	}
	c.TieWordEmbeddings = f.bool("tie_word_embeddings", false)

	switch fam.modelType {
	case "llama":
		c.AttentionBias = f.bool("attention_bias", false)
		c.AttentionOutputBias = c.AttentionBias
		c.MLPBias = f.bool("mlp_bias", false)
	case "qwen2":
		// Qwen2Attention hard-codes bias=True for q, k and v and bias=False for o, whatever
		// the config says; Qwen2 configs have no attention_bias key.
		c.AttentionBias = true
	}

	switch fam.modelType {
	case "mistral", "mixtral":
		if f.present("sliding_window") {
			c.SlidingWindow = f.int("sliding_window", 0)
		} else {
			c.SlidingWindow = fam.window
		}
	case "qwen2":
		c.SlidingWindow, c.partialSliding = qwen2Sliding(f, c.NumLayers)
	}

	if fam.modelType == "mixtral" {
		c.NumLocalExperts = f.int("num_local_experts", 8)
		c.NumExpertsPerTok = f.int("num_experts_per_tok", 2)
	}

	c.BOSTokenID = fam.bos
	if f.present("bos_token_id") {
		c.BOSTokenID = f.int("bos_token_id", -1)
	}
	c.EOSTokenIDs = append([]int(nil), fam.eos...)
	if f.present("eos_token_id") {
		c.EOSTokenIDs = f.intList("eos_token_id")
	}

	c.DType = f.string("dtype", "")
	if c.DType == "" {
		c.DType = f.string("torch_dtype", "")
	}
	c.DType = strings.TrimPrefix(c.DType, "torch.")

	c.Rope = parseRope(f, fam)

	// Validate even after type errors, skipping the keys that had them, so that one run
	// reports every problem in the file.
	errs := append(f.errs, c.validate(headDimGiven, f.bad)...)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// pickFamily decides the config class from "architectures" and "model_type". The
// architecture names the model class; model_type is what transformers' Auto classes actually
// dispatch on, so when both are given they must agree.
func pickFamily(f *fields) (family, string, error) {
	var archs []string
	if !f.null("architectures") {
		if err := json.Unmarshal(f.m["architectures"], &archs); err != nil {
			return family{}, "", fmt.Errorf("architectures: want a list of strings, got %s", abbrev(f.m["architectures"]))
		}
	}
	modelType := f.string("model_type", "")
	if len(f.errs) > 0 {
		return family{}, "", errors.Join(f.errs...)
	}
	supported := strings.Join(SupportedArchitectures(), ", ")

	var fam family
	var arch string
	switch {
	case len(archs) > 0:
		found := false
		for _, a := range archs {
			if fam, found = familyByArch(a); found {
				arch = a
				break
			}
		}
		if !found {
			return family{}, "", fmt.Errorf("unsupported architecture %s (supported: %s)", quoteList(archs), supported)
		}
	case modelType != "":
		var ok bool
		if fam, ok = familyByModelType(modelType); !ok {
			return family{}, "", fmt.Errorf("no architectures and unsupported model_type %q (supported: %s)", modelType, supported)
		}
		arch = fam.arch
	default:
		return family{}, "", fmt.Errorf("neither architectures nor model_type is set; cannot tell the model (supported: %s)", supported)
	}
	if modelType != "" && modelType != fam.modelType {
		return family{}, "", fmt.Errorf("architecture %s does not match model_type %q (want %q)", arch, modelType, fam.modelType)
	}
	return fam, arch, nil
}

// qwen2Sliding reproduces Qwen2Config's choice of sliding-window layers: with
// use_sliding_window, layers from max_window_layers on use the window (or the explicit
// layer_types say which). It returns the window and whether only some layers use it.
func qwen2Sliding(f *fields, numLayers int) (window int, partial bool) {
	if !f.bool("use_sliding_window", false) || f.null("sliding_window") && f.present("sliding_window") {
		return 0, false
	}
	window = f.int("sliding_window", 4096)
	sliding := 0
	if !f.null("layer_types") {
		var types []string
		if err := json.Unmarshal(f.m["layer_types"], &types); err != nil {
			f.errs = append(f.errs, fmt.Errorf("layer_types: want a list of strings, got %s", abbrev(f.m["layer_types"])))
			return 0, false
		}
		for _, t := range types {
			if t == "sliding_attention" {
				sliding++
			}
		}
	} else {
		from := f.int("max_window_layers", 28)
		sliding = max(0, numLayers-max(from, 0))
	}
	switch {
	case sliding == 0:
		return 0, false
	case sliding == numLayers:
		return window, false
	}
	return window, true
}

// parseRope reads rotary embedding settings from the newer rope_parameters block
// (transformers 5: theta and scaling together) or, failing that, from the classic top-level
// rope_theta plus rope_scaling (whose type key was "type" before it became "rope_type").
func parseRope(f *fields, fam family) Rope {
	r := Rope{Theta: f.float("rope_theta", fam.theta), Type: "default"}
	key := "rope_parameters"
	if f.null(key) {
		key = "rope_scaling"
	}
	if f.null(key) {
		return r
	}
	var block map[string]json.RawMessage
	if err := json.Unmarshal(f.m[key], &block); err != nil || block == nil {
		f.errs = append(f.errs, fmt.Errorf("%s: want an object, got %s", key, abbrev(f.m[key])))
		return r
	}
	b := &fields{m: block, prefix: key + "."}
	if _, ok := block["rope_theta"]; !ok {
		if _, ok := block["rope_type"]; !ok {
			if _, ok := block["type"]; !ok && len(block) > 0 && isObject(block) {
				// rope_parameters keyed by layer type ("full_attention": {...}), used by
				// models that mix attention kinds; none of the supported families does.
				f.errs = append(f.errs, fmt.Errorf("%s: per-layer-type rope parameters are not supported", key))
				return r
			}
		}
	}
	r.Theta = b.float("rope_theta", r.Theta)
	r.Type = b.string("rope_type", "")
	if r.Type == "" {
		r.Type = b.string("type", "default")
	}
	if r.Type != "default" {
		r.Factor = b.float("factor", 0)
	}
	if r.Type == "llama3" {
		r.LowFreqFactor = b.float("low_freq_factor", 0)
		r.HighFreqFactor = b.float("high_freq_factor", 0)
		r.OriginalMaxPositionEmbeddings = b.int("original_max_position_embeddings", 0)
	}
	if len(b.errs) > 0 {
		// Mark the whole rope as bad so that validate does not pile range errors on top of
		// the type errors already reported.
		f.errs = append(f.errs, b.errs...)
		f.markBad("rope")
		if b.bad[key+".rope_theta"] {
			f.markBad("rope_theta")
		}
	}
	return r
}

func isObject(block map[string]json.RawMessage) bool {
	for _, v := range block {
		if t := bytes.TrimSpace(v); len(t) == 0 || t[0] != '{' {
			return false
		}
	}
	return true
}

// validate checks that the sizes describe a model that can exist, so that shape checks and
// the forward pass can trust them. All problems are reported together; keys in skip already
// failed to parse and are not checked again.
func (c *Config) validate(headDimGiven bool, skip map[string]bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	positive := func(name string, v int) bool {
		if skip[name] {
			return false
		}
		if v <= 0 {
			bad("%s must be positive, got %d", name, v)
			return false
		}
		return true
	}
	positive("hidden_size", c.HiddenSize)
	positive("intermediate_size", c.IntermediateSize)
	positive("num_hidden_layers", c.NumLayers)
	positive("vocab_size", c.VocabSize)
	positive("max_position_embeddings", c.MaxPositionEmbeddings)
	headsOK := positive("num_attention_heads", c.NumHeads)
	kvOK := positive("num_key_value_heads", c.NumKVHeads)
	if headsOK && kvOK && c.NumHeads%c.NumKVHeads != 0 {
		bad("num_attention_heads %d is not a multiple of num_key_value_heads %d", c.NumHeads, c.NumKVHeads)
	}
	if headDimGiven {
		positive("head_dim", c.HeadDim)
	} else if headsOK && c.HiddenSize > 0 && c.HiddenSize%c.NumHeads != 0 {
		bad("head_dim is not given and hidden_size %d is not a multiple of num_attention_heads %d", c.HiddenSize, c.NumHeads)
	}
	if !skip["rms_norm_eps"] && (!(c.RMSNormEps > 0) || math.IsInf(c.RMSNormEps, 0)) {
		bad("rms_norm_eps must be positive and finite, got %g", c.RMSNormEps)
	}
	if c.SlidingWindow < 0 {
		bad("sliding_window must be positive or null, got %d", c.SlidingWindow)
	}
	if c.BOSTokenID < -1 {
		bad("bos_token_id must not be negative, got %d", c.BOSTokenID)
	}
	for _, id := range c.EOSTokenIDs {
		if id < 0 {
			bad("eos_token_id must not be negative, got %d", id)
		}
	}
	if c.ModelType == "mixtral" {
		if positive("num_local_experts", c.NumLocalExperts) && positive("num_experts_per_tok", c.NumExpertsPerTok) &&
			c.NumExpertsPerTok > c.NumLocalExperts {
			bad("num_experts_per_tok %d exceeds num_local_experts %d", c.NumExpertsPerTok, c.NumLocalExperts)
		}
	}
	r := c.Rope
	if !skip["rope_theta"] && (!(r.Theta > 0) || math.IsInf(r.Theta, 0)) {
		bad("rope_theta must be positive and finite, got %g", r.Theta)
	}
	if r.Type == "llama3" && !skip["rope"] {
		// The llama3 frequency ramp divides by high_freq_factor-low_freq_factor and by
		// original_max_position_embeddings; anything else makes it produce NaN or nonsense.
		if !(r.Factor > 0) {
			bad("llama3 rope scaling: factor must be positive, got %g", r.Factor)
		}
		if !(r.LowFreqFactor > 0) {
			bad("llama3 rope scaling: low_freq_factor must be positive, got %g", r.LowFreqFactor)
		}
		if !(r.HighFreqFactor > r.LowFreqFactor) {
			bad("llama3 rope scaling: high_freq_factor %g must exceed low_freq_factor %g", r.HighFreqFactor, r.LowFreqFactor)
		}
		if r.OriginalMaxPositionEmbeddings <= 0 {
			bad("llama3 rope scaling: original_max_position_embeddings must be positive, got %d", r.OriginalMaxPositionEmbeddings)
		}
	}
	return errs
}

// UnsupportedError says that a well-formed config describes a model that Odyssey cannot run
// yet. It matches errors.ErrUnsupported, so callers such as `odyssey inspect` can describe
// the model instead of failing outright.
type UnsupportedError struct {
	Reason string
}

func (e *UnsupportedError) Error() string { return e.Reason }

// Is makes errors.Is(err, errors.ErrUnsupported) true.
func (e *UnsupportedError) Is(target error) bool { return target == errors.ErrUnsupported }

// Supported reports whether the forward pass can run this config: a dense SwiGLU decoder
// with default or llama3 rope and, for Qwen2, the same attention kind in every layer. It
// returns nil or one *UnsupportedError per reason, joined. Load calls it, so that an
// unsupported model fails when it is opened rather than producing wrong numbers later.
func (c Config) Supported() error {
	var errs []error
	no := func(format string, args ...any) {
		errs = append(errs, &UnsupportedError{Reason: fmt.Sprintf(format, args...)})
	}
	if c.ModelType == "mixtral" || c.NumLocalExperts > 0 {
		no("Mixtral (mixture of experts) is not supported yet")
	}
	if c.HiddenAct != "silu" {
		no("hidden_act %q is not supported: Odyssey assumes a SwiGLU MLP, whose activation is silu", c.HiddenAct)
	}
	switch c.Rope.Type {
	case "default", "llama3":
	default:
		no("rope scaling type %q (factor %g) is not supported yet (supported: default, llama3)", c.Rope.Type, c.Rope.Factor)
	}
	if c.partialSliding {
		no("Qwen2 sliding-window attention on only some layers (use_sliding_window with max_window_layers or layer_types) is not supported")
	}
	return errors.Join(errs...)
}

// fields reads typed values out of a decoded JSON object, collecting type errors so that
// one pass reports them all. A key whose value is JSON null reads as absent, as it does for
// transformers' config classes.
type fields struct {
	m      map[string]json.RawMessage
	prefix string // for error messages inside nested objects
	errs   []error
	bad    map[string]bool // keys (with prefix) that failed to parse
}

// present reports whether key is in the object, null or not.
func (f *fields) present(key string) bool {
	_, ok := f.m[key]
	return ok
}

// null reports whether key is absent or null.
func (f *fields) null(key string) bool {
	v, ok := f.m[key]
	return !ok || string(bytes.TrimSpace(v)) == "null"
}

func (f *fields) fail(key, want string) {
	f.errs = append(f.errs, fmt.Errorf("%s%s: want %s, got %s", f.prefix, key, want, abbrev(f.m[key])))
	f.markBad(key)
}

func (f *fields) markBad(key string) {
	if f.bad == nil {
		f.bad = map[string]bool{}
	}
	f.bad[f.prefix+key] = true
}

func (f *fields) requiredInt(key string) int {
	if f.null(key) {
		f.errs = append(f.errs, fmt.Errorf("%s%s is missing", f.prefix, key))
		f.markBad(key)
		return 0
	}
	return f.int(key, 0)
}

// int reads an integer. Integral floats (8192.0) are accepted because Python writers
// sometimes produce them for values that are integers in meaning.
func (f *fields) int(key string, def int) int {
	if f.null(key) {
		return def
	}
	var x float64
	if err := json.Unmarshal(f.m[key], &x); err != nil || x != math.Trunc(x) || math.Abs(x) > 1<<53 {
		f.fail(key, "an integer")
		return def
	}
	return int(x)
}

func (f *fields) float(key string, def float64) float64 {
	if f.null(key) {
		return def
	}
	var x float64
	if err := json.Unmarshal(f.m[key], &x); err != nil {
		f.fail(key, "a number")
		return def
	}
	return x
}

func (f *fields) bool(key string, def bool) bool {
	if f.null(key) {
		return def
	}
	var x bool
	if err := json.Unmarshal(f.m[key], &x); err != nil {
		f.fail(key, "true or false")
		return def
	}
	return x
}

func (f *fields) string(key, def string) string {
	if f.null(key) {
		return def
	}
	var x string
	if err := json.Unmarshal(f.m[key], &x); err != nil {
		f.fail(key, "a string")
		return def
	}
	return x
}

// intList reads a value that may be one integer or a list of them (eos_token_id).
func (f *fields) intList(key string) []int {
	if f.null(key) {
		return nil
	}
	raw := bytes.TrimSpace(f.m[key])
	if len(raw) > 0 && raw[0] == '[' {
		var xs []float64
		if err := json.Unmarshal(raw, &xs); err != nil {
			f.fail(key, "an integer or a list of integers")
			return nil
		}
		out := make([]int, len(xs))
		for i, x := range xs {
			if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				f.fail(key, "an integer or a list of integers")
				return nil
			}
			out[i] = int(x)
		}
		return out
	}
	before := len(f.errs)
	x := f.int(key, 0)
	if len(f.errs) > before {
		f.errs[len(f.errs)-1] = fmt.Errorf("%s%s: want an integer or a list of integers, got %s", f.prefix, key, abbrev(raw))
		return nil
	}
	return []int{x}
}

// abbrev shortens a JSON value for an error message.
func abbrev(v json.RawMessage) string {
	s := strings.TrimSpace(string(v))
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}
