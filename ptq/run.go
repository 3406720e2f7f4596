package ptq

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"

	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/gemm"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/quant"
)

func numCPU() int { return runtime.GOMAXPROCS(0) }

// Run quantizes the model hm per opt and returns the quantized layers with the report of
// every decision. It draws the calibration windows (calib.LoadWindows: from the text file
// opt.Calib.Source with tokenizer tok, or sampled from the model) and then runs RunWindows.
// progress, when non-nil, is called as windows are sampled and after each layer.
func Run(ctx context.Context, hm *hf.Model, tok *tokenizer.Tokenizer, opt Options, progress func(ProgressEvent)) (*Result, error) {
	opt, err := opt.resolved()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if !opt.NeedsCalibration() {
		res, err := RunWindows(ctx, hm, nil, opt, progress)
		if err != nil {
			return nil, err
		}
		res.Total = time.Since(start)
		return res, nil
	}
	windows, err := calib.LoadWindows(ctx, hm, tok, opt.Calib, func(done, total int) {
		if progress != nil {
			progress(ProgressEvent{Stage: "windows", Done: done, Total: total, Elapsed: time.Since(start)})
		}
	})
	if err != nil {
		return nil, err
	}
	wt := time.Since(start)
	res, err := RunWindows(ctx, hm, windows, opt, progress)
	if err != nil {
		return nil, err
	}
	res.WindowsTime = wt
	res.Total = time.Since(start)
	return res, nil
}

