// Package safetensors reads and writes checkpoints in Hugging Face's safetensors format:
// single files, and sharded sets described by a model.safetensors.index.json.
//
// # File format
//
// A file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON, and a data
// section. The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the data section) and may hold "__metadata__", a map of strings.
// Tensors are little-endian, row-major, and tile the data section exactly.
//
// # Reading
//
// Open parses and validates every header before returning, then maps the files (on unix;
// elsewhere it reads with ReadAt), so that opening a 100 GB checkpoint reads kilobytes and
// Bytes returns a view of one tensor without copying. Files are treated as hostile: the
// header length is bounded (MaxHeaderSize) and checked against the file size before anything
// is allocated, and the header must describe the data exactly as the reference
// implementation demands: known dtypes, non-negative dimensions, shape × dtype size equal to
// the byte length (with overflow-checked arithmetic), offsets inside the data section and
// tiling it without gap, overlap or trailing bytes. It is stricter in one respect: duplicate
// JSON keys, which other parsers resolve silently by keeping the last, are errors. Problems
// are reported as *FormatError, one line naming the file and the tensor; nothing panics on
// any input (FuzzOpen checks this).
//
// Float32 and Float32Into convert floating-point tensors; the converters they use
// (F16ToF32, BF16ToF32, F32FromBytes, ... and the reverse Float32ToF16, Float32ToBF16,
// rounding to nearest even) are exported for use on data from elsewhere.
//
// # Writing: why two phases
//
// A safetensors header precedes the data and holds every tensor's offsets, and shard
// assignment depends on every tensor's size; so a writer must know all shapes before the
// first data byte, and a one-call "save these tensors" API must hold the whole model in
// memory. Writer splits the job instead: NewWriter takes the declarations (name, dtype,
// shape), which are cheap, plans shards and offsets, and writes the headers; the caller then
// streams each tensor's data (WriteTensor, WriteFloat32), so memory is bounded by the
// largest tensor the caller holds, not by the model. A quantizer can thus produce one layer
// at a time. Writer checks that each tensor receives exactly its byte length, and Close
// publishes the files atomically: temporary names in the destination folder, fsync, rename,
// the index last; on any error the temporaries are removed.
//
// Output is deterministic: the same declarations and data give the same bytes, whatever the
// order of the writes. Header keys are sorted (metadata first, then tensors by name) and
// padded with spaces so the data section starts 8-byte aligned, as the reference writer
// does; within a file, data is ordered by element size (largest first) then declaration
// order, so every tensor is aligned to its element size.
//
// WriteFile is the convenience for a small set of in-memory tensors in one file.
package safetensors
