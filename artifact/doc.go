// Package artifact writes and reads the quantized model that `odyssey quantize` produces: a
// folder that a W4A8 runtime loads, that `odyssey eval` evaluates on CPU with the scalar
// reference arithmetic, and that `odyssey inspect` explains.
//
// # The folder (format version 1)
//
//	config.json                    the source config, torch_dtype float16, plus
//	                               quantization_config (QuantConfig): quant_method "odyssey",
//	                               format "fastgemm-w4a8", format_version, layout_version (of
//	                               docs/fastgemm-layout.md), the scheme (weights, activations,
//	                               equalization), group-size fallbacks, modules kept in 16
//	                               bits, and a count of linears per activation policy
//	model.safetensors              the weights; or model-NNNNN-of-NNNNN.safetensors shards
//	  (+ .index.json)              of at most the recipe's output.shard_size
//	tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json
//	                               copied from the source when present
//	odyssey.json                   provenance (Provenance): tool version, the full canonical
//	                               recipe YAML and its hash, the source model (path as given,
//	                               fingerprint, size), the calibration source (sha256 of the
//	                               file, or "self") with seed, samples, length and the hash of
//	                               the windows drawn, and every layer's decisions and errors
//
// Tensors, with Hugging Face names:
//
//	model.embed_tokens.weight, model.norm.weight, lm_head.weight      F16, from the source
//	model.layers.N.input_layernorm.weight, ...post_attention_layernorm.weight
//	                                   F32, with the LAE (or SmoothQuant) scales folded in
//	                                   (float32 so that the folded values are exactly those
//	                                   the static activation scales were calibrated on)
//	per quantized linear NAME (model.layers.N.self_attn.q_proj, ...): exactly the list of
//	docs/fastgemm-layout.md — NAME.qweight (U8, packed int4 codes), NAME.group_scale (I16
//	integer group scales, or F32 float scales), NAME.channel_scale (F32 epilogue factor
//	s_c/(16·α_c)), NAME.alpha_log2 (U8, integer scales only), NAME.act_scale (F32 [1],
//	static scale or 0), NAME.policy (U8 [1]: 0 static, 1 LAE + static, 2 dynamic per-token,
//	3 none/16-bit), NAME.bias (F16, when the model has one)
//	per linear the recipe skips: NAME.weight (F16, equalization folded in) and NAME.bias
//
// Every 16-bit tensor is fp16 whatever the source dtype; a value that does not fit fp16
// (a folded bias, say) is an error naming the tensor, not an Inf in the file. Biases are fp16
// as the layout specifies, so for models with biases (Qwen2) the folded bias is rounded.
//
// # Reading
//
// Open checks the config and versions; Artifact.LoadModel rebuilds every quantized linear
// as the ptq result it came from (codes unpacked, s_c = channel_scale·2^(4+alpha_log2)
// exactly, the overflow bound recomputed and validated) and installs ptq's module for it,
// quant.QLinear for W4A8 with integer scales, so evaluating an artifact computes exactly the
// kernel contract's arithmetic, and exactly the fake-quantized model's (up to the fp16
// rounding of the embedding and LM head of a non-fp16 source, and of biases). Everything read is
// treated as untrusted: dtypes, shapes, code ranges, padding and scale ranges are checked.
//
// # Writing: staging, checkpoints, resume
//
// A Writer works in a staging folder (the CLI uses OUT.partial beside OUT). As the
// quantizer finishes each layer, WriteLayer writes layers/NNNNN.safetensors atomically: the
// layer's artifact tensors, float32 copies of its biases and skipped weights (so that a resumed run
// propagates calibration activations with exactly the numbers of an uninterrupted one),
// and its LayerRecord as metadata. Memory thus holds one quantized layer, and state.json
// (State: model fingerprint, recipe hash, calibration source, sha256, seed and windows
// hash) lets Reopen refuse to continue from other inputs. Finish streams the final shards
// tensor by tensor from the layer checkpoints and the source model, writes config.json,
// the tokenizer files and odyssey.json, and removes layers/ and state.json; the caller
// then renames the folder into place, so a finished artifact appears whole or not at all.
//
// # Determinism
//
// The same source, recipe and calibration give a byte-identical folder: tensors are pure
// functions of the quantizer's output, the safetensors writer is deterministic, JSON keys
// are sorted, and odyssey.json holds no timestamps, durations, memory figures or absolute
// paths beyond the ones given on the command line (timings go to `odyssey quantize --json`).
// The quantizer itself is deterministic and independent of GOMAXPROCS (parallel loops write
// disjoint outputs or reduce in a fixed order; calibration statistics are summed in fixed
// row blocks; TestQuantizeGOMAXPROCSIndependent in cmd/odyssey checks 1, 2 and 8 cores and a
// resume on another count). Statistics come from a float32 forward pass whose GEMM
// kernels, exponential and error sums follow one canonical arithmetic on every CPU and build,
// so the folder is also the same on any x86-64 CPU, with -tags purego and at GOAMD64=v3
// (every float x*y+z is written so the compiler cannot fuse it; arm64 follows the same code);
// docs/determinism.md has the whole note and TestQuantizePresetsGolden the test.
//
// # compressed-tensors
//
// With output "compressed-tensors" Finish writes the pack-quantized form of
// llm-compressor's format instead (see PackInt32 and compressed.go for what is and is not
// carried over); the layer checkpoints and odyssey.json are the same.
package artifact