// RunWindows is Run on calibration windows drawn by the caller (each starting with BOS, all
// of one length); opt.Calib's window fields are ignored, the rest of it applies.
//
// Layer by layer, with only the current layer's weights resident (calib.Pass):
//
//  1. run the float layer on its calibration inputs and gather the statistics of its four
//     inputs (with Hessians for GPTQ);
//  2. for each input, compute the equalization scales of its pair, decide the activation
//     policy from the input's range (quant.Decide), fold LAE where the policy says (and
//     SmoothQuant wherever listed) and transform the statistics to the folded input;
//  3. quantize the seven weights (RTN or GPTQ on the transformed Hessian), build integer
//     scales, and set each static input's scale from its calibrated maximum;
//  4. run the quantized layer (or, with Propagate "float", the float one) on the inputs to
//     produce the next layer's.
//
// When the options need no calibration (NeedsCalibration), windows may be nil: each layer is
// then loaded and its weights quantized, with no forward pass at all.
func RunWindows(ctx context.Context, hm *hf.Model, windows [][]int, opt Options, progress func(ProgressEvent)) (*Result, error) {
	opt, err := opt.resolved()
	if err != nil {
		return nil, err
	}
	if windows == nil {
		if opt.NeedsCalibration() {
			return nil, fmt.Errorf("ptq: the options need calibration (%s) but no windows were given", opt.calibrationReason())
		}
		return runWeightsOnly(ctx, hm, opt, progress)
	}
	start := time.Now()
	newPass := opt.NewPass
	if newPass == nil {
		newPass = newCPUPass
	}
	pass, err := newPass(hm, windows, opt.Calib)
	if err != nil {
		return nil, err
	}
	defer pass.Close()
	cfg := *pass.Config()
	res := &Result{Options: opt, Config: cfg, Windows: len(windows), SeqLen: pass.SeqLen()}
	for _, s := range opt.Skip {
		if _, _, err := parseSkip(s, cfg.NumLayers); err != nil {
			return nil, err
		}
	}
	gptq := opt.Weights.Method == MethodGPTQ
	needH := gptq || opt.OutputError
	floatProp := opt.Calib.Propagate == calib.PropagateFloat
	for i := range cfg.NumLayers {
		if opt.Resume != nil {
			lr, err := opt.Resume(i)
			if err != nil {
				return nil, fmt.Errorf("ptq: resuming layer %d: %w", i, err)
			}
			if lr != nil {
				if err := resumeLayer(ctx, pass, lr, floatProp, &cfg); err != nil {
					return nil, err
				}
				res.Layers = append(res.Layers, lr)
				res.Mem = pass.Mem()
				if progress != nil {
					progress(ProgressEvent{Stage: "layer", Done: i + 1, Total: cfg.NumLayers, Layer: lr, Elapsed: time.Since(start), Mem: res.Mem})
				}
				continue
			}
		}
		l, err := pass.Layer(i)
		if err != nil {
			return nil, err
		}
		// The layer is in float32 now: its pages of the mapped checkpoint (404 MB for a
		// LLaMA-7B layer in fp16) need not stay resident while it is calibrated.
		hm.Tensors.ReleasePages()
		stage := func(name string, done, total int) {
			if progress != nil {
				progress(ProgressEvent{Stage: name, Done: done, Total: total, Index: i, Layers: cfg.NumLayers, Elapsed: time.Since(start), Mem: pass.Mem()})
			}
		}
		pass.SetOnChunk(func(done, total int) { stage(StageCollect, done, total) })
		t0 := time.Now()
		hess := func(k model.LinearKind) bool {
			if !needH {
				return false
			}
			for _, c := range consumers(k) {
				if !opt.skipped(i, c) {
					return true
				}
			}
			return false
		}
		var st *calib.LayerStats
		if floatProp {
			// The folded float layer computes the unfolded one's function, so the
			// statistics pass can also carry the stream on.
			st, err = pass.CollectAdvance(ctx, l, hess)
		} else {
			st, err = pass.Collect(ctx, l, hess)
		}
		if err != nil {
			return nil, err
		}
		pass.ReleaseScratch() // the quantizer's turn; the next run allocates it again
		// Collect now, so that the quantizer's allocations reuse that memory rather than
		// grow the heap past it: the heap is a few large pointer-free slices, so a
		// collection costs milliseconds, and garbage not yet collected was half a GiB of a
		// 7B layer's peak RSS.
		runtime.GC()
		t1 := time.Now()
		lr, err := quantizeLayer(l, st, &opt, &cfg, func(done, total int) { stage(StageQuantize, done, total) })
		if err != nil {
			return nil, fmt.Errorf("ptq: layer %d: %w", i, err)
		}
		st = nil
		t2 := time.Now()
		pass.SetOnChunk(func(done, total int) { stage(StagePropagate, done, total) })
		if !floatProp {
			if err := advanceQuantized(ctx, pass, lr, &cfg); err != nil {
				return nil, err
			}
		}
		pass.SetOnChunk(nil)
		lr.CollectTime, lr.QuantizeTime, lr.PropagateTime = t1.Sub(t0), t2.Sub(t1), time.Since(t2)
		res.Layers = append(res.Layers, lr)
		res.Mem = pass.Mem()
		if progress != nil {
			progress(ProgressEvent{Stage: "layer", Done: i + 1, Total: cfg.NumLayers, Layer: lr, Elapsed: time.Since(start), Mem: res.Mem})
		}
	}
	res.Total = time.Since(start)
	return res, nil
}

// NeedsCalibration reports whether the options use anything that calibration measures:
// equalization (LAE or SmoothQuant needs every channel's range), an activation rule other
// than always-per-token (static scales and FPTQ's choice need ranges), GPTQ or the output
// error report (Hessians), or activation-aware clipping (channel energies). Without any of
// them, as in the w4a8-rtn baseline, a layer's quantization depends on its weights alone,
// so RunWindows needs no windows and runs no forward pass: drawing and running calibration
// windows would cost time and, for data-free windows, the whole model in memory, for
// statistics nothing reads. Invalid options report true (resolution fails later anyway).
func (o Options) NeedsCalibration() bool {
	r, err := o.resolved()
	if err != nil {
		return true
	}
	return r.calibrationReason() != ""
}

// calibrationReason names what needs calibration in resolved options, or "" for nothing.
func (o Options) calibrationReason() string {
	switch {
	case o.Equalization.Method != EqualizeNone:
		return "equalization " + o.Equalization.Method
	case o.Activations.Bits != 16 && o.Activations.Rule.Kind != quant.AlwaysPerToken:
		return "activation rule " + o.Activations.Rule.Kind.String()
	case o.Weights.Method == MethodGPTQ:
		return "GPTQ"
	case o.Weights.Bits == 4 && o.Weights.ActAwareClip:
		return "activation-aware clipping"
	case o.OutputError:
		return "the output-error report"
	}
	return ""
}

