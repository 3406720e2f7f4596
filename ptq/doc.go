// Package ptq is the post-training quantization pipeline: it calibrates a model layer by
// layer (package calib), folds logarithmic activation equalization (LAE) or SmoothQuant
// scales between producers and consumers, decides every linear input's activation policy
// with FPTQ's rule, quantizes the weights to int4 (RTN or GPTQ) with integer group scales,
// and installs fake-quantized linears so that the quantized model's perplexity can be
// measured on a CPU with bit-exact W4A8 arithmetic.
package ptq
