package calib

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/model"
)

// Pass walks a model one decoder layer at a time over the calibration windows. It holds the
// residual stream h [N·L, hidden] of every window between layers; the caller loads a layer
// (Layer), gathers its input statistics (Collect), transforms or quantizes it, and runs it to
// move the stream on (Advance). Nothing else of the model is resident: the embedding is
// read once by NewPass and dropped.
//
// A Pass is not safe for concurrent use.
type Pass struct {
	hm      *hf.Model
	cfg     hf.Config
	windows [][]int
	seqLen  int
	chunk   int // windows per chunk
	// stream is the residual stream, chunk by chunk (chunk windows each): in float32, or in
	// fp16 (Options.StreamBits) except for a chunk whose range fp16 cannot hold.
	stream []streamChunk
	bits   int       // 16 or 32
	buf    []float32 // one chunk in float32, for runs that must not change the stream or decode it
	mctx   model.Context
	col    Collector
	mem    MemStats
	live   bool
	// OnChunk, when set, is called as a run (Collect, Advance, CollectAdvance) starts, with
	// 0, and after each chunk of windows, with the chunks done and their total.
	OnChunk func(done, total int)
}

// MemStats reports the memory a Pass used.
type MemStats struct {
	// PeakHeapInuse is the largest runtime.MemStats.HeapInuse sampled after each chunk of
	// every run (Collect, Advance), when the layer's weights and scratch buffers are live.
	// It covers everything in the process's heap, callers' data included, and garbage not
	// yet collected unless Options.LiveHeap is set.
	PeakHeapInuse uint64
	// ActivationBytes is the size of the residual stream the Pass holds.
	ActivationBytes int64
	// PeakLayerBytes is the largest float32 size of one decoder layer's weights given to the
	// Pass.
	PeakLayerBytes int64
}

// NewPass embeds the windows (equal lengths, ids within the vocabulary) of model hm and
// returns a Pass positioned before layer 0. Of opt it uses ChunkRows, which bounds the rows
// run through a layer at once (0 means DefaultChunkRows; at least one window always runs),
// and LiveHeap.
func NewPass(hm *hf.Model, windows [][]int, opt Options) (*Pass, error) {
	chunkRows := opt.ChunkRows
	cfg := hm.Config
	if err := model.CheckConfig(&cfg); err != nil {
		return nil, err
	}
	if len(windows) == 0 || len(windows[0]) == 0 {
		return nil, errors.New("calib: no calibration windows")
	}
	if chunkRows < 0 {
		return nil, fmt.Errorf("calib: ChunkRows %d must not be negative", chunkRows)
	}
	if chunkRows == 0 {
		chunkRows = DefaultChunkRows
	}
	L := len(windows[0])
	if max := cfg.MaxPositionEmbeddings; max > 0 && L > max {
		return nil, fmt.Errorf("calib: windows of %d tokens exceed the model's max_position_embeddings %d", L, max)
	}
	hid := cfg.HiddenSize
	for w, win := range windows {
		if len(win) != L {
			return nil, fmt.Errorf("calib: window %d has %d tokens, window 0 has %d", w, len(win), L)
		}
		for i, t := range win {
			if t < 0 || t >= cfg.VocabSize {
				return nil, fmt.Errorf("calib: window %d position %d: token %d outside the vocabulary [0, %d)", w, i, t, cfg.VocabSize)
			}
		}
	}
	if hm.Tensors == nil {
		return nil, errors.New("calib: hf.Model has no tensors (closed?)")
	}
	emb, err := hm.Tensors.Float32(hm.Embed.Name)
	if err != nil {
		return nil, fmt.Errorf("calib: embedding: %w", err)
	}
	if len(emb) != cfg.VocabSize*hid {
		return nil, fmt.Errorf("calib: embedding has %d values, want %d×%d", len(emb), cfg.VocabSize, hid)
	}
	bits, err := streamBits(opt.StreamBits, int64(len(windows))*int64(L)*int64(hid))
	if err != nil {
		return nil, err
	}
	p := &Pass{
		hm: hm, cfg: cfg, windows: windows, seqLen: L,
		chunk: max(1, chunkRows/L),
		bits:  bits,
		live:  opt.LiveHeap,
	}
	for w0 := 0; w0 < len(windows); w0 += p.chunk {
		nw := min(p.chunk, len(windows)-w0)
		h := p.chunkBuf(nw)
		for w, win := range windows[w0 : w0+nw] {
			for i, t := range win {
				r := w*L + i
				copy(h[r*hid:(r+1)*hid], emb[t*hid:(t+1)*hid])
			}
		}
		var c streamChunk
		c.store(h, bits)
		p.stream = append(p.stream, c)
	}
	p.buf = nil
	p.mem.ActivationBytes = p.streamBytes()
	p.sample()
	return p, nil
}

