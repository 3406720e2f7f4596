// Package calib is the calibration stage of post-training quantization: it chooses the
// calibration windows, walks a model one decoder layer at a time over them, and gathers what
// the quantizers need about the input of every linear layer: per-channel ranges, per-tensor
// and per-token maxima, and the Hessian H = 2/n·XᵀX that GPTQ minimises against.
//
// # Windows
//
// Calibration windows come from a text file (plain text, or JSON lines with a "text" field,
// read by corpus.LoadText) or, with Source "self", from the model itself. Every window starts
// with the BOS token followed by L−1 tokens, exactly like the windows that eval.Perplexity
// scores: the activations seen in calibration, including the large ones that the BOS
// position attracts in most LLMs, are then the ones the quantized model meets in evaluation.
// (GPTQ's reference code draws random 2048-token slices without BOS; this package does not,
// on purpose.) From text, the tokenized stream is cut into disjoint slots of L−1 tokens at a
// seeded random offset and N distinct slots are drawn with the seed, so the same seed always
// gives the same windows and no text is used twice. With "self", windows are sampled from the
// model's own distribution, starting at BOS, with a seeded RNG per window and a key/value
// cache (see SampleWindows), which makes the default recipe independent of any dataset.
//
// # Layer by layer
//
// A Pass holds the residual stream of all windows (N·L·hidden values: float32, or fp16 when
// that would pass AutoStream16Bytes, Options.StreamBits; each chunk runs in float32) and loads one decoder
// layer at a time from the checkpoint (model.LoadLayer), so that memory is one layer's float32
// weights plus the activations plus the statistics of that layer, never the whole model.
// Layers are run in chunks of windows (Options.ChunkRows rows at a time) so that the layer's
// intermediate buffers (queries, keys, values, the MLP's 2·intermediate columns) stay small
// too. The caller decides what carries the stream to the next layer: the float layer
// (Propagate "float") or, as GPTQ does, the layer after quantization (Propagate "quantized",
// the default), so that each layer is calibrated on the inputs it will actually receive.
package calib
