package gpu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// BinaryName is the runtime's executable name (odyssey-rt.exe on Windows).
var BinaryName = "odyssey-rt" + exeSuffix()

func exeSuffix() string {
	if goruntime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}

// EnvRuntime names the environment variable that points at the runtime binary.
const EnvRuntime = "ODYSSEY_RT"

// modulePath identifies this repository's go.mod when Find looks for the checkout that holds
// runtime/build.
const modulePath = "github.com/odyssey-llm/odyssey"

// buildHint is how to get a runtime; every "not found" error ends with it.
const buildHint = "build it with `odyssey runtime build` (needs CUDA's nvcc and CMake ≥ 3.24 on a machine with an NVIDIA GPU) or set " + EnvRuntime

// NotFoundError says that no runtime binary was found, and where Find looked.
type NotFoundError struct {
	Looked []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("the CUDA runtime (%s) was not found; looked at: %s; %s",
		BinaryName, strings.Join(e.Looked, ", "), buildHint)
}

// ErrBadPath marks an explicit path (--runtime or ODYSSEY_RT) that is not an executable
// file: the user's setting is wrong, so Find reports it instead of searching elsewhere.
var ErrBadPath = errors.New("bad runtime path")

// finder holds the environment Find consults, replaceable in tests.
type finder struct {
	getenv     func(string) string
	getwd      func() (string, error)
	executable func() (string, error)
	lookPath   func(string) (string, error)
}

var osFinder = finder{getenv: os.Getenv, getwd: os.Getwd, executable: os.Executable, lookPath: exec.LookPath}

// Find returns the path of the runtime binary. It tries, in order: explicit (the --runtime
// flag), $ODYSSEY_RT, runtime/build/odyssey-rt under the current directory and under the
// checkout containing it, the same under the checkout containing the running executable
// (go build -o bin/odyssey in a checkout), the executable's own directory (an install that
// ships both binaries side by side), and finally $PATH. An explicit path or $ODYSSEY_RT that
// does not name an executable file is an error (wrapping ErrBadPath) rather than a reason
// to look elsewhere: running some other binary than the one the user named would be worse
// than failing. When nothing is found the error is a *NotFoundError listing every place
// looked at and how to build the runtime.
func Find(explicit string) (string, error) { return osFinder.find(explicit) }

func (f finder) find(explicit string) (string, error) {
	if explicit != "" {
		return checkExplicit("--runtime", explicit)
	}
	if env := f.getenv(EnvRuntime); env != "" {
		return checkExplicit(EnvRuntime, env)
	}
	var looked []string
	seen := map[string]bool{}
	try := func(p string) bool {
		p = filepath.Clean(p)
		if seen[p] {
			return false
		}
		seen[p] = true
		looked = append(looked, p)
		return isExecutable(p)
	}
	rel := filepath.Join("runtime", "build", BinaryName)
	var cands []string
	if wd, err := f.getwd(); err == nil {
		cands = append(cands, filepath.Join(wd, rel))
		if root := repoRoot(wd); root != "" {
			cands = append(cands, filepath.Join(root, rel))
		}
	}
	if exe, err := f.executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		if root := repoRoot(filepath.Dir(exe)); root != "" {
			cands = append(cands, filepath.Join(root, rel))
		}
		cands = append(cands, filepath.Join(filepath.Dir(exe), BinaryName))
	}
	for _, c := range cands {
		if try(c) {
			return c, nil
		}
	}
	if p, err := f.lookPath(BinaryName); err == nil {
		return p, nil
	}
	looked = append(looked, "$PATH")
	return "", &NotFoundError{Looked: looked}
}

func checkExplicit(what, p string) (string, error) {
	if !isExecutable(p) {
		why := "does not exist"
		if _, err := os.Stat(p); err == nil {
			why = "is not an executable file"
		}
		return "", fmt.Errorf("%s=%s %s (%w); %s", what, p, why, ErrBadPath, buildHint)
	}
	// Absolute, so that exec never resolves a bare name through $PATH to another binary.
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p, nil
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return false
	}
	return goruntime.GOOS == "windows" || st.Mode().Perm()&0o111 != 0
}

