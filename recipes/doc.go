// Package recipes reads, checks and writes quantization recipes: small YAML files that say
// how a model is quantized, kept in version control and checked in CI.
//
// The language is strict because a recipe that silently means something else than its
// author thinks produces a model that is quietly worse. Unknown keys (with a "did you mean"),
// wrong types, values out of range, keys that do not apply to the recipe (gptq options for
// RTN weights) and impossible combinations (equalization with 16-bit activations) are all
// errors, reported together, each as file:line:column: message. Where a check needs the
// model (does the group size divide every layer's input dimension, does each skip pattern
// match something) Recipe.ValidateForModel does it from config.json alone, before any weight
// is read.
//
// # Presets and defaults
//
// Shipped presets, selectable by name (Presets, Preset, Load):
//
//	w4a8-fptq         the default: FPTQ, int4 g128 RTN weights, layer-wise int8 activations with LAE
//	w4a8-odyssey      w4a8-fptq with GPTQ weights and a clipping search
//	w4a8-rtn          baseline: int4 g128 RTN, per-token int8 activations, no equalization
//	w8a8-smoothquant  baseline: SmoothQuant α 0.5, per-channel int8 weights, per-token int8 activations
//	w4a16-gptq        baseline: int4 g128 GPTQ weights, 16-bit activations
//
// Their files (presets/*.yaml) explain each choice. A recipe file may leave out any section
// or key; what it leaves out comes from `base: PRESET` when it names one, else from the
// defaults, which are the w4a8-fptq preset's values. `odyssey recipes show` prints the
// resolved recipe, and Recipe.Marshal writes it canonically (only the keys that apply, in
// schema order) for the quantized model's provenance; Recipe.Hash identifies it.
//
// # The language, version 1
//
//	version: 1                # required in every file
//	base: w4a8-fptq           # optional: start from this preset instead of the defaults
//	description: "..."        # optional, free text; not inherited from the base
//	calibration:
//	  data: self              # self (the model generates its own text from BOS), or a file path,
//	                          # relative to the recipe file
//	  format: text            # text | jsonl (one {"text": ...} per line); only with a file;
//	                          # by default .jsonl is jsonl, anything else text
//	  samples: 128            # ≥ 1 sequences
//	  seq_len: 512            # ≥ 2 tokens each, at most the model's max_position_embeddings
//	  seed: 0                 # ≥ 0
//	  propagate: quantized    # quantized (layers see the quantized layers' output) | full-precision
//	equalization:
//	  method: lae             # lae | smoothquant | none
//	  statistic: absmax       # absmax | range (max − min); lae only
//	  alpha: 0.5              # [0, 1]; smoothquant only
//	  pairs: [qkv, gate_up, down, o]  # non-empty subset; not with none
//	activations:
//	  bits: 8                 # 8 | 16 (weight-only)
//	  policy: fptq            # fptq | static | per-token | lae; 8-bit only
//	  thresholds: {v0: 15, v1: 150}   # 0 ≤ v0 < v1; policy fptq only
//	weights:
//	  bits: 4                 # 4 | 8 (8 needs per-channel and 8-bit activations)
//	  group_size: 128         # 32 | 64 | 128 | 256 | per-channel
//	  method: rtn             # rtn | gptq
//	  clip: {search: false}   # with search: true also min (0 < min < 1, default 0.5) and
//	                          # steps (1..1000, default 20): ratios 1 − i·(1−min)/steps, i = 0..steps
//	  gptq: {block_size: 128, damp: 0.01, act_order: false, static_groups: false}  # gptq only;
//	                          # damp in (0, 1]; act_order with groups needs static_groups
//	  fallback: per-channel   # per-channel | error, for layers whose input dimension the
//	                          # group size does not divide; grouped weights only
//	integer_scale:
//	  enabled: true           # needs grouped 4-bit weights and 8-bit activations
//	  amplifier: max-safe     # max-safe | a power of two up to 65536 (fixed α); enabled only
//	  max_amplifier: 1024     # power of two, the cap for max-safe; max-safe only
//	skip: [lm_head, embed_tokens]     # modules kept in 16 bits (patterns below); [] for none
//	output:
//	  shard_size: 2GiB        # bytes, or a size with B, KB, MB, GB, TB, KiB, MiB, GiB, TiB; ≥ 1MiB
//	  format: odyssey         # odyssey | compressed-tensors
//
// Impossible combinations: policy fptq or lae without equalization lae; equalization lae with
// policy static or per-token (write policy lae for LAE everywhere); any equalization with
// 16-bit activations; 8-bit weights in groups, or with 16-bit activations; integer_scale
// enabled without grouped 4-bit weights and 8-bit activations; GPTQ act_order on grouped
// weights without static_groups (the groups would not be contiguous, as the kernel needs).
//
// Keys with no value (`seed:`), YAML aliases (*name) and merge keys (<<), duplicate keys and
// second documents are errors too: each has a plausible reading, so none is guessed.
//
// # Skip patterns
//
// Module names are Hugging Face's: model.embed_tokens, model.layers.N.self_attn.q_proj (also
// k_proj, v_proj, o_proj), model.layers.N.mlp.gate_proj (also up_proj, down_proj), lm_head.
// A pattern is dot-separated segments, each a path.Match glob (*, ?, [...]) matching exactly
// one segment of the name; it matches a module when its segments match consecutive segments
// anywhere in the name. So "lm_head", "down_proj", "mlp.down_proj", "layers.0" (all of layer
// 0), "layers.*.self_attn" and "model.layers.3.mlp.down_proj" all do what they say, and
// "layers.1" does not match layer 10. A pattern that matches no module of the model is an
// error of ValidateForModel (a typo there would quantize what was meant to be kept).
package recipes