// runWeightsOnly is RunWindows for options that need no calibration: layer by layer, load,
// quantize, report. Memory is one layer's float weights and its quantized form.
func runWeightsOnly(ctx context.Context, hm *hf.Model, opt Options, progress func(ProgressEvent)) (*Result, error) {
	start := time.Now()
	cfg := hm.Config
	if err := model.CheckConfig(&cfg); err != nil {
		return nil, err
	}
	for _, s := range opt.Skip {
		if _, _, err := parseSkip(s, cfg.NumLayers); err != nil {
			return nil, err
		}
	}
	res := &Result{Options: opt, Config: cfg}
	var mem calib.MemStats
	for _, k := range model.LayerKinds {
		if h := hfLinear(&hm.Layers[0], k); h.Out > 0 {
			mem.PeakLayerBytes += 4 * int64(h.Out) * int64(h.In)
		}
	}
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mem.PeakHeapInuse = max(mem.PeakHeapInuse, ms.HeapInuse)
	}
	for i := range cfg.NumLayers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var lr *LayerResult
		if opt.Resume != nil {
			var err error
			if lr, err = opt.Resume(i); err != nil {
				return nil, fmt.Errorf("ptq: resuming layer %d: %w", i, err)
			}
		}
		if lr == nil {
			stage := func(done int) {
				if progress != nil {
					progress(ProgressEvent{Stage: StageQuantize, Done: done, Total: 1, Index: i, Layers: cfg.NumLayers, Elapsed: time.Since(start), Mem: mem})
				}
			}
			stage(0)
			t0 := time.Now()
			var err error
			if lr, err = quantizeLayerFromCheckpoint(hm, i, &opt, &cfg); err != nil {
				return nil, fmt.Errorf("ptq: layer %d: %w", i, err)
			}
			lr.QuantizeTime = time.Since(t0)
			sample()
			stage(1)
		}
		res.Layers = append(res.Layers, lr)
		res.Mem = mem
		if progress != nil {
			progress(ProgressEvent{Stage: "layer", Done: i + 1, Total: cfg.NumLayers, Layer: lr, Elapsed: time.Since(start), Mem: res.Mem})
		}
	}
	res.Total = time.Since(start)
	return res, nil
}

// uncalibratedInput fills ir for a run without calibration (NeedsCalibration is false):
// activations stay 16-bit, or are quantized per token as the rule alone decides; nothing
// is folded. It returns the input's quantization when it is quantized.
func uncalibratedInput(ir *InputResult, opt *Options, anyQuantized bool) (quant.ActQuant, bool) {
	ir.ActBits = opt.Activations.Bits
	if opt.Activations.Bits == 16 {
		return quant.ActQuant{}, false
	}
	if !anyQuantized {
		ir.ActBits = 32
	}
	policy, dec := quant.Decide(opt.Activations.Rule, 0, 0)
	ir.Decision, ir.Act = dec, quant.ActQuant{Policy: policy}
	return ir.Act, true
}

// resumeLayer carries the calibration stream past layer lr.Layer, whose result is known:
// through the quantized layer, or with float propagation through the float one.
func resumeLayer(ctx context.Context, pass Pass, lr *LayerResult, floatProp bool, cfg *hf.Config) error {
	if !floatProp {
		return advanceQuantized(ctx, pass, lr, cfg)
	}
	l, err := pass.Layer(lr.Layer)
	if err != nil {
		return err
	}
	return pass.Advance(ctx, l)
}

