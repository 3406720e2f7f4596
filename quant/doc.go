// Package quant is the numerics of W4A8 post-training quantization: symmetric int4 weights in
// groups (round-to-nearest with an optional clipping search; GPTQ lives beside it), integer
// group scales (Integer Scale), int8 activations (static per-tensor or dynamic per-token),
// logarithmic activation equalization (LAE) and the layer-wise activation policy of FPTQ,
// the scalar reference of the W4A8 GEMM that the CUDA FastGEMM kernel is tested against, and
// the codec of the compressed tensor-parallel all-reduce (Flash Communication, FlashComm;
// docs/flash-communication.md).
//
// The package does no I/O. Everything here is a pure function of its arguments, and every
// fast path has a scalar reference beside it that the tests hold it bit-exact to.
//
// The numeric contract (ranges, rounding, the overflow proof of the integer scales and the
// exact float operation order of the GEMM epilogue) is written out in docs/w4a8-numerics.md;
// the packed bit layout of the kernel's operands is docs/fastgemm-layout.md.
package quant