// repoRoot returns the nearest directory at or above dir whose go.mod declares this module,
// or "".
func repoRoot(dir string) string {
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(b) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func declaresModule(gomod []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" && strings.Trim(f[1], `"`) == modulePath {
			return true
		}
	}
	return false
}

// MaxOutput bounds the JSON object read from the runtime's stdout. The largest legitimate
// answer (a benchmark sweep, a test of every case) is a few hundred KB; a runtime that prints
// more is broken, and reading it all could exhaust memory.
const MaxOutput = 64 << 20

// stderrTail is how much of the runtime's stderr an error message keeps: the end, where the
// CUDA error or the assertion is.
const stderrTail = 4 << 10

// RunOptions adjusts Run.
type RunOptions struct {
	// Stderr, if set, receives the runtime's stderr as it is written (its progress and
	// human-readable text), besides the tail kept for error messages.
	Stderr io.Writer
	// Progress, if set, is called with each `progress <done> <total>` line of the runtime's
	// stderr (docs/executor.md) as it arrives. Those lines then go neither to Stderr nor to
	// the tail kept for error messages: the caller draws them, and a long run's thousands of
	// them would push the error itself out of the tail.
	Progress func(done, total int64)
	// WaitDelay bounds how long Run waits for the output pipes to close after the process was
	// killed (a grandchild may hold them); 0 means 2 s.
	WaitDelay time.Duration
	// Env is added to the runtime's environment (after this process's own, so it wins); e.g. a
	// tensor-parallel rank's CUDA_VISIBLE_DEVICES, ODY_RANK and ODY_WORLD.
	Env []string
}

// RuntimeError is a failure of a runtime command: its own {"ok": false, "error": ...}, a
// non-zero exit, a timeout, or output that is not the one JSON object of the protocol.
type RuntimeError struct {
	Path     string
	Args     []string
	ExitCode int    // -1 when the process did not exit normally (killed, timed out)
	Message  string // the runtime's "error", or what was wrong with its output
	Stderr   string // the last 4 KiB of its stderr
	Err      error  // the underlying cause, if any (context.DeadlineExceeded on a timeout)
}

func (e *RuntimeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %s", filepath.Base(e.Path), strings.Join(e.Args, " "), e.Message)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		fmt.Fprintf(&b, "\n--- stderr (end) ---\n%s", s)
	}
	return b.String()
}

func (e *RuntimeError) Unwrap() error { return e.Err }

// Run runs the runtime binary at path with args and returns the JSON object it printed on
// stdout when that object says "ok": true. See RunWith.
func Run(ctx context.Context, path string, args ...string) (json.RawMessage, error) {
	return RunWith(ctx, RunOptions{}, path, args...)
}

// RunWith runs the runtime binary and decodes the protocol of docs/gemm-cases.md: stdout
// holds exactly one JSON object with "ok"; "ok": false carries "error". ctx bounds the run
// (the process, and on Unix its process group, is killed at the deadline). The child always
// gets NCCL_NVLS_ENABLE=0: NVLink multicast (NVLS) is not usable on the machines we share,
// and NCCL hangs at initialisation when it tries. Stdout is refused beyond MaxOutput (the
// process is then killed); stderr is kept to its last 4 KiB for the error message.
//
// An object with "ok": true is returned even if the exit status is not 0: a test command
// may exit 1 when a case fails and still report every case, and the object is the answer.
func RunWith(ctx context.Context, opts RunOptions, path string, args ...string) (json.RawMessage, error) {
	fail := func(code int, msg string, stderr string, err error) error {
		return &RuntimeError{Path: path, Args: args, ExitCode: code, Message: msg, Stderr: stderr, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, fail(-1, err.Error(), "", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, path, args...)
	cmd.Env = childEnv(append(os.Environ(), opts.Env...))
	cmd.Stdin = nil
	setProcessGroup(cmd)
	cmd.WaitDelay = opts.WaitDelay
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 2 * time.Second
	}
	stdout := &boundedBuffer{limit: MaxOutput, onOverflow: cancel}
	tail := &tailBuffer{max: stderrTail}
	cmd.Stdout = stdout
	var errSink io.Writer = tail
	if opts.Stderr != nil {
		errSink = io.MultiWriter(tail, opts.Stderr)
	}
	var lines *progressLines
	if opts.Progress != nil {
		lines = &progressLines{out: errSink, progress: opts.Progress}
		errSink = lines
	}
	cmd.Stderr = errSink
	runErr := cmd.Run()
	if lines != nil {
		lines.Flush() // a last line without a newline
	}
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	stderr := tail.String()
	switch {
	case stdout.overflowed():
		return nil, fail(code, fmt.Sprintf("printed more than %d MiB on stdout; killed", MaxOutput>>20), stderr, nil)
	case ctx.Err() != nil:
		msg := "interrupted"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			msg = "timed out"
			if dl, ok := ctx.Deadline(); ok {
				msg = fmt.Sprintf("timed out (deadline %s); killed", dl.Format(time.TimeOnly))
			}
		}
		return nil, fail(code, msg, stderr, ctx.Err())
	}
	var startErr *exec.Error
	if errors.As(runErr, &startErr) || (runErr != nil && cmd.ProcessState == nil) {
		return nil, fail(code, fmt.Sprintf("could not start: %v", runErr), stderr, runErr)
	}
	raw, ok, msg, decErr := decodeObject(stdout.Bytes())
	if decErr != nil {
		what := decErr.Error()
		if runErr != nil {
			what = fmt.Sprintf("%v, and its output is not the protocol's JSON object (%v)", runErr, decErr)
		}
		return nil, fail(code, what, stderr, runErr)
	}
	if !ok {
		if msg == "" {
			msg = "failed without a message"
		}
		if runErr != nil {
			msg += fmt.Sprintf(" (%v)", runErr)
		}
		return nil, fail(code, msg, stderr, runErr)
	}
	return raw, nil
}

// childEnv returns env with NCCL_NVLS_ENABLE=0 (replacing any other value).
func childEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "NCCL_NVLS_ENABLE=") {
			out = append(out, kv)
		}
	}
	return append(out, "NCCL_NVLS_ENABLE=0")
}

// decodeObject checks that b is exactly one JSON object with a boolean "ok" and returns it
// with ok and "error".
func decodeObject(b []byte) (raw json.RawMessage, ok bool, msg string, err error) {
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return nil, false, "", errors.New("printed nothing on stdout (want one JSON object)")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&raw); err != nil || len(raw) == 0 || raw[0] != '{' {
		return nil, false, "", fmt.Errorf("printed something other than a JSON object on stdout: %q", clip(trimmed, 200))
	}
	if dec.InputOffset() != int64(len(trimmed)) {
		return nil, false, "", fmt.Errorf("printed more than one JSON object on stdout: %q", clip(trimmed, 200))
	}
	var head struct {
		OK    *bool           `json:"ok"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.OK == nil {
		return nil, false, "", fmt.Errorf("printed a JSON object without a boolean \"ok\": %q", clip(trimmed, 200))
	}
	if len(head.Error) > 0 && string(head.Error) != "null" {
		var s string
		if json.Unmarshal(head.Error, &s) == nil {
			msg = s
		} else {
			msg = string(head.Error)
		}
	}
	return raw, *head.OK, msg, nil
}

func clip(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

// boundedBuffer keeps up to limit bytes; past that it calls onOverflow (which kills the
// process) and discards the rest, so a runaway child can neither fill memory nor block on a
// full pipe.
type boundedBuffer struct {
	mu         sync.Mutex
	buf        bytes.Buffer
	limit      int
	over       bool
	onOverflow func()
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.over {
		return len(p), nil
	}
	if b.buf.Len()+len(p) > b.limit {
		b.over = true
		b.onOverflow()
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *boundedBuffer) overflowed() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.over }
func (b *boundedBuffer) Bytes() []byte    { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.Bytes() }

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	mu   sync.Mutex
	buf  []byte
	max  int
	lost bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		t.lost = true
		return n, nil
	}
	if drop := len(t.buf) + len(p) - t.max; drop > 0 {
		t.buf = append(t.buf[:0], t.buf[drop:]...)
		t.lost = true
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost {
		return "…" + string(t.buf)
	}
	return string(t.buf)
}

// Version is a version field of the protocol, which a runtime may print as a string ("12.4")
// or as CUDA's integer (12040); it is kept as text either way.
type Version string

// UnmarshalJSON accepts a string or a number.
func (v *Version) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*v = Version(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("version: want a string or a number, got %s", b)
	}
	*v = Version(n.String())
	return nil
}

