package gpu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/calib"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
)

// CalibProtocol is the version of `odyssey-rt calib`'s protocol (docs/gpu-calibration.md).
const CalibProtocol = 1

// CalibGreeting is the first line `odyssey-rt calib` prints.
type CalibGreeting struct {
	OK             bool   `json:"ok"`
	Error          string `json:"error"`
	Ready          bool   `json:"ready"`
	Protocol       int    `json:"protocol"`
	Layers         int    `json:"layers"`
	Hidden         int    `json:"hidden"`
	Intermediate   int    `json:"intermediate"`
	GPU            GPU    `json:"gpu"`
	RuntimeVersion string `json:"runtime_version"`
	// Commands lists the commands the server serves (a runtime built before the quantized
	// propagation lacks advance_quantized).
	Commands []string `json:"commands"`
	// Precision is the arithmetic of the layer forward, statistics and propagation: "fp16"
	// (the executor's kernels; the runtime's default), "fp32" (as the CPU pass) or "exact" (the
	// CPU pass's canonical arithmetic bit for bit, docs/gpu-calibration.md). A runtime
	// built before the choice existed sends none and computes in fp16.
	Precision string `json:"precision"`
}

// CalibPrecisionEnv names the environment variable that selects the GPU calibration's
// arithmetic when CalibOptions.Precision is empty: fp32, fp16 or exact (unset:
// DefaultCalibPrecision).
const CalibPrecisionEnv = "ODYSSEY_CALIB_PRECISION"

// DefaultCalibPrecision is the arithmetic asked for when neither CalibOptions.Precision nor
// $ODYSSEY_CALIB_PRECISION names one: exact, the CPU pass's float32 arithmetic bit for bit,
// so that `--device cuda` writes the artifact `--device cpu` writes, byte for byte. It costs
// about 1.4–1.6× fp16's time on a 7B on the H200: w4a8-fptq 250.6 s against 178 s (goal 300 s),
// w4a16-gptq 433 s against 276 s (goal 480 s); runtime/NOTES.md, sessions 10 and 11. fp16 stays on request for speed; fp32 matches neither the CPU
// nor fp16's speed.
const DefaultCalibPrecision = "exact"

// ValidPrecision reports whether p names a GPU calibration arithmetic the runtime knows
// ("" stands for the runtime's default).
func ValidPrecision(p string) bool {
	switch p {
	case "", "fp32", "fp16", "exact":
		return true
	}
	return false
}

// calibPrecision returns the precision to ask the runtime for: CalibOptions.Precision, else
// $ODYSSEY_CALIB_PRECISION, else DefaultCalibPrecision.
func calibPrecision(opt CalibOptions) (string, error) {
	p, from := opt.Precision, "CalibOptions.Precision"
	if p == "" {
		p, from = os.Getenv(CalibPrecisionEnv), CalibPrecisionEnv
	}
	if p == "" {
		return DefaultCalibPrecision, nil
	}
	if ValidPrecision(p) {
		return p, nil
	}
	return "", fmt.Errorf("gpu: %s=%q: want fp32, fp16 or exact", from, p)
}

// PrecisionOrDefault returns the arithmetic the runtime reported ("fp16" for a runtime that
// predates the choice).
func (g CalibGreeting) PrecisionOrDefault() string {
	if g.Precision == "" {
		return "fp16"
	}
	return g.Precision
}

// calibAnswer is the answer line of one command.
type calibAnswer struct {
	OK      bool    `json:"ok"`
	Error   string  `json:"error"`
	Fatal   *bool   `json:"fatal"`
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
}

// CalibOptions configure StartCalib.
type CalibOptions struct {
	// Runtime is the odyssey-rt binary (Find).
	Runtime string
	// Model is the checkpoint folder the runtime reads layers from: the folder hm was opened
	// from.
	Model string
	// Dir, when set, is where the temporary folder for the exchanged files is made
	// (os.MkdirTemp's dir; "" means the system's).
	Dir string
	// Stderr, when set, receives the runtime's stderr as it is written.
	Stderr io.Writer
	// Need lists the commands the run will send; a server whose greeting lacks one is
	// refused before the windows are sent (an older runtime, or one without the quantized
	// propagation).
	Need []string
	// Precision asks the runtime for "fp32", "fp16" or "exact" arithmetic (`--precision`); "" takes
	// $ODYSSEY_CALIB_PRECISION, and when that is unset too, DefaultCalibPrecision. A runtime
	// whose greeting reports another precision is refused.
	Precision string
}