// quantizeLayer decides, folds and quantizes one float layer l (modified in place) given
// the statistics of its inputs. It consumes l: the float weights of the linears it quantizes
// are dropped (set to nil) as it goes, and the Hessians of st are taken.
//
// progress, when non-nil, is called with 0 of the seven linears before the first and after
// each one.
func quantizeLayer(l *model.Layer, st *calib.LayerStats, opt *Options, cfg *hf.Config, progress func(done, total int)) (*LayerResult, error) {
	if progress == nil {
		progress = func(int, int) {}
	}
	lr := &LayerResult{Layer: l.Index}
	eq := &opt.Equalization
	acts := map[model.LinearKind]quant.ActQuant{}
	hessians := map[model.LinearKind]*calib.Stats{}
	for _, kind := range calib.InputKinds() {
		ir := &InputResult{Kind: kind, Pair: pairOf(kind)}
		lr.Inputs = append(lr.Inputs, ir)
		anyQuantized := false
		for _, c := range consumers(kind) {
			anyQuantized = anyQuantized || !opt.skipped(l.Index, c)
		}
		if st == nil {
			if act, ok := uncalibratedInput(ir, opt, anyQuantized); ok {
				acts[kind] = act
			}
			continue
		}
		s := st.For(kind)
		ir.Before = summarize(s)
		hessians[kind] = s
		eligible := slices.Contains(eq.Pairs, ir.Pair)
		if eq.Method == EqualizeSmoothQuant && eligible {
			prod, cons := smoothScales(s, l, kind, eq.Alpha, cfg)
			foldPair(l, kind, prod, cons)
			s.Scale(cons)
			ir.Equalized, ir.ProducerScale, ir.ConsumerScale = EqualizeSmoothQuant, prod, cons
		}
		if opt.Activations.Bits == 16 {
			ir.ActBits = 16
			ir.After = summarize(s)
			continue
		}
		// The policy is decided (and LAE folded) even when every consumer is skipped: the
		// fold is harmless to float consumers and the report shows what would be done.
		ir.ActBits = 8
		if !anyQuantized {
			ir.ActBits = 32
		}
		before := statRange(s, eq.Statistic, nil)
		after := before
		var prod, cons []float32
		lae := eq.Method == EqualizeLAE && eligible
		if lae {
			var err error
			if prod, cons, err = laeScales(s, kind, eq.Statistic, cfg); err != nil {
				return nil, fmt.Errorf("%v input: %w", kind, err)
			}
			after = statRange(s, eq.Statistic, cons)
		}
		if !(before <= math.MaxFloat32 && after <= math.MaxFloat32) { // NaN fails both
			return nil, &calib.NonFiniteError{Layer: l.Index, What: fmt.Sprintf("the range of the %v input", kind)}
		}
		policy, dec := quant.Decide(opt.Activations.Rule, before, after)
		if policy == quant.LAEStaticPerTensor && !lae {
			policy = quant.DynamicPerToken
			dec.Policy = policy
			dec.Reason += fmt.Sprintf("; LAE is not enabled for pair %s, so dynamic per-token instead", ir.Pair)
		}
		fold := lae && policy == quant.LAEStaticPerTensor
		switch {
		case lae && policy == quant.DynamicPerToken && eq.Scope != ScopePolicy:
			fold = true
			dec.Reason += fmt.Sprintf("; LAE folded before the per-token quantization (scope %s)", eq.Scope)
		case lae && policy == quant.StaticPerTensor && eq.Scope == ScopeAll:
			fold = true
			policy = quant.LAEStaticPerTensor
			dec.Policy = policy
			dec.Reason += "; LAE folded anyway (scope all)"
		}
		ir.Decision = dec
		if fold {
			foldPair(l, kind, prod, cons)
			s.Scale(cons)
			ir.Equalized, ir.ProducerScale, ir.ConsumerScale = EqualizeLAE, prod, cons
		}
		ir.Act = quant.ActQuant{Policy: policy}
		if policy != quant.DynamicPerToken {
			ir.Act.Scale = quant.ActScale(s.TensorAbsMax)
		}
		ir.After = summarize(s)
		acts[kind] = ir.Act
	}
	lr.AttnNorm, lr.MLPNorm = l.AttnNorm, l.MLPNorm

	// Hessians are prepared once per input and shared by the linears that read it.
	var prepared map[model.LinearKind]*preparedHessian
	hess32 := map[model.LinearKind][]float32{}
	if opt.Weights.Method == MethodGPTQ {
		prepared = map[model.LinearKind]*preparedHessian{}
	}
	progress(0, len(model.LayerKinds))
	for ki, kind := range model.LayerKinds {
		d := dense(l, kind)
		in := kind.SharedInput()[0]
		lin := &LinearResult{Kind: kind, Name: linearName(l.Index, kind), Out: d.Out(), In: d.In(), Bias: d.B}
		lr.Linears = append(lr.Linears, lin)
		if opt.skipped(l.Index, kind) {
			lin.Skipped, lin.Float, lin.Bits, lin.ActBits = true, d.W, 32, 32
			progress(ki+1, len(model.LayerKinds))
			continue
		}
		t0 := time.Now()
		lin.ActBits = opt.Activations.Bits
		lin.Act = acts[in]
		var ph *preparedHessian
		if prepared != nil {
			if ph = prepared[in]; ph == nil {
				var err error
				if ph, err = prepareHessian(hessians[in], opt.Weights.GPTQ); err != nil {
					return nil, fmt.Errorf("%s: %w", lin.Name, err)
				}
				prepared[in] = ph
				// The float64 Hessian (970 MB for down_proj's input) is garbage now; free
				// it before GPTQ allocates its working copies (see the GC after collection).
				runtime.GC()
			}
		}
		var h []float32
		if hessians[in] != nil && hessians[in].HasHessian() {
			h = hess32[in]
			if h == nil {
				h = toF32(hessians[in].Hessian())
				hess32[in] = h
			}
		}
		var outSq *calib.OutputStats
		if ph != nil {
			if outSq = st.Outputs[kind]; outSq == nil {
				return nil, fmt.Errorf("%s: the calibration pass recorded no output statistics", lin.Name)
			}
		}
		if err := quantizeWeight(lin, d.W, hessians[in], ph, h, outSq, opt); err != nil {
			return nil, fmt.Errorf("%s: %w", lin.Name, err)
		}
		// Quantized: its float weights (180 MB for a LLaMA-7B MLP projection) are read no
		// more, and letting them go before the next linear keeps the peak at one layer's
		// float weights rather than one layer's plus the widest Hessian's factors.
		d.W = nil
		if sh := kind.SharedInput(); kind == sh[len(sh)-1] {
			// The input's last reader is done: its factor (In² float32s) can go.
			delete(prepared, in)
		}
		lin.Time = time.Since(t0)
		progress(ki+1, len(model.LayerKinds))
	}
	return lr, nil
}

