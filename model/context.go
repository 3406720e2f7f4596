package model

import (
	"runtime"

	"github.com/odyssey-llm/odyssey/formats/hf"
)

// Context carries what persists across the forward calls of one caller: the observer and
// scratch memory reused from call to call. The zero value is ready to use. A Context must not
// be used by two forward passes at once.
type Context struct {
	// Observe, when non-nil, is called with the input of the linear layers before they run:
	// once per distinct input, so once with kind Q for the input that Q, K and V share, once
	// with Gate for the input of Gate and Up, and once each for O, Down and (from
	// Model.Logits) LMHead, whose layer is len(Model.Layers). LinearKind.SharedInput lists
	// the linears an input feeds. x is [rows×in], row-major, rows = windows·seqLen in window
	// order; it is scratch memory, valid only during the call, and must not be modified.
	Observe func(layer int, kind LinearKind, x []float32, rows, in int)
	// ObserveOutput, when non-nil, is called by Layer.Forward with the output y [rows×out] of
	// each decoder-layer linear (bias included) right after it runs, before anything else
	// (RoPE, SwiGLU, the residual add) touches it. Same validity rules as Observe. GPTQ's
	// relative output error needs ‖X·Wᵀ‖², which the forward pass computes anyway.
	ObserveOutput func(layer int, kind LinearKind, y []float32, rows, out int)

	bufs  [numBufs][]float32
	work  [][]float32
	table ropeTable
}

const (
	bufNorm = iota
	bufQ
	bufK
	bufV
	bufAttn
	bufOut
	bufGate
	bufUp
	bufLogits
	numBufs
)

func (c *Context) observe(layer int, kind LinearKind, x []float32, rows, in int) {
	if c.Observe != nil {
		c.Observe(layer, kind, x[:rows*in], rows, in)
	}
}

func (c *Context) observeOutput(layer int, kind LinearKind, y []float32, rows, out int) {
	if c.ObserveOutput != nil {
		c.ObserveOutput(layer, kind, y[:rows*out], rows, out)
	}
}

// Release drops the scratch buffers (the rope table stays): between forward passes that are
// far apart, the memory they hold (for a LLaMA-7B layer on 4096 rows, about 750 MB) is
// better used by other work. The next pass allocates them again.
func (c *Context) Release() {
	c.bufs = [numBufs][]float32{}
	c.work = nil
}

// buf returns scratch buffer i resized to n elements; its contents are undefined.
func (c *Context) buf(i, n int) []float32 {
	if cap(c.bufs[i]) < n {
		c.bufs[i] = make([]float32, n)
	}
	return c.bufs[i][:n]
}

// scratch returns one buffer of n elements per worker goroutine of parallelTasks.
func (c *Context) scratch(n int) [][]float32 {
	w := runtime.GOMAXPROCS(0)
	if len(c.work) < w {
		c.work = append(c.work, make([][]float32, w-len(c.work))...)
	}
	for i := range w {
		if cap(c.work[i]) < n {
			c.work[i] = make([]float32, n)
		}
		c.work[i] = c.work[i][:n]
	}
	return c.work[:w]
}

// rope returns the cos/sin table for cfg's rotary embedding over seqLen positions.
func (c *Context) rope(cfg *hf.Config, seqLen int) *ropeTable {
	inv, err := ropeInvFreq(cfg.Rope, cfg.HeadDim)
	if err != nil {
		panic("model: " + err.Error() + " (the configuration was not checked by CheckConfig)")
	}
	c.table.ensure(inv, seqLen)
	return &c.table
}
