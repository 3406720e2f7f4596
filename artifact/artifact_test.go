package artifact

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/internal/sharedtest"
	"github.com/odyssey-llm/odyssey/internal/tinyfixture"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/ptq"
	"github.com/odyssey-llm/odyssey/quant"
	"github.com/odyssey-llm/odyssey/synth"
	"slices"
)

// quantizeTiny runs ptq on tiny-llama with a few short windows of the sample text and
// checkpoints every layer into a staging folder, as the quantize command does.
func quantizeTiny(t *testing.T, opt ptq.Options) (*hf.Model, *ptq.Result, *Writer) {
	t.Helper()
	hm, windows := tinyfixture.Windows(t, 4, 64, 7)
	fp, err := ModelFingerprint(hm)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Create(filepath.Join(t.TempDir(), "out.partial"), State{Model: fp, RecipeHash: "test", Layers: hm.Config.NumLayers,
		Calibration: Calibration{Source: "sample.txt", Samples: 4, SeqLen: 64, Seed: 7}})
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	res, err := ptq.RunWindows(context.Background(), hm, windows, opt, func(ev ptq.ProgressEvent) {
		if ev.Stage == "layer" && werr == nil {
			werr = w.WriteLayer(ev.Layer)
		}
	})
	if err != nil || werr != nil {
		t.Fatal(err, werr)
	}
	return hm, res, w
}

func sampleStream(t *testing.T, tokPath string, cfg hf.Config) []int {
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := eval.LoadText(sharedtest.Testdata("text/sample.txt"), "text")
	bos, err := eval.BOS(tok, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return eval.Stream(tok, text, bos)
}

// The central property: an artifact evaluated on CPU computes what the fake-quantized model
// computes. Every quantized linear rebuilt from the packed tensors returns the same bits as
// ptq's module; the whole model's perplexity agrees within 1e-4 relative (the folded norms
// are stored in fp16, the only rounding the artifact adds).
func TestArtifactMatchesFakeQuant(t *testing.T) {
	for _, c := range []struct {
		name  string
		opt   func() ptq.Options
		shard int64 // FinishOptions.ShardSize
	}{
		{"fptq-intscale", ptq.DefaultOptions, 0},
		// Shards of 1 MiB: the layer checkpoints (0.5 MiB each) become the shards (in place).
		{"fptq-intscale-in-place", ptq.DefaultOptions, 1 << 20},
		{"fptq-floatscale", func() ptq.Options { o := ptq.DefaultOptions(); o.IntegerScale.Enabled = false; return o }, 0},
		{"w4a16-g64", func() ptq.Options {
			o := ptq.DefaultOptions()
			o.Activations.Bits, o.Equalization.Method, o.IntegerScale.Enabled, o.Weights.GroupSize = 16, ptq.EqualizeNone, false, 64
			return o
		}, 0},
		{"skip-down", func() ptq.Options { o := ptq.DefaultOptions(); o.Skip = []string{"layers.1.down_proj"}; return o }, 1 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			hm, res, w := quantizeTiny(t, c.opt())
			// Layer checkpoints reproduce the results exactly (float32 copies included).
			for i, want := range res.Layers {
				got, err := w.ReadLayer(i, &hm.Config, res.Options.Weights.GroupSize)
				if err != nil {
					t.Fatal(err)
				}
				compareLayers(t, got, want, true)
			}
			prov, err := w.Finish(hm, FinishOptions{SourcePath: "tiny-llama", Tool: Tool{Name: "odyssey", Version: "test"}, ShardSize: c.shard})
			if err != nil {
				t.Fatal(err)
			}
			// In place: a shard per layer after the source tensors' three (the 2 MiB embedding
			// and LM head are over the cap, so each gets one, and the final norm one between).
			if want := map[bool]int{false: 1, true: 3 + len(res.Layers)}[c.shard > 0]; prov.Size.Shards != want {
				t.Errorf("%d shards, want %d", prov.Size.Shards, want)
			}
			ents, _ := os.ReadDir(w.Dir())
			for _, e := range ents {
				if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
					t.Errorf("%s left in the finished artifact", e.Name())
				}
			}
			if prov.Size.CompressionRatio <= 1 {
				t.Errorf("compression ratio %v", prov.Size.CompressionRatio)
			}
			for _, f := range []string{StateFile, LayersDir} {
				if _, err := os.Stat(filepath.Join(w.Dir(), f)); err == nil {
					t.Errorf("%s left in the finished artifact", f)
				}
			}
			a, err := Open(w.Dir())
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			for i, want := range res.Layers {
				got, err := a.Layer(i)
				if err != nil {
					t.Fatal(err)
				}
				compareLayers(t, got, want, false)
			}
			am, err := a.LoadModel()
			if err != nil {
				t.Fatal(err)
			}
			fq, err := res.FakeQuantModel(hm)
			if err != nil {
				t.Fatal(err)
			}
			// Linear by linear, on the same random input: identical bits.
			rng := rand.New(rand.NewPCG(5, 6))
			for i := range am.Layers {
				for _, k := range model.LayerKinds {
					la, lf := am.Layers[i].Linear(k), fq.Layers[i].Linear(k)
					rows := 7
					x := make([]float32, rows*la.In())
					for j := range x {
						x[j] = float32(rng.NormFloat64() * 3)
					}
					ya, yf := make([]float32, rows*la.Out()), make([]float32, rows*la.Out())
					la.Forward(ya, x, rows)
					lf.Forward(yf, x, rows)
					skipped := res.Layers[i].Linears[k].Skipped
					for j := range ya {
						if ya[j] != yf[j] && !skipped {
							t.Fatalf("layer %d %v: output %d = %v from the artifact, %v fake-quantized", i, k, j, ya[j], yf[j])
						}
					}
				}
			}
			stream := sampleStream(t, a.TokenizerPath, a.Config)
			opt := eval.Options{SeqLen: 256, MaxWindows: 3}
			pa, err := eval.Perplexity(context.Background(), am, stream, opt)
			if err != nil {
				t.Fatal(err)
			}
			pf, err := eval.Perplexity(context.Background(), fq, stream, opt)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(pa.PPL-pf.PPL) / pf.PPL; d > 1e-4 {
				t.Errorf("artifact ppl %.6f, fake-quantized %.6f: relative difference %.2g > 1e-4", pa.PPL, pf.PPL, d)
			}
			t.Logf("ppl artifact %.6f fake-quant %.6f", pa.PPL, pf.PPL)
		})
	}
}