// CalibPass is the calibration pass run by the CUDA runtime (`odyssey-rt calib`): it
// implements ptq.Pass and ptq.ResultAdvancer. The residual stream of every window lives on
// the GPU; the host holds one float layer at a time (the quantizer's input) and the
// statistics of its inputs. Go owns the temporary folder the files cross through, and
// removes it on Close.
//
// A CalibPass is not safe for concurrent use. After a failed command it is broken: every
// later command returns the first error.
type CalibPass struct {
	hm      *hf.Model
	cfg     hf.Config
	seqLen  int
	rows    int64
	dir     string
	ownDir  bool
	w       io.WriteCloser
	r       *bufio.Reader
	stop    func() error // ends the server (closes its stdin, waits, kills on timeout)
	kill    func()
	stderr  func() string
	onChunk func(done, total int)
	next    int // the layer the stream has reached
	mem     calib.MemStats
	err     error
	greet   CalibGreeting
	mu      sync.Mutex
}

// Greeting returns what the runtime said when it started.
func (p *CalibPass) Greeting() CalibGreeting { return p.greet }

// Supports reports whether the server serves command cmd (its greeting's commands).
func (p *CalibPass) Supports(cmd string) bool { return slices.Contains(p.greet.Commands, cmd) }

// StartCalib starts `odyssey-rt calib` for hm (opened from opt.Model), hands it the windows
// and returns the pass positioned before layer 0. A runtime that finds no GPU fails here,
// with its message.
func StartCalib(ctx context.Context, opt CalibOptions, hm *hf.Model, windows [][]int, copt calib.Options) (*CalibPass, error) {
	dir, err := os.MkdirTemp(opt.Dir, "odyssey-calib-")
	if err != nil {
		return nil, fmt.Errorf("gpu: calibration folder: %w", err)
	}
	precision, err := calibPrecision(opt)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{"calib", "--model", opt.Model, "--dir", dir}
	if copt.ChunkRows > 0 {
		args = append(args, "--chunk-rows", strconv.Itoa(copt.ChunkRows))
	}
	if precision != "" {
		args = append(args, "--precision", precision)
	}
	// The process lives as long as the pass, not as long as ctx (which may be one call's), so
	// it gets its own context; exec requires one (CommandContext) for setProcessGroup's
	// cmd.Cancel, which kill uses to end the whole process group.
	procCtx, procCancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(procCtx, opt.Runtime, args...)
	cmd.Env = childEnv(os.Environ())
	setProcessGroup(cmd)
	tail := &tailBuffer{max: stderrTail}
	cmd.Stderr = tail
	if opt.Stderr != nil {
		cmd.Stderr = io.MultiWriter(tail, opt.Stderr)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		procCancel()
		os.RemoveAll(dir)
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		procCancel()
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		procCancel()
		os.RemoveAll(dir)
		return nil, &RuntimeError{Path: opt.Runtime, Args: args, ExitCode: -1, Message: fmt.Sprintf("could not start: %v", err), Err: err}
	}
	kill := func() {
		if cmd.Cancel != nil {
			_ = cmd.Cancel()
		} else if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	}
	var waitOnce sync.Once
	var waitErr error
	wait := func() error {
		waitOnce.Do(func() {
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case waitErr = <-done:
			case <-time.After(30 * time.Second):
				kill()
				waitErr = <-done
			}
			procCancel()
		})
		return waitErr
	}
	stop := func() error { stdin.Close(); return wait() }
	p, err := newCalibPass(ctx, stdin, stdout, stop, kill, tail.String, hm, windows, dir, opt.Need, precision)
	if err != nil {
		var re *RuntimeError
		if errors.As(err, &re) {
			re.Path, re.Args = opt.Runtime, args
			if cmd.ProcessState != nil {
				re.ExitCode = cmd.ProcessState.ExitCode()
			}
		}
		os.RemoveAll(dir)
		return nil, err
	}
	p.ownDir = true
	return p, nil
}

