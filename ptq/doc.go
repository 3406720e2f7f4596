// Package ptq is the post-training quantization pipeline of Odyssey: it turns a float
// LLaMA-family checkpoint into W4A8 (int4 weights in groups with integer scales, int8
// activations) layer by layer, records every decision with the numbers behind it, and
// installs fake-quantized linears so that the quantized model's perplexity can be measured
// on a CPU with the kernel's exact arithmetic.
//
// # Pipeline
//
// Run draws the calibration windows (package calib: a text file, or windows the model
// samples itself, which is the data-free default) and walks the decoder layers with a
// calib.Pass, holding one layer's weights at a time. For each layer:
//
//  1. Statistics. The float layer runs on its calibration inputs; the pass records, for each
//     of its four distinct inputs (the input q/k/v share, o's, the input gate/up share,
//     down's), per-channel min/max/max|x| and E[x²], per-tensor and per-token maxima, and
//     for GPTQ the Hessian H = 2/n·XᵀX.
//  2. Activation policy and equalization. Each input's range decides its policy with
//     quant.Decide (FPTQ: range ≤ v0 → static per-tensor, v0 < range ≤ v1 → LAE then static,
//     range > v1 → dynamic per-token). LAE scales s_j = m_j/log2(2+m_j) are folded into the
//     producer (1/s: the RMSNorm weight for q/k/v and gate/up, the v_proj rows and bias for
//     o_proj under grouped-query attention, the up_proj rows and bias for down_proj) and the
//     consumers' columns (s), which leaves the float function unchanged, and the statistics
//     are transformed to the folded input (max|x_j|/s_j exactly, H_ij/(s_i·s_j)). By default
//     (Equalization.Scope "dynamic") per-token inputs are equalized too, which FPTQ does not
//     do: channel outliers survive per-token scales, and on small-llama-outliers that is the
//     difference between a 5% and a 2% perplexity loss (ptq/ACCURACY.md).
//  3. Weights. Every linear is quantized to int4 in groups (per-channel where the group does
//     not divide the input width), by round to nearest with an activation-aware clipping
//     search, or by GPTQ (act-order by default) against the folded input's Hessian, shared
//     by the linears that read the same input; then the float group scales become integer
//     scales (quant.IntegerScales). Static inputs get their scale from the calibrated max|x|.
//  4. Propagation. The quantized layer (or, with Calib.Propagate "float", the float one) runs
//     on the calibration inputs to produce the next layer's, so that later layers are
//     calibrated on what they will receive, as GPTQ does.
//
// # Result
//
// A Result holds, per layer, the folded RMSNorm weights and, per linear, the int4 codes with
// float and integer scales (or the int8 weight of the W8A8 baseline, or the folded float
// weight of a skipped linear), the folded bias, the activation quantization (policy and
// static scale) and the report: decision and its numbers, weight error, output error, GPTQ
// statistics, amplifier statistics, timings. The embedding, final norm and LM head are
// never quantized or folded and are read from the checkpoint. FakeQuantModel assembles a
// model.Model from it for eval.Perplexity and eval.KL: W4A8 linears are quant.QLinear,
// bit-exact with quant.FakeQuantLinearRef (the CUDA kernel's contract);
// FakeQuantModelFloatScales swaps in FloatScaleLinear on the same codes to measure what
// Integer Scale costs.
//
// # Options
//
// Options are plain structs meant to be filled from a recipe: DefaultOptions is the W4A8
// FPTQ recipe, and string and integer fields read their zero value as the default. Errors
// report bad options; panics are reserved for misuse by code (a layer of another model).
package ptq