// String returns CUDA's integer versions (major·1000 + minor·10) as "major.minor" and other
// text unchanged.
func (v Version) String() string {
	if n, err := strconv.Atoi(string(v)); err == nil && n >= 1000 {
		return fmt.Sprintf("%d.%d", n/1000, n%1000/10)
	}
	return string(v)
}

// Device is one GPU of `odyssey-rt info`.
type Device struct {
	Index       int    `json:"index"`
	Name        string `json:"name"`
	CC          string `json:"cc"`
	SMs         int    `json:"sms"`
	MemoryBytes int64  `json:"memory_bytes"`
	L2Bytes     int64  `json:"l2_bytes"`
	ClockKHz    int64  `json:"clock_khz"`
	MemClockKHz int64  `json:"mem_clock_khz"`
	BusWidth    int    `json:"bus_width"`
}

// Info is the answer of `odyssey-rt info`.
type Info struct {
	OK             bool     `json:"ok"`
	RuntimeVersion string   `json:"runtime_version"`
	CUDARuntime    Version  `json:"cuda_runtime"`
	CUDADriver     Version  `json:"cuda_driver"`
	Devices        []Device `json:"devices"`
}

// GEMMTestCase is one case's result of `odyssey-rt test gemm`.
type GEMMTestCase struct {
	Name          string  `json:"name"`
	Kernel        string  `json:"kernel"`
	Passed        bool    `json:"passed"`
	AccMismatches int64   `json:"acc_mismatches"`
	YMaxULP       float64 `json:"y_max_ulp"`
	Message       string  `json:"message"`
}