// quantizeWeight fills lin's quantized weight from the float weight w.
//
// With GPTQ (ph non-nil) the output error is GPTQ's tr(ΔHΔᵀ) (quant.GPTQStats.DeltaHDelta)
// over tr(WHWᵀ) = 2/n·Σ‖x·Wᵀ‖², which outSq summed from the float forward pass: the two
// out×in×in products of outputErr would cost more than GPTQ itself (for LLaMA-2-7B, 4.6
// TFLOP per layer against GPTQ's 2.1). Equalization leaves x·Wᵀ unchanged, so the float
// layer's outputs are the folded layer's too. Otherwise, with h, outputErr computes it.
func quantizeWeight(lin *LinearResult, w []float32, st *calib.Stats, ph *preparedHessian, h []float32, outSq *calib.OutputStats, opt *Options) error {
	out, in := lin.Out, lin.In
	wo := &opt.Weights
	if wo.Bits == 8 {
		q, err := QuantizeInt8(w, out, in)
		if err != nil {
			return err
		}
		lin.Weight8, lin.Bits = q, 8
		lin.WeightError = relErr(q.Dequantize(), w)
		return nil
	}
	lin.Bits = 4
	g, fell := quant.EffectiveGroupSize(in, wo.GroupSize)
	if fell && wo.Fallback == FallbackError {
		return fmt.Errorf("group size %d does not divide the %d input channels (fallback is \"error\")", wo.GroupSize, in)
	}
	lin.GroupSize, lin.GroupFallback = g, fell
	var qw *quant.QuantizedWeight
	var err error
	switch {
	case ph == nil && !wo.ActAwareClip && opt.IntegerScale.Enabled && h == nil:
		// Plain RTN with integer scales: the fused quantizer, whose integer scales come
		// out of the rounding loop while the codes are in cache.
		iw, err := quant.RTNIntScale(w, out, in, g, wo.RTN, opt.IntegerScale.Rule)
		if err != nil {
			return err
		}
		lin.Weight, lin.IntScale = iw.QuantizedWeight, iw
		lin.FloatScaleWeightError, lin.WeightError = quant.WeightErrors(w, iw.QuantizedWeight, iw)
		setAlphaStats(lin)
		return nil
	case ph != nil:
		qw, lin.GPTQ, err = runGPTQ(w, out, in, g, ph, wo.GPTQ)
		if err == nil && outSq.SumSq > 0 {
			lin.OutputError = lin.GPTQ.DeltaHDelta / (2 / float64(outSq.Rows) * outSq.SumSq)
		}
	case wo.ActAwareClip:
		e := make([]float64, in)
		for j, v := range st.SumSq {
			e[j] = v / float64(st.Rows)
		}
		qw, err = rtnActAware(w, out, in, g, e, wo.RTN.ClipGrid)
	default:
		qw, err = quant.RTN(w, out, in, g, wo.RTN)
	}
	if err != nil {
		return err
	}
	lin.Weight = qw
	if h != nil {
		lin.OutputError = outputErr(qw.Dequantize(), w, out, in, h)
	}
	if !opt.IntegerScale.Enabled {
		lin.WeightError, _ = quant.WeightErrors(w, qw, nil)
		return nil
	}
	iw, err := quant.IntegerScales(qw, opt.IntegerScale.Rule)
	if err != nil {
		return err
	}
	lin.IntScale = iw
	lin.FloatScaleWeightError, lin.WeightError = quant.WeightErrors(w, qw, iw)
	setAlphaStats(lin)
	return nil
}