// AutoStream16Bytes is the float32 size of the residual stream above which StreamBits 0
// stores it in 16 bits: beyond what a small model's calibration needs (tiny-llama's default
// 128×512 windows are 64 MiB), so small models keep their exact float32 stream, and below
// a 7B model's (1 GiB for 128×512 tokens of 4096 channels).
const AutoStream16Bytes = 256 << 20

// streamBits resolves Options.StreamBits for a stream of n float32 values.
func streamBits(bits int, n int64) (int, error) {
	switch bits {
	case 0:
		if 4*n > AutoStream16Bytes {
			return 16, nil
		}
		return 32, nil
	case 16, 32:
		return bits, nil
	}
	return 0, fmt.Errorf("calib: StreamBits %d is not 0, 16 or 32", bits)
}

// fp16Limit bounds the values a chunk may hold to be stored in fp16: 65504 is fp16's
// largest finite value, and anything from 65520 up would round to +Inf.
const fp16Limit = 65504

// streamChunk is one chunk of the residual stream: f32, or f16 (binary16, little-endian).
type streamChunk struct {
	f32 []float32
	f16 []byte
}

// store keeps h as the chunk's new contents: in fp16 when bits is 16 and every |x| is
// within fp16's range, else in float32. fp16 rounds each value to 11 significant bits
// (relative error ≤ 2⁻¹², about 2.4e-4; below 6.1e-5, in the subnormals, an absolute 3e-8,
// nothing next to a row's RMS, which the next RMSNorm divides by), far below the W4A8 error the stream carries from
// one quantized layer to the next (about 1e-2 relative); bfloat16, the other 16-bit
// format, keeps 8 bits (2e-3), too coarse for the statistics. The residual stream's
// magnitudes (RMSNorm is applied after it, so its scale is free) stay well inside fp16's
// range in the LLaMA family, massive activations included (a few thousand); a chunk that
// does not is kept in float32, which costs memory but not accuracy. h is copied.
func (c *streamChunk) store(h []float32, bits int) {
	if bits == 16 && maxAbs32(h) < fp16Limit {
		if len(c.f16) != 2*len(h) {
			c.f16 = make([]byte, 2*len(h))
		}
		c.f32 = nil
		safetensors.Float32ToF16(c.f16, h)
		return
	}
	c.f16 = nil
	if len(c.f32) != len(h) {
		c.f32 = make([]float32, len(h))
	}
	if &c.f32[0] != &h[0] {
		copy(c.f32, h)
	}
}

// load writes the chunk into h (float32, len(h) values).
func (c *streamChunk) load(h []float32) {
	if c.f16 != nil {
		safetensors.F16ToF32(h, c.f16)
		return
	}
	copy(h, c.f32)
}

func (p *Pass) streamBytes() int64 {
	var n int64
	for _, c := range p.stream {
		n += int64(len(c.f16)) + 4*int64(len(c.f32))
	}
	return n
}

// chunkBuf returns p.buf sized for nw windows.
func (p *Pass) chunkBuf(nw int) []float32 {
	n := nw * p.seqLen * p.cfg.HiddenSize
	if cap(p.buf) < n {
		p.buf = make([]float32, p.chunk*p.seqLen*p.cfg.HiddenSize)
	}
	p.buf = p.buf[:n]
	return p.buf
}