// newCalibPass speaks the protocol over w (the server's stdin) and r (its stdout): it reads
// the greeting, writes the token windows file into dir and sends init. The Go test double
// runs the server in-process through the same function. precision ("" for any) is the
// arithmetic asked for (the greeting must report it).
func newCalibPass(ctx context.Context, w io.WriteCloser, r io.Reader, stop func() error, kill func(), stderr func() string,
	hm *hf.Model, windows [][]int, dir string, need []string, precision string) (*CalibPass, error) {
	cfg := hm.Config
	if err := model.CheckConfig(&cfg); err != nil {
		return nil, err
	}
	if len(windows) == 0 || len(windows[0]) == 0 {
		return nil, errors.New("gpu: no calibration windows")
	}
	p := &CalibPass{hm: hm, cfg: cfg, seqLen: len(windows[0]), rows: int64(len(windows)) * int64(len(windows[0])),
		dir: dir, w: w, r: bufio.NewReaderSize(r, 1<<16), stop: stop, kill: kill, stderr: stderr}
	fail := func(err error) (*CalibPass, error) {
		p.kill()
		_ = p.stop()
		return nil, err
	}
	line, err := p.readLine(ctx)
	if err != nil {
		return fail(err)
	}
	if err := json.Unmarshal(line, &p.greet); err != nil {
		return fail(p.runtimeErr(fmt.Sprintf("greeting is not the protocol's JSON object: %v: %s", err, clip(line, 200)), nil))
	}
	g := &p.greet
	switch {
	case !g.OK:
		msg := g.Error
		if msg == "" {
			msg = "failed without a message"
		}
		return fail(p.runtimeErr(msg, nil))
	case !g.Ready || g.Protocol != CalibProtocol:
		return fail(p.runtimeErr(fmt.Sprintf("speaks calibration protocol %d (ready %v), want %d", g.Protocol, g.Ready, CalibProtocol), nil))
	case g.Layers != cfg.NumLayers || g.Hidden != cfg.HiddenSize || g.Intermediate != cfg.IntermediateSize:
		return fail(p.runtimeErr(fmt.Sprintf("reads a model of %d layers, hidden %d, intermediate %d; Go reads %d, %d, %d",
			g.Layers, g.Hidden, g.Intermediate, cfg.NumLayers, cfg.HiddenSize, cfg.IntermediateSize), nil))
	}
	// A runtime that ignored --precision (or computes otherwise) must not pass for the one asked.
	if got := g.PrecisionOrDefault(); precision != "" && got != precision {
		return fail(p.runtimeErr(fmt.Sprintf("computes in %s, but %s was asked for: rebuild the runtime, or unset %s", got, precision, CalibPrecisionEnv), nil))
	}
	for _, c := range need {
		if !slices.Contains(g.Commands, c) {
			return fail(p.runtimeErr(fmt.Sprintf("does not serve %q (it serves %v): rebuild the runtime, or calibrate with --device cpu", c, g.Commands), nil))
		}
	}
	tokens := filepath.Join(dir, "windows.tok")
	f, err := os.Create(tokens)
	if err != nil {
		return fail(err)
	}
	werr := WriteTokenWindows(f, windows, cfg.VocabSize)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fail(fmt.Errorf("gpu: calibration windows: %w", werr))
	}
	a, err := p.command(ctx, map[string]any{"cmd": "init", "tokens": tokens})
	if err != nil {
		return fail(err)
	}
	if a.Rows != p.rows {
		return fail(p.runtimeErr(fmt.Sprintf("init embedded %d rows, want %d", a.Rows, p.rows), nil))
	}
	os.Remove(tokens)
	return p, nil
}

func (p *CalibPass) runtimeErr(msg string, err error) error {
	e := &RuntimeError{Path: BinaryName, Args: []string{"calib"}, ExitCode: -1, Message: msg, Err: err}
	if p.stderr != nil {
		e.Stderr = p.stderr()
	}
	return e
}

// readLine reads one answer line; ctx cancels by killing the server (the read then ends).
func (p *CalibPass) readLine(ctx context.Context) ([]byte, error) {
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b, err := p.r.ReadBytes('\n')
		ch <- res{b, err}
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			msg := "ended without answering"
			if x.err != io.EOF {
				msg = fmt.Sprintf("reading its answer: %v", x.err)
			}
			// Let it finish dying so that the stderr tail is complete.
			_ = p.stop()
			return nil, p.runtimeErr(msg, x.err)
		}
		return x.b, nil
	case <-ctx.Done():
		p.kill()
		<-ch
		return nil, ctx.Err()
	}
}