// setAlphaStats records the range and mean of the amplifiers' exponents.
func setAlphaStats(lin *LinearResult) {
	lo, hi, sum := 255, 0, 0
	for _, e := range lin.IntScale.Log2Alpha {
		lo, hi, sum = min(lo, int(e)), max(hi, int(e)), sum+int(e)
	}
	lin.AlphaLog2Min, lin.AlphaLog2Max, lin.AlphaLog2Mean = lo, hi, float64(sum)/float64(len(lin.IntScale.Log2Alpha))
}

func summarize(s *calib.Stats) InputSummary {
	a := slices.Clone(s.AbsMax)
	slices.Sort(a)
	return InputSummary{TensorAbsMax: s.TensorAbsMax, MedianChannelAbsMax: a[len(a)/2], TokenAbsMaxMean: s.TokenAbsMaxMean}
}

func toF32(h []float64) []float32 {
	f := make([]float32, len(h))
	for i, v := range h {
		f[i] = float32(v)
	}
	return f
}

// outputErr returns tr(ΔH Δᵀ)/tr(W H Wᵀ) with Δ = deq − w: the relative squared error of the
// layer's output on the calibration inputs, ‖X·Δᵀ‖²/‖X·Wᵀ‖², which is what GPTQ minimises.
func outputErr(deq, w []float32, out, in int, h []float32) float64 {
	delta := make([]float32, len(w))
	for i := range w {
		delta[i] = deq[i] - w[i]
	}
	dh := make([]float32, len(w))
	gemm.Sgemm(false, false, out, in, in, 1, delta, in, h, in, 0, dh, in)
	wh := make([]float32, len(w))
	gemm.Sgemm(false, false, out, in, in, 1, w, in, h, in, 0, wh, in)
	var num, den float64
	for i := range w {
		num += float64(float64(dh[i]) * float64(delta[i]))
		den += float64(float64(wh[i]) * float64(w[i]))
	}
	if den == 0 {
		return 0
	}
	return num / den
}