// Config returns the model's configuration.
func (p *Pass) Config() *hf.Config { return &p.cfg }

// Windows returns the calibration windows.
func (p *Pass) Windows() [][]int { return p.windows }

// SeqLen returns the window length L.
func (p *Pass) SeqLen() int { return p.seqLen }

// Rows returns N·L, the number of activation rows of every linear input.
func (p *Pass) Rows() int { return len(p.windows) * p.seqLen }

// Hidden returns the residual stream [N·L, hidden] after the layers run so far, in float32
// (a copy; with a 16-bit stream, the values as stored).
func (p *Pass) Hidden() []float32 {
	hid := p.cfg.HiddenSize
	h := make([]float32, len(p.windows)*p.seqLen*hid)
	for i := range p.stream {
		w0 := i * p.chunk
		nw := min(p.chunk, len(p.windows)-w0)
		p.stream[i].load(h[w0*p.seqLen*hid : (w0+nw)*p.seqLen*hid])
	}
	return h
}

// StreamBits returns the storage of the residual stream between layers: 16 (fp16, with
// float32 for a chunk beyond fp16's range) or 32.
func (p *Pass) StreamBits() int { return p.bits }

// Mem returns the memory use so far.
func (p *Pass) Mem() MemStats { return p.mem }

// Layer loads decoder layer i in float32 from the checkpoint.
func (p *Pass) Layer(i int) (*model.Layer, error) {
	l, err := model.LoadLayer(p.hm, i)
	if err != nil {
		return nil, err
	}
	l.Config = &p.cfg
	return l, nil
}

// ReleaseScratch drops the memory a run keeps for the next (the layer's activation buffers,
// about 750 MB for a LLaMA-7B layer on 4096 rows, and one chunk of the stream in float32):
// between collecting a layer's statistics and propagating, the quantizer needs it more
// (GPTQ's factor of an 11008-wide Hessian is 485 MB). The next run allocates it again.
func (p *Pass) ReleaseScratch() {
	p.mctx.Release()
	p.buf = nil
}

// LayerBytes returns the float32 size of l's dense weights and norms; quantized linears
// count as their float32 equivalent.
func LayerBytes(l *model.Layer) int64 {
	n := int64(len(l.AttnNorm) + len(l.MLPNorm))
	for _, k := range model.LayerKinds {
		lin := l.Linear(k)
		n += int64(lin.In()*lin.Out()) + int64(lin.Out())
	}
	return 4 * n
}

// Collect runs l on the stream without changing it and returns the statistics of its four
// inputs. hessian selects the inputs whose Hessian is accumulated (nil: none).
func (p *Pass) Collect(ctx context.Context, l *model.Layer, hessian func(kind model.LinearKind) bool) (*LayerStats, error) {
	return p.run(ctx, l, hessian, true, false)
}

// Advance runs l on the stream in place, making its output the next layer's input.
func (p *Pass) Advance(ctx context.Context, l *model.Layer) error {
	_, err := p.run(ctx, l, nil, false, true)
	return err
}

// CollectAdvance is Collect and Advance in one run, for when the layer that carries the
// stream on is the one observed (float propagation).
func (p *Pass) CollectAdvance(ctx context.Context, l *model.Layer, hessian func(kind model.LinearKind) bool) (*LayerStats, error) {
	return p.run(ctx, l, hessian, true, true)
}

