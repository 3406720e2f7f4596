package gpu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/internal/tinyfixture"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/ptq"
)

// fakeCalib is the Go test double of `odyssey-rt calib`: it speaks the protocol of
// docs/gpu-calibration.md over pipes, with the CPU pass (calib.Pass) underneath, so that the
// client, the statistics file and the error paths are tested without a GPU. fault, when set,
// is asked before each command and may return "exit" (the server dies without answering),
// "fail" (a fatal error answer), "nan" (a NaN in the statistics), "truncate" (a short
// statistics file) or "" (normal).
type fakeCalib struct {
	hm        *hf.Model
	group     int
	greeting  map[string]any
	fault     func(cmd string, layer int) string
	cmds      []string
	need      []string
	precision string // asked of the server (newCalibPass's check)
}

func (f *fakeCalib) serve(in io.Reader, out io.Writer) error {
	cfg := f.hm.Config
	enc := json.NewEncoder(out)
	g := map[string]any{"ok": true, "ready": true, "protocol": 1, "layers": cfg.NumLayers, "hidden": cfg.HiddenSize, "intermediate": cfg.IntermediateSize,
		"commands": []string{"init", "collect", "advance", "advance_quantized", "hidden", "quit"}}
	for k, v := range f.greeting {
		g[k] = v
	}
	if err := enc.Encode(g); err != nil {
		return err
	}
	if ok, _ := g["ok"].(bool); !ok {
		return nil
	}
	var pass *calib.Pass
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var c struct {
			Cmd     string   `json:"cmd"`
			Tokens  string   `json:"tokens"`
			Layer   int      `json:"layer"`
			Hessian []string `json:"hessian"`
			Outputs bool     `json:"outputs"`
			Advance bool     `json:"advance"`
			Out     string   `json:"out"`
			Path    string   `json:"tensors"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return err
		}
		f.cmds = append(f.cmds, c.Cmd)
		fault := ""
		if f.fault != nil {
			fault = f.fault(c.Cmd, c.Layer)
		}
		switch fault {
		case "exit":
			return nil
		case "fail":
			return enc.Encode(map[string]any{"ok": false, "error": "CUDA error: an illegal memory access was encountered"})
		}
		ans := map[string]any{"ok": true}
		var err error
		ctx := context.Background()
		switch c.Cmd {
		case "init":
			var fh *os.File
			if fh, err = os.Open(c.Tokens); err == nil {
				var windows [][]int
				_, windows, err = ReadTokenWindows(fh)
				fh.Close()
				if err == nil {
					pass, err = calib.NewPass(f.hm, windows, calib.Options{})
					ans["rows"] = len(windows) * len(windows[0])
				}
			}
		case "collect":
			var l *model.Layer
			if l, err = pass.Layer(c.Layer); err != nil {
				break
			}
			hk := func(k model.LinearKind) bool { return slices.Contains(c.Hessian, calibInputName(k)) }
			var ls *calib.LayerStats
			if c.Advance {
				ls, err = pass.CollectAdvance(ctx, l, hk)
			} else {
				ls, err = pass.Collect(ctx, l, hk)
			}
			if err != nil {
				break
			}
			var outs []model.LinearKind
			if c.Outputs {
				for _, k := range model.LayerKinds {
					if hk(k.SharedInput()[0]) {
						outs = append(outs, k)
					}
				}
			}
			if fault == "nan" {
				ls.Inputs[model.Gate].Max[3] = float32(math.NaN())
			}
			var buf bytes.Buffer
			if err = WriteCalibStats(&buf, ls, outs); err != nil {
				break
			}
			b := buf.Bytes()
			if fault == "truncate" {
				b = b[:len(b)-9]
			}
			err = os.WriteFile(c.Out, b, 0o644)
		case "advance":
			var l *model.Layer
			if l, err = pass.Layer(c.Layer); err == nil {
				err = pass.Advance(ctx, l)
			}
		case "advance_quantized":
			var l *model.Layer
			lr, rerr := artifact.ReadLayerFile(c.Path, &cfg, c.Layer, f.group)
			if err = rerr; err == nil {
				if l, err = artifact.BuildLayer(lr, &cfg); err == nil {
					err = pass.Advance(ctx, l)
				}
			}
		case "hidden":
			h := pass.Hidden()
			b := make([]byte, 4*len(h))
			for i, v := range h {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
			}
			err = os.WriteFile(c.Out, b, 0o644)
		case "quit":
			return enc.Encode(ans)
		default:
			err = fmt.Errorf("unknown command %q", c.Cmd)
		}
		if err != nil {
			ans = map[string]any{"ok": false, "error": err.Error()}
		}
		if err := enc.Encode(ans); err != nil {
			return err
		}
		if err != nil {
			return nil
		}
	}
	return sc.Err()
}

// start runs the double in a goroutine and returns a CalibPass talking to it.
func (f *fakeCalib) start(t testing.TB, windows [][]int) (*CalibPass, error) {
	cr, cw := io.Pipe() // client → server
	sr, sw := io.Pipe() // server → client
	done := make(chan error, 1)
	go func() {
		err := f.serve(cr, sw)
		sw.CloseWithError(io.EOF)
		cr.CloseWithError(io.ErrClosedPipe)
		done <- err
	}()
	var serr error
	stopped := false
	stop := func() error {
		cw.Close()
		if !stopped {
			serr, stopped = <-done, true
		}
		return serr
	}
	kill := func() { sw.CloseWithError(io.EOF); cr.CloseWithError(io.ErrClosedPipe) }
	dir := t.TempDir()
	return newCalibPass(context.Background(), cw, sr, stop, kill, func() string { return "fake stderr" }, f.hm, windows, dir, f.need, f.precision)
}

func (f *fakeCalib) newPass(t testing.TB) ptq.NewPassFunc {
	return func(hm *hf.Model, windows [][]int, _ calib.Options) (ptq.Pass, error) {
		return f.start(t, windows)
	}
}

// sameLayers fails unless got and want are the same quantized layers, bit for bit.
func sameLayers(t *testing.T, what string, got, want []*ptq.LayerResult) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d layers, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !slices.Equal(g.AttnNorm, w.AttnNorm) || !slices.Equal(g.MLPNorm, w.MLPNorm) {
			t.Errorf("%s: layer %d: norms differ", what, i)
		}
		for k, wi := range w.Inputs {
			gi := g.Inputs[k]
			if gi.Decision.Policy != wi.Decision.Policy || gi.Act != wi.Act || gi.Before != wi.Before || gi.After != wi.After {
				t.Errorf("%s: layer %d %v input: %+v %+v, want %+v %+v", what, i, wi.Kind, gi.Act, gi.After, wi.Act, wi.After)
			}
		}
		for k, wl := range w.Linears {
			gl := g.Linears[k]
			if gl.Act != wl.Act || !slices.Equal(gl.Weight.Q, wl.Weight.Q) || !slices.Equal(gl.Weight.Scales, wl.Weight.Scales) ||
				!slices.Equal(gl.IntScale.IntScales, wl.IntScale.IntScales) || gl.OutputError != wl.OutputError || gl.WeightError != wl.WeightError {
				t.Errorf("%s: layer %d %s differs (output error %v, want %v)", what, i, wl.Name, gl.OutputError, wl.OutputError)
			}
		}
	}
}

// Through the protocol, with the CPU pass behind it, RunWindows computes exactly what it
// computes with the CPU pass: the statistics (float64 XᵀX) and the quantized layers (the
// artifact's layer file, read back exactly) cross the boundary without a bit lost.
func TestCalibPassMatchesCPU(t *testing.T) {
	hm, windows := tinyfixture.Windows(t, 4, 64, 1)
	for _, tc := range []struct {
		name string
		opt  func(*ptq.Options)
	}{
		{"fptq-quantized", func(*ptq.Options) {}},
		{"fptq-float", func(o *ptq.Options) { o.Calib.Propagate = calib.PropagateFloat }},
		{"gptq-quantized", func(o *ptq.Options) { o.Weights.Method = ptq.MethodGPTQ }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := ptq.DefaultOptions()
			tc.opt(&opt)
			want, err := ptq.RunWindows(context.Background(), hm, windows, opt, nil)
			if err != nil {
				t.Fatal(err)
			}
			f := &fakeCalib{hm: hm, group: opt.Weights.GroupSize}
			opt.NewPass = f.newPass(t)
			got, err := ptq.RunWindows(context.Background(), hm, windows, opt, nil)
			if err != nil {
				t.Fatal(err)
			}
			sameLayers(t, tc.name, got.Layers, want.Layers)
			wantCmd := "advance_quantized"
			if opt.Calib.Propagate == calib.PropagateFloat {
				wantCmd = "collect"
			}
			if !slices.Contains(f.cmds, wantCmd) || f.cmds[len(f.cmds)-1] != "quit" {
				t.Errorf("commands %v", f.cmds)
			}
		})
	}
}

// A resumed run re-propagates the checkpointed layers through the GPU pass
// (advance_quantized, or advance with float propagation) and then computes the rest as an
// uninterrupted run does.
func TestCalibPassResume(t *testing.T) {
	hm, windows := tinyfixture.Windows(t, 4, 64, 1)
	for _, prop := range []calib.Propagation{calib.PropagateQuantized, calib.PropagateFloat} {
		opt := ptq.DefaultOptions()
		opt.Calib.Propagate = prop
		full, err := ptq.RunWindows(context.Background(), hm, windows, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		f := &fakeCalib{hm: hm, group: opt.Weights.GroupSize}
		opt.NewPass = f.newPass(t)
		opt.Resume = func(i int) (*ptq.LayerResult, error) {
			if i < 2 {
				return full.Layers[i], nil
			}
			return nil, nil
		}
		res, err := ptq.RunWindows(context.Background(), hm, windows, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		sameLayers(t, string(prop), res.Layers[2:], full.Layers[2:])
		want := "advance_quantized"
		if prop == calib.PropagateFloat {
			want = "advance"
		}
		if f.cmds[1] != want || f.cmds[2] != want {
			t.Errorf("%s: commands %v, want two %s first", prop, f.cmds, want)
		}
	}
}

// The stream the double holds after the pass is the CPU pass's, read back through hidden.
func TestCalibPassHidden(t *testing.T) {
	hm, windows := tinyfixture.Windows(t, 2, 32, 3)
	f := &fakeCalib{hm: hm}
	p, err := f.start(t, windows)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cpu, err := calib.NewPass(hm, windows, calib.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 2 {
		l, err := p.Layer(i)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Advance(ctx, l); err != nil {
			t.Fatal(err)
		}
		if err := cpu.Advance(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	h, err := p.Hidden(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h, cpu.Hidden()) {
		t.Fatal("the stream read back differs from the CPU pass's")
	}
	// Out of order: the stream is at layer 2.
	l, _ := p.Layer(0)
	if err := p.Advance(ctx, l); err == nil || !strings.Contains(err.Error(), "reached layer 2") {
		t.Fatalf("advancing layer 0 again: %v", err)
	}
}

func TestCalibPassErrors(t *testing.T) {
	hm, windows := tinyfixture.Windows(t, 2, 32, 3)
	ctx := context.Background()
	// The greeting.
	for _, tc := range []struct {
		greeting  map[string]any
		precision string
		want      string
	}{
		{map[string]any{"ok": false, "error": "no CUDA device: no CUDA-capable device is detected"}, "", "no CUDA device"},
		{map[string]any{"protocol": 2}, "", "protocol 2"},
		{map[string]any{"hidden": 7}, "", "hidden 7"},
		{map[string]any{"commands": []string{"init", "collect", "advance"}}, "", `does not serve "advance_quantized"`},
		// fp32 asked of a runtime that reports fp16, or nothing (built before --precision).
		{map[string]any{"precision": "fp16"}, "fp32", "computes in fp16, but fp32 was asked for"},
		{nil, "fp32", "computes in fp16, but fp32 was asked for"},
		{map[string]any{"precision": "fp32"}, "fp16", "computes in fp32, but fp16 was asked for"},
	} {
		f := &fakeCalib{hm: hm, greeting: tc.greeting, need: []string{"collect", "advance", "advance_quantized"}, precision: tc.precision}
		_, err := f.start(t, windows)
		var re *RuntimeError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("greeting %v: error %v, want a RuntimeError with %q", tc.greeting, err, tc.want)
		}
	}
	// Faults during a run: each breaks the pass with an error that says what happened.
	opt := ptq.DefaultOptions()
	for _, tc := range []struct{ fault, cmd, want string }{
		{"exit", "collect", "ended without answering"},
		{"fail", "collect", "illegal memory access"},
		{"truncate", "collect", "unexpected EOF"},
		{"exit", "advance_quantized", "ended without answering"},
		{"fail", "init", "illegal memory access"},
	} {
		f := &fakeCalib{hm: hm, group: opt.Weights.GroupSize, fault: func(cmd string, layer int) string {
			if cmd == tc.cmd && layer == 1 || cmd == tc.cmd && cmd == "init" {
				return tc.fault
			}
			return ""
		}}
		o := opt
		o.NewPass = f.newPass(t)
		_, err := ptq.RunWindows(ctx, hm, windows, o, nil)
		var re *RuntimeError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "fake stderr") {
			t.Errorf("%s at %s: error %v, want a RuntimeError with %q and the stderr tail", tc.fault, tc.cmd, err, tc.want)
		}
	}
	// NaN in the statistics is the CPU pass's NonFiniteError.
	f := &fakeCalib{hm: hm, fault: func(cmd string, layer int) string {
		if cmd == "collect" {
			return "nan"
		}
		return ""
	}}
	o := opt
	o.NewPass = f.newPass(t)
	_, err := ptq.RunWindows(ctx, hm, windows, o, nil)
	var nf *calib.NonFiniteError
	if !errors.As(err, &nf) || nf.Layer != 0 {
		t.Errorf("NaN statistics: %v, want a NonFiniteError of layer 0", err)
	}
	// A cancelled context ends the command and the server.
	f = &fakeCalib{hm: hm}
	p, err := f.start(t, windows)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	l, _ := p.Layer(0)
	if err := p.Advance(cctx, l); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled advance: %v", err)
	}
	p.Close()
}

// The statistics file: what WriteCalibStats writes ReadCalibStats reads back exactly, a
// float32 XᵀX is widened, and every malformed file is refused.
func TestCalibStatsFile(t *testing.T) {
	hm, windows := tinyfixture.Windows(t, 2, 32, 5)
	cfg := hm.Config
	pass, err := calib.NewPass(hm, windows, calib.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := pass.Layer(0)
	hk := func(k model.LinearKind) bool { return k == model.Q || k == model.Down }
	ls, err := pass.Collect(context.Background(), l, hk)
	if err != nil {
		t.Fatal(err)
	}
	outs := []model.LinearKind{model.Q, model.K, model.V, model.Down}
	var buf bytes.Buffer
	if err := WriteCalibStats(&buf, ls, outs); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	dir := t.TempDir()
	read := func(b []byte, hk func(model.LinearKind) bool) (*calib.LayerStats, error) {
		p := filepath.Join(dir, "s.bin")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return ReadCalibStats(p, &cfg, 0, hk, true)
	}
	got, err := read(good, hk)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range calib.InputKinds() {
		a, b := got.Inputs[k], ls.Inputs[k]
		if !slices.Equal(a.Min, b.Min) || !slices.Equal(a.Max, b.Max) || !slices.Equal(a.AbsMax, b.AbsMax) || !slices.Equal(a.SumSq, b.SumSq) ||
			!slices.Equal(a.XTX(), b.XTX()) || a.TensorAbsMax != b.TensorAbsMax || a.TokenAbsMaxMean != b.TokenAbsMaxMean ||
			a.TokenAbsMaxMin != b.TokenAbsMaxMin || a.Rows != b.Rows {
			t.Errorf("%v input differs after the round trip", k)
		}
	}
	for _, k := range outs {
		if *got.Outputs[k] != *ls.Outputs[k] {
			t.Errorf("%v output %+v, want %+v", k, *got.Outputs[k], *ls.Outputs[k])
		}
	}
	// float32 XᵀX (what the runtime writes): the q input's record re-encoded.
	in := cfg.HiddenSize
	qStart := 32 // after the header
	xtxOff := qStart + 32 + 4*in + 4*in + 8*in
	f32 := slices.Clone(good[:xtxOff])
	binary.LittleEndian.PutUint32(f32[qStart+8:], 1)
	xtx := ls.Inputs[model.Q].XTX()
	for _, v := range xtx {
		f32 = binary.LittleEndian.AppendUint32(f32, math.Float32bits(float32(v)))
	}
	f32 = append(f32, good[xtxOff+8*in*in:]...)
	got, err = read(f32, hk)
	if err != nil {
		t.Fatalf("%v (in %d, %d values of XᵀX, file %d bytes)", err, in, len(xtx), len(good))
	}
	for i, v := range got.Inputs[model.Q].XTX() {
		if v != float64(float32(xtx[i])) {
			t.Fatalf("float32 XᵀX [%d] = %v, want %v", i, v, float32(xtx[i]))
		}
	}
	// Malformed files.
	bad := func(name string, b []byte, hk func(model.LinearKind) bool, want string) {
		t.Helper()
		if _, err := read(b, hk); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", name, err, want)
		}
	}
	mod := func(off int, v uint32) []byte {
		b := slices.Clone(good)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	bad("magic", append([]byte("ODYCALSX"), good[8:]...), hk, "not a statistics file")
	bad("layer", mod(8, 3), hk, "layer 3")
	bad("width", mod(qStart+4, uint32(in+1)), hk, "the config says")
	bad("kind", mod(qStart, 2), hk, "kind 2")
	bad("hessian not requested", good, func(k model.LinearKind) bool { return k == model.Q }, "XᵀX present true, requested false")
	bad("truncated", good[:len(good)-1], hk, "trailer")
	bad("truncated vector", good[:qStart+100], hk, "unexpected EOF")
	bad("longer", append(slices.Clone(good), 0), hk, "after the trailer")
	bad("rows", mod(24, 0), hk, "0 rows")
}

// StartCalib on a real process: the runtime starts (a child in its own process group, which
// exec accepts only through CommandContext), and a runtime that exits before its greeting is
// reported with its stderr and exit code, not as a failure to start. This is the path the
// in-process fake does not take; a device run found it broken ("could not start: exec:
// command with a non-nil Cancel was not created with CommandContext").
func TestStartCalibProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fake runtime is a shell script")
	}
	hm, windows := tinyfixture.Windows(t, 2, 16, 1)
	script := filepath.Join(t.TempDir(), "odyssey-rt")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'calib: no CUDA device found' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := StartCalib(context.Background(), CalibOptions{Runtime: script, Model: t.TempDir(), Dir: t.TempDir()}, hm, windows, calib.Options{})
	if err == nil {
		t.Fatal("StartCalib succeeded with a runtime that exits at once")
	}
	if strings.Contains(err.Error(), "could not start") || !strings.Contains(err.Error(), "no CUDA device found") {
		t.Fatalf("StartCalib: %v; want the runtime's stderr, not a start failure", err)
	}
}

// The precision asked of the runtime: CalibOptions.Precision, else $ODYSSEY_CALIB_PRECISION,
// else DefaultCalibPrecision (exact), passed as --precision; anything but
// fp32/fp16/exact is refused before a process starts. A greeting that reports the precision asked
// for is accepted.
func TestCalibPrecision(t *testing.T) {
	t.Setenv(CalibPrecisionEnv, "")
	for _, tc := range []struct {
		opt, env, want, err string
	}{
		{"", "", "exact", ""},
		{"", "fp16", "fp16", ""},
		{"fp32", "fp16", "fp32", ""},
		{"", "exact", "exact", ""},
		{"", "bf16", "", `ODYSSEY_CALIB_PRECISION="bf16": want fp32, fp16 or exact`},
		{"fp8", "", "", `CalibOptions.Precision="fp8"`},
	} {
		t.Setenv(CalibPrecisionEnv, tc.env)
		got, err := calibPrecision(CalibOptions{Precision: tc.opt})
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("opt %q env %q: %q, %v; want %q, error %q", tc.opt, tc.env, got, err, tc.want, tc.err)
		}
	}
	hm, windows := tinyfixture.Windows(t, 2, 16, 1)
	for _, p := range []string{"fp32", "fp16", "exact"} {
		f := &fakeCalib{hm: hm, greeting: map[string]any{"precision": p}, precision: p}
		pass, err := f.start(t, windows)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if g := pass.Greeting().PrecisionOrDefault(); g != p {
			t.Errorf("greeting precision %q, want %q", g, p)
		}
		if err := pass.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if runtime.GOOS == "windows" {
		return
	}
	// The flag reaches the process: the fake runtime records its arguments and exits.
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	script := filepath.Join(dir, "odyssey-rt")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" > "+argsFile+"\necho 'calib: no CUDA device found' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(CalibPrecisionEnv, "fp16")
	if _, err := StartCalib(context.Background(), CalibOptions{Runtime: script, Model: dir, Dir: dir}, hm, windows, calib.Options{}); err == nil {
		t.Fatal("StartCalib succeeded with a runtime that exits at once")
	}
	b, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "--precision fp16") {
		t.Errorf("runtime arguments %q lack --precision fp16", b)
	}
	// Neither option nor environment: the default is asked for explicitly, never left to the
	// runtime's own default (which is fp16 for odyssey-rt calib run by hand).
	t.Setenv(CalibPrecisionEnv, "")
	if _, err := StartCalib(context.Background(), CalibOptions{Runtime: script, Model: dir, Dir: dir}, hm, windows, calib.Options{}); err == nil {
		t.Fatal("StartCalib succeeded with a runtime that exits at once")
	}
	if b, err = os.ReadFile(argsFile); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "--precision exact") {
		t.Errorf("runtime arguments %q lack --precision exact (the default)", b)
	}
}