// command sends one command line and reads its answer. A failure breaks the pass unless the
// server says it is not fatal.
func (p *CalibPass) command(ctx context.Context, cmd map[string]any) (*calibAnswer, error) {
	if p.err != nil {
		return nil, p.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if _, err := p.w.Write(append(b, '\n')); err != nil {
		_ = p.stop()
		p.err = p.runtimeErr(fmt.Sprintf("%v: could not send the command: %v", cmd["cmd"], err), err)
		return nil, p.err
	}
	line, err := p.readLine(ctx)
	if err != nil {
		p.err = err
		return nil, err
	}
	var a calibAnswer
	if err := json.Unmarshal(line, &a); err != nil {
		p.err = p.runtimeErr(fmt.Sprintf("%v: answer is not the protocol's JSON object: %v: %s", cmd["cmd"], err, clip(line, 200)), err)
		p.kill()
		return nil, p.err
	}
	if !a.OK {
		msg := a.Error
		if msg == "" {
			msg = "failed without a message"
		}
		err := p.runtimeErr(fmt.Sprintf("%v: %s", cmd["cmd"], msg), nil)
		if a.Fatal == nil || *a.Fatal {
			_ = p.stop()
			if p.stderr != nil {
				err.(*RuntimeError).Stderr = p.stderr()
			}
			p.err = err
		}
		return nil, err
	}
	return &a, nil
}

// Config returns the model's configuration.
func (p *CalibPass) Config() *hf.Config { return &p.cfg }

// SeqLen returns the window length.
func (p *CalibPass) SeqLen() int { return p.seqLen }

// Layer loads decoder layer i in float32 from the checkpoint, for the quantizer (the runtime
// reads its own copy).
func (p *CalibPass) Layer(i int) (*model.Layer, error) {
	l, err := model.LoadLayer(p.hm, i)
	if err != nil {
		return nil, err
	}
	l.Config = &p.cfg
	p.mem.PeakLayerBytes = max(p.mem.PeakLayerBytes, calib.LayerBytes(l))
	return l, nil
}

// checkpointLayer checks that l is a float layer as the checkpoint has it (every linear
// dense): the runtime runs its own copy of layer l.Index, read from the checkpoint, so a
// layer changed in Go (folded, quantized) cannot be run this way.
func (p *CalibPass) checkpointLayer(l *model.Layer, what string) error {
	for _, k := range model.LayerKinds {
		if _, ok := l.Linear(k).(*model.Dense); !ok {
			return fmt.Errorf("gpu: %s: layer %d's %v is not the checkpoint's float linear; the GPU pass runs checkpoint layers only (quantized layers go through AdvanceResult)", what, l.Index, k)
		}
	}
	if l.Index != p.next {
		return fmt.Errorf("gpu: %s layer %d, but the stream has reached layer %d", what, l.Index, p.next)
	}
	return nil
}

func (p *CalibPass) chunkStart() {
	if p.onChunk != nil {
		p.onChunk(0, 1)
	}
}

func (p *CalibPass) chunkDone() {
	if p.onChunk != nil {
		p.onChunk(1, 1)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.mem.PeakHeapInuse = max(p.mem.PeakHeapInuse, ms.HeapInuse)
}

// Collect runs the checkpoint's layer l.Index on the GPU without changing the stream and
// returns the statistics of its inputs.
func (p *CalibPass) Collect(ctx context.Context, l *model.Layer, hessian func(model.LinearKind) bool) (*calib.LayerStats, error) {
	return p.collect(ctx, l, hessian, false)
}

// CollectAdvance is Collect and Advance in one run (float propagation).
func (p *CalibPass) CollectAdvance(ctx context.Context, l *model.Layer, hessian func(model.LinearKind) bool) (*calib.LayerStats, error) {
	return p.collect(ctx, l, hessian, true)
}

func (p *CalibPass) collect(ctx context.Context, l *model.Layer, hessian func(model.LinearKind) bool, advance bool) (*calib.LayerStats, error) {
	if err := p.checkpointLayer(l, "collect"); err != nil {
		return nil, err
	}
	hk := []string{}
	for _, k := range calibInputKinds {
		if hessian != nil && hessian(k) {
			hk = append(hk, calibInputName(k))
		}
	}
	out := filepath.Join(p.dir, fmt.Sprintf("stats-%d.bin", l.Index))
	p.chunkStart()
	_, err := p.command(ctx, map[string]any{"cmd": "collect", "layer": l.Index, "hessian": hk, "outputs": len(hk) > 0, "advance": advance, "out": out})
	if err != nil {
		return nil, err
	}
	defer os.Remove(out)
	if advance {
		p.next++
	}
	ls, err := ReadCalibStats(out, &p.cfg, l.Index, hessian, len(hk) > 0)
	if err != nil {
		var nf *calib.NonFiniteError
		if errors.As(err, &nf) {
			return nil, err
		}
		return nil, p.runtimeErr("collect: "+err.Error(), err)
	}
	p.chunkDone()
	return ls, nil
}

// calibInputName is an input's name in the protocol.
func calibInputName(k model.LinearKind) string {
	switch k {
	case model.Q:
		return "q"
	case model.O:
		return "o"
	case model.Gate:
		return "gate"
	case model.Down:
		return "down"
	}
	return k.String()
}

// Advance runs the checkpoint's float layer l.Index on the stream in place.
func (p *CalibPass) Advance(ctx context.Context, l *model.Layer) error {
	if err := p.checkpointLayer(l, "advance"); err != nil {
		return err
	}
	p.chunkStart()
	if _, err := p.command(ctx, map[string]any{"cmd": "advance", "layer": l.Index}); err != nil {
		return err
	}
	p.next++
	p.chunkDone()
	return nil
}

// AdvanceResult runs the quantized layer lr on the stream in place: Go writes its artifact
// tensors (artifact.WriteLayerFile) and the runtime runs them with the artifact's kernels.
func (p *CalibPass) AdvanceResult(ctx context.Context, lr *qresult.LayerResult) error {
	if lr.Layer != p.next {
		return fmt.Errorf("gpu: advance layer %d, but the stream has reached layer %d", lr.Layer, p.next)
	}
	path := filepath.Join(p.dir, fmt.Sprintf("layer-%d.safetensors", lr.Layer))
	if err := artifact.WriteLayerFile(path, lr); err != nil {
		return err
	}
	defer os.Remove(path)
	p.chunkStart()
	if _, err := p.command(ctx, map[string]any{"cmd": "advance_quantized", "layer": lr.Layer, "tensors": path}); err != nil {
		return err
	}
	p.next++
	p.chunkDone()
	return nil
}

// Hidden returns the residual stream as the runtime holds it, in float32 [rows, hidden]
// (for tests and debugging: a 7B calibration's stream is 1 GiB).
func (p *CalibPass) Hidden(ctx context.Context) ([]float32, error) {
	out := filepath.Join(p.dir, "hidden.f32")
	if _, err := p.command(ctx, map[string]any{"cmd": "hidden", "out": out}); err != nil {
		return nil, err
	}
	defer os.Remove(out)
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := make([]float32, p.rows*int64(p.cfg.HiddenSize))
	if err := readF32s(bufio.NewReaderSize(f, 1<<20), h); err != nil {
		return nil, fmt.Errorf("%s: %w", out, err)
	}
	if n, _ := io.Copy(io.Discard, io.LimitReader(f, 1)); n != 0 {
		return nil, fmt.Errorf("%s: longer than %d rows", out, p.rows)
	}
	return h, nil
}

// ReleaseScratch does nothing: the scratch is on the GPU.
func (p *CalibPass) ReleaseScratch() {}

// Mem returns the host memory the pass used: PeakLayerBytes of the float layers loaded,
// PeakHeapInuse sampled after each command; ActivationBytes is 0, the stream being on the
// GPU.
func (p *CalibPass) Mem() calib.MemStats { return p.mem }

// SetOnChunk sets the progress function: a command counts as one chunk.
func (p *CalibPass) SetOnChunk(fn func(done, total int)) { p.onChunk = fn }

// Close ends the server (quit, then EOF) and removes the temporary folder. It returns the
// server's exit error, if any, unless the pass had failed already.
func (p *CalibPass) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w == nil {
		return nil
	}
	var err error
	if p.err == nil {
		if _, werr := p.w.Write([]byte(`{"cmd":"quit"}` + "\n")); werr == nil {
			_, _ = p.r.ReadBytes('\n')
		}
		err = p.stop()
	} else {
		_ = p.stop()
	}
	p.w = nil
	if p.ownDir {
		os.RemoveAll(p.dir)
	}
	return err
}