func (p *Pass) run(ctx context.Context, l *model.Layer, hessian func(model.LinearKind) bool, collect, advance bool) (*LayerStats, error) {
	if l.Config == nil {
		l.Config = &p.cfg
	}
	if l.Config.HiddenSize != p.cfg.HiddenSize {
		panic("calib: layer of another model")
	}
	p.mem.PeakLayerBytes = max(p.mem.PeakLayerBytes, LayerBytes(l))
	idx := l.Index
	p.col.layers = nil
	p.col.Hessian = nil
	if hessian != nil {
		p.col.Hessian = func(_ int, k model.LinearKind) bool { return hessian(k) }
	}
	p.mctx.Observe = nil
	if collect {
		p.mctx.Observe = func(layer int, kind model.LinearKind, x []float32, rows, in int) {
			if layer == idx {
				p.col.Observe(layer, kind, x, rows, in)
			}
		}
	}
	p.mctx.ObserveOutput = nil
	if collect && hessian != nil {
		p.mctx.ObserveOutput = func(layer int, kind model.LinearKind, y []float32, rows, out int) {
			if layer == idx {
				var bias []float32
				if d, ok := l.Linear(kind).(*model.Dense); ok {
					bias = d.B
				}
				p.col.ObserveOutput(layer, kind, y, rows, out, bias)
			}
		}
	}
	defer func() { p.mctx.Observe, p.mctx.ObserveOutput = nil, nil; p.col.ReleaseScratch() }()
	L := p.seqLen
	n := len(p.windows)
	chunks := (n + p.chunk - 1) / p.chunk
	if p.OnChunk != nil {
		p.OnChunk(0, chunks)
	}
	for w0 := 0; w0 < n; w0 += p.chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		nw := min(p.chunk, n-w0)
		c := &p.stream[w0/p.chunk]
		var h []float32
		if advance && c.f32 != nil {
			h = c.f32 // in place
		} else {
			h = p.chunkBuf(nw)
			c.load(h)
		}
		l.Forward(h, nw, L, &p.mctx)
		if !finite32(h) {
			// Before any statistic is used and before the stream carries it on.
			return nil, &NonFiniteError{Layer: idx, What: "the layer's output"}
		}
		if advance {
			c.store(h, p.bits)
		}
		p.sample()
		if p.OnChunk != nil {
			p.OnChunk(w0/p.chunk+1, chunks)
		}
	}
	if advance {
		p.mem.ActivationBytes = max(p.mem.ActivationBytes, p.streamBytes())
	}
	if !collect {
		return nil, nil
	}
	ls := p.col.Take(idx)
	if ls == nil || len(ls.Inputs) != len(inputKinds) {
		return nil, fmt.Errorf("calib: layer %d reported %d of its %d inputs to the observer", idx, lenInputs(ls), len(inputKinds))
	}
	for _, k := range inputKinds {
		if err := CheckStats(ls.Inputs[k], idx, "the "+k.String()+" input"); err != nil {
			return nil, err
		}
	}
	return ls, nil
}

func lenInputs(ls *LayerStats) int {
	if ls == nil {
		return 0
	}
	return len(ls.Inputs)
}

// sample records the heap in use. It runs after each chunk, while the layer's weights and
// every scratch buffer of the run are still referenced; with LiveHeap it collects garbage
// first, so that what it records is what the pass really holds.
func (p *Pass) sample() {
	if p.live {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.mem.PeakHeapInuse = max(p.mem.PeakHeapInuse, ms.HeapInuse)
}

// CollectAll runs every layer of hm in float32 over the windows, layer by layer, and returns
// the statistics of every layer's inputs, with Hessians where hessian says (nil: none). It
// is the calibration pass for methods that need statistics only (a report, a study of
// outliers). progress, when non-nil, is called after each layer.
// Of opt it uses ChunkRows and LiveHeap.
func CollectAll(ctx context.Context, hm *hf.Model, windows [][]int, opt Options,
	hessian func(layer int, kind model.LinearKind) bool, progress func(layer int, mem MemStats)) ([]*LayerStats, MemStats, error) {
	p, err := NewPass(hm, windows, opt)
	if err != nil {
		return nil, MemStats{}, err
	}
	out := make([]*LayerStats, p.cfg.NumLayers)
	for i := range out {
		l, err := p.Layer(i)
		if err != nil {
			return nil, p.mem, err
		}
		var hk func(model.LinearKind) bool
		if hessian != nil {
			hk = func(k model.LinearKind) bool { return hessian(i, k) }
		}
		if out[i], err = p.CollectAdvance(ctx, l, hk); err != nil {
			return nil, p.mem, err
		}
		if progress != nil {
			progress(i, p.mem)
		}
	}
	return out, p.mem, nil
}