// GEMMTest is the answer of `odyssey-rt test gemm --cases DIR`.
type GEMMTest struct {
	OK     bool           `json:"ok"`
	Cases  []GEMMTestCase `json:"cases"`
	Passed int            `json:"passed"`
	Failed int            `json:"failed"`
}

// GEMMBenchRow is one measured (shape, M, kernel) of `odyssey-rt bench gemm`.
type GEMMBenchRow struct {
	N              int     `json:"n"`
	K              int     `json:"k"`
	M              int     `json:"m"`
	Kernel         string  `json:"kernel"`
	US             float64 `json:"us"`
	TOPS           float64 `json:"tops"`
	GBs            float64 `json:"gbs"`
	PctMemoryFloor float64 `json:"pct_memory_floor"`
	PctPeak        float64 `json:"pct_peak"`
}

// GEMMBench is the answer of `odyssey-rt bench gemm`.
type GEMMBench struct {
	OK               bool           `json:"ok"`
	GPU              string         `json:"gpu"`
	Driver           Version        `json:"driver"`
	CUDA             Version        `json:"cuda"`
	CopyBandwidthGBs float64        `json:"copy_bandwidth_gbs"`
	Rows             []GEMMBenchRow `json:"rows"`
}

// GetInfo runs `odyssey-rt info`.
func GetInfo(ctx context.Context, path string) (*Info, json.RawMessage, error) {
	return runTyped[Info](ctx, RunOptions{}, path, "info")
}

// TestGEMM runs `odyssey-rt test gemm --cases DIR`, streaming the runtime's stderr to
// opts.Stderr.
func TestGEMM(ctx context.Context, opts RunOptions, path, casesDir string) (*GEMMTest, json.RawMessage, error) {
	res, raw, err := runTyped[GEMMTest](ctx, opts, path, "test", "gemm", "--cases", casesDir)
	if err == nil && res.Passed+res.Failed != len(res.Cases) {
		// Count from the cases rather than trust two numbers that disagree with them.
		res.Passed, res.Failed = 0, 0
		for _, c := range res.Cases {
			if c.Passed {
				res.Passed++
			} else {
				res.Failed++
			}
		}
	}
	return res, raw, err
}

// BenchOptions are the flags of `odyssey-rt bench gemm`, passed through.
type BenchOptions struct {
	Shapes string // "N×K,..." (ASCII x accepted); "" = the runtime's default
	M      string // "1,16,..."; "" = the runtime's default
	Sweep  bool   // time every tile config and split too (for the dispatch table)
	Iters  int    // timed samples per kernel; 0 = the runtime's default (100)
	MD     string // also write a markdown table to this file
}

// BenchGEMM runs `odyssey-rt bench gemm`.
func BenchGEMM(ctx context.Context, opts RunOptions, path string, b BenchOptions) (*GEMMBench, json.RawMessage, error) {
	args := []string{"bench", "gemm"}
	if b.Shapes != "" {
		args = append(args, "--shapes", b.Shapes)
	}
	if b.M != "" {
		args = append(args, "--m", b.M)
	}
	if b.Sweep {
		args = append(args, "--sweep")
	}
	if b.Iters > 0 {
		args = append(args, "--iters", strconv.Itoa(b.Iters))
	}
	if b.MD != "" {
		args = append(args, "--md", b.MD)
	}
	return runTyped[GEMMBench](ctx, opts, path, args...)
}

func runTyped[T any](ctx context.Context, opts RunOptions, path string, args ...string) (*T, json.RawMessage, error) {
	raw, err := RunWith(ctx, opts, path, args...)
	if err != nil {
		return nil, nil, err
	}
	v := new(T)
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, raw, &RuntimeError{Path: path, Args: args, ExitCode: 0,
			Message: fmt.Sprintf("answer does not match the protocol of docs/gemm-cases.md: %v", err), Err: err}
	}
	return v, raw, nil
}