// compareLayers checks that a decoded layer holds the same quantized numbers as the ptq
// result; exact also compares the float32 norms, biases and skipped weights.
func compareLayers(t *testing.T, got, want *ptq.LayerResult, exact bool) {
	t.Helper()
	eq := func(what string, a, b []float32) {
		if len(a) != len(b) {
			t.Fatalf("layer %d %s: %d values, want %d", want.Layer, what, len(a), len(b))
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("layer %d %s[%d] = %v, want %v", want.Layer, what, i, a[i], b[i])
			}
		}
	}
	if exact {
		eq("attn norm", got.AttnNorm, want.AttnNorm)
		eq("mlp norm", got.MLPNorm, want.MLPNorm)
	}
	for k, wl := range want.Linears {
		gl := got.Linears[k]
		if gl.Skipped != wl.Skipped || gl.Bits != wl.Bits || gl.ActBits != wl.ActBits || gl.Act != wl.Act || gl.GroupSize != wl.GroupSize {
			t.Fatalf("%s: decoded %+v, want %+v", wl.Name, gl, wl)
		}
		if wl.Skipped {
			if exact {
				eq(wl.Name+" weight", gl.Float, wl.Float)
			}
			continue
		}
		if string(int8Bytes(gl.Weight.Q)) != string(int8Bytes(wl.Weight.Q)) {
			t.Fatalf("%s: codes differ", wl.Name)
		}
		if wl.IntScale != nil {
			gi, wi := gl.IntScale, wl.IntScale
			for c := range wi.ChannelScale {
				if gi.ChannelScale[c] != wi.ChannelScale[c] || gi.Log2Alpha[c] != wi.Log2Alpha[c] || gi.Bound[c] != wi.Bound[c] {
					t.Fatalf("%s: channel %d differs", wl.Name, c)
				}
			}
			for j := range wi.IntScales {
				if gi.IntScales[j] != wi.IntScales[j] {
					t.Fatalf("%s: integer scale %d differs", wl.Name, j)
				}
			}
		} else {
			eq(wl.Name+" scales", gl.Weight.Scales, wl.Weight.Scales)
		}
	}
}

// A tensor the fp16 file cannot hold is an error naming it, not an Inf in the artifact.
func TestEncodeRefusesFP16Overflow(t *testing.T) {
	lin := &ptq.LinearResult{Name: "model.layers.0.mlp.down_proj", Out: 2, In: 2, Skipped: true, Float: []float32{1, 2, 3, 70000}}
	if _, _, err := encodeLinear(lin); err == nil || !strings.Contains(err.Error(), "model.layers.0.mlp.down_proj.weight") || !strings.Contains(err.Error(), "fp16") {
		t.Errorf("error %v", err)
	}
	lr := &ptq.LayerResult{Layer: 0, AttnNorm: []float32{1, float32(math.Inf(1))}, MLPNorm: []float32{1, 1}}
	if _, _, err := encodeLayer(lr); err == nil || !strings.Contains(err.Error(), "model.layers.0.input_layernorm.weight") {
		t.Errorf("error %v", err)
	}
}

func TestScanFiniteNamesTensor(t *testing.T) {
	dir := t.TempDir()
	good := make([]byte, 2*300)
	bad := make([]byte, 4*6)
	safetensors.Float32ToBytes(bad, []float32{1, 2, 3, 4, float32(math.NaN()), 6})
	path := filepath.Join(dir, "m.safetensors")
	if err := safetensors.WriteFile(path, []safetensors.Tensor{
		{Name: "a.weight", DType: safetensors.F16, Shape: []int64{300}, Data: good},
		{Name: "b.weight", DType: safetensors.F32, Shape: []int64{2, 3}, Data: bad},
	}, nil); err != nil {
		t.Fatal(err)
	}
	ck, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	err = ScanFinite(ck, ck.Tensors(), nil)
	if err == nil || !strings.Contains(err.Error(), "b.weight") || !strings.Contains(err.Error(), "[1, 1]") {
		t.Errorf("error %v", err)
	}
}

// Layer checkpoints are not fsynced but checksummed: a checkpoint whose bytes changed after
// it was written (as after a crash before write-back) is refused by ReadLayer, and Reopen
// drops it and every later one, so that a resumed run recomputes them.
func TestDamagedCheckpointIsDropped(t *testing.T) {
	hm, _, w := quantizeTiny(t, ptq.DefaultOptions())
	cfg := hm.Config
	n := w.Done()
	if n != 4 {
		t.Fatalf("%d layers checkpointed", n)
	}
	if _, err := w.ReadLayer(1, &cfg, 128); err != nil {
		t.Fatalf("intact checkpoint: %v", err)
	}
	// Flip one bit near the end of layer 2's data.
	p := w.layerPath(2)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 0x10
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ReadLayer(2, &cfg, 128); !errors.Is(err, ErrDamagedCheckpoint) {
		t.Fatalf("damaged checkpoint: got %v", err)
	}
	w2, err := Reopen(w.Dir(), w.State())
	if err != nil {
		t.Fatal(err)
	}
	if got := w2.Done(); got != 2 {
		t.Errorf("after dropping the damaged checkpoint %d layers are done, want 2", got)
	}
}

// Qwen2's q/k/v biases (with LAE folded into v_proj's) are stored exactly: the artifact's
// layers, read back, equal the quantizer's results bit for bit, biases included, and the
// compressed-tensors export carries them in fp16.
func TestArtifactQwen2Biases(t *testing.T) {
	s := synth.Shapes["qwen2-7b"]
	s.HiddenSize, s.IntermediateSize, s.VocabSize, s.NumHeads, s.NumKVHeads = 256, 512, 300, 4, 2
	src := filepath.Join(t.TempDir(), "qwen2")
	if err := synth.Write(src, synth.Options{Shape: s, Layers: 2, Seed: 9}); err != nil {
		t.Fatal(err)
	}
	hm, err := hf.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	windows := make([][]int, 4)
	for i := range windows {
		windows[i] = make([]int, 32)
		for j := range windows[i] {
			windows[i][j] = rng.IntN(s.VocabSize)
		}
	}
	opt := ptq.DefaultOptions()
	opt.Activations.Rule = quant.PolicyRule{Kind: quant.AlwaysLAE} // fold into every pair, v→o included
	fp, err := ModelFingerprint(hm)
	if err != nil {
		t.Fatal(err)
	}
	for _, output := range []string{OutputOdyssey, OutputCompressedTensors} {
		w, err := Create(filepath.Join(t.TempDir(), "out.partial"), State{Model: fp, RecipeHash: "test", Layers: 2, Output: output})
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		res, err := ptq.RunWindows(context.Background(), hm, windows, opt, func(ev ptq.ProgressEvent) {
			if ev.Stage == "layer" && werr == nil {
				werr = w.WriteLayer(ev.Layer)
			}
		})
		if err != nil || werr != nil {
			t.Fatal(err, werr)
		}
		if _, err := w.Finish(hm, FinishOptions{Output: output, SourcePath: "qwen2", Tool: Tool{Name: "odyssey", Version: "test"}}); err != nil {
			t.Fatal(err)
		}
		ck, err := safetensors.Open(w.Dir())
		if err != nil {
			t.Fatal(err)
		}
		bias := LinearName(0, model.V) + SuffixBias
		info, ok := ck.Info(bias)
		if want := map[string]safetensors.DType{OutputOdyssey: safetensors.F32, OutputCompressedTensors: safetensors.F16}[output]; !ok || info.DType != want {
			t.Errorf("%s: %s is %v, want %s", output, bias, info.DType, want)
		}
		ck.Close()
		if output != OutputOdyssey {
			continue
		}
		a, err := Open(w.Dir())
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range res.Layers {
			got, err := a.Layer(i)
			if err != nil {
				t.Fatal(err)
			}
			compareLayers(t, got, want, false)
			for k, wl := range want.Linears {
				if wl.Bias == nil {
					continue
				}
				if !slices.Equal(got.Linears[k].Bias, wl.Bias) {
					t.Errorf("%s: bias differs from the quantizer's", wl.Name)
				}
			}
			if wv := want.Linears[2]; i == 0 && wv.Bias != nil && slices.Equal(wv.Bias, mustFloat(t, hm, *hm.Layers[0].V.Bias)) {
				t.Error("v_proj's bias is unchanged: the test does not exercise a folded bias")
			}
		}
		a.Close()
	}
}

func mustFloat(t *testing.T, hm *hf.Model, info safetensors.TensorInfo) []float32 {
	v, err := hm.Tensors.Float32(info.Name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
