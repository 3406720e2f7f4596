package gpu

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"
)

// Minimum tool versions of the runtime's build, checked here so that an old tool fails with
// a sentence instead of deep inside CMake (CMake 3.24 is the first that understands
// CMAKE_CUDA_ARCHITECTURES=native; runtime/CMakeLists.txt states both requirements).
const (
	MinCMake = "3.24"
	MinCUDA  = "12.4"
)

// BuildOptions controls Build (`odyssey runtime build`).
type BuildOptions struct {
	// Source is the runtime's source folder (holding CMakeLists.txt); "" finds runtime/ of
	// the checkout containing the current directory or the running executable.
	Source string
	// BuildDir is CMake's build folder; "" means Source/build, where Find looks.
	BuildDir string
	// CutlassDir, if set, is passed as -DODYSSEY_CUTLASS_DIR.
	CutlassDir string
	// Jobs is the parallelism of the compile; 0 means the number of CPUs. (CMake's bare -j
	// means unbounded for Makefiles, and a dozen nvcc processes at once can exhaust memory.)
	Jobs int
	// Output receives CMake's and the compiler's output as it is produced.
	Output io.Writer
}

// BuildPlan is what Build will run, resolved and checked.
type BuildPlan struct {
	Source    string   `json:"source"`
	BuildDir  string   `json:"build_dir"`
	CMake     string   `json:"cmake"`
	NVCC      string   `json:"nvcc"`
	Configure []string `json:"configure"` // argv, CMake first
	Compile   []string `json:"compile"`
	Binary    string   `json:"binary"` // the runtime binary the build produces
}

// PrereqError lists everything missing for a build, each with how to get it, so that one
// attempt tells the user the whole story.
type PrereqError struct {
	Missing []string
}

func (e *PrereqError) Error() string {
	return "cannot build the CUDA runtime:\n  - " + strings.Join(e.Missing, "\n  - ")
}

// cudaHomes are the usual install locations of the CUDA toolkit, tried after $PATH. Tests
// clear it so that a machine with CUDA installed still sees "no nvcc".
var cudaHomes = []string{"/usr/local/cuda"}

// PlanBuild finds the source, CMake and nvcc and checks their versions. Everything that is
// missing is reported together in a *PrereqError.
func PlanBuild(opts BuildOptions) (*BuildPlan, error) {
	var missing []string
	p := &BuildPlan{}
	nvcc, err := findNVCC()
	if err != nil {
		missing = append(missing, err.Error())
	} else if v, verr := toolVersion(nvcc, []string{"--version"}, `release (\d+\.\d+)`); verr == nil && versionLess(v, MinCUDA) {
		missing = append(missing, fmt.Sprintf("nvcc %s at %s is older than CUDA %s: install CUDA toolkit ≥ %s from NVIDIA (https://developer.nvidia.com/cuda-downloads) and set CUDA_HOME or CUDACXX", v, nvcc, MinCUDA, MinCUDA))
	}
	p.NVCC = nvcc
	cmake, err := exec.LookPath("cmake")
	if err != nil {
		missing = append(missing, fmt.Sprintf("cmake (≥ %s) is not on $PATH: `apt install cmake` (Ubuntu 24.04 has 3.28) or `pip install cmake`", MinCMake))
	} else if v, verr := toolVersion(cmake, []string{"--version"}, `cmake version (\d+\.\d+)`); verr == nil && versionLess(v, MinCMake) {
		missing = append(missing, fmt.Sprintf("cmake %s at %s is older than %s: `pip install cmake` gives a current one", v, cmake, MinCMake))
	}
	p.CMake = cmake
	src, err := findSource(opts.Source)
	if err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		return nil, &PrereqError{Missing: missing}
	}
	p.Source = src
	p.BuildDir = opts.BuildDir
	if p.BuildDir == "" {
		p.BuildDir = filepath.Join(src, "build")
	}
	p.Configure = []string{cmake, "-S", src, "-B", p.BuildDir, "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CUDA_COMPILER=" + nvcc}
	if opts.CutlassDir != "" {
		p.Configure = append(p.Configure, "-DODYSSEY_CUTLASS_DIR="+opts.CutlassDir)
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = goruntime.NumCPU()
	}
	p.Compile = []string{cmake, "--build", p.BuildDir, "-j", strconv.Itoa(jobs)}
	p.Binary = filepath.Join(p.BuildDir, BinaryName)
	return p, nil
}

// Build configures and compiles the runtime with CMake (`odyssey runtime build`), streaming
// the tools' output to opts.Output.
func Build(ctx context.Context, opts BuildOptions) error {
	p, err := PlanBuild(opts)
	if err != nil {
		return err
	}
	return p.Run(ctx, opts.Output)
}

// Run runs the configure and compile steps and checks that the binary was produced.
func (p *BuildPlan) Run(ctx context.Context, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	for _, argv := range [][]string{p.Configure, p.Compile} {
		fmt.Fprintf(out, "+ %s\n", strings.Join(argv, " "))
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s failed: %v (its output is above)", strings.Join(argv[:2], " "), err)
		}
	}
	if !isExecutable(p.Binary) {
		return fmt.Errorf("the build finished but did not produce %s", p.Binary)
	}
	return nil
}

// findNVCC returns nvcc from $CUDACXX, $CUDA_HOME/bin, $PATH or the usual install folders.
func findNVCC() (string, error) {
	var looked []string
	if c := os.Getenv("CUDACXX"); c != "" {
		if isExecutable(c) {
			return c, nil
		}
		looked = append(looked, "$CUDACXX="+c)
	}
	if h := os.Getenv("CUDA_HOME"); h != "" {
		p := filepath.Join(h, "bin", "nvcc"+exeSuffix())
		if isExecutable(p) {
			return p, nil
		}
		looked = append(looked, p+" ($CUDA_HOME)")
	}
	if p, err := exec.LookPath("nvcc"); err == nil {
		return p, nil
	}
	looked = append(looked, "$PATH")
	for _, h := range cudaHomes {
		p := filepath.Join(h, "bin", "nvcc"+exeSuffix())
		if isExecutable(p) {
			return p, nil
		}
		looked = append(looked, p)
	}
	return "", fmt.Errorf("nvcc (CUDA toolkit ≥ %s) not found (looked at %s): install the CUDA toolkit from NVIDIA "+
		"(https://developer.nvidia.com/cuda-downloads) on a machine with an NVIDIA GPU, then put its bin/ on PATH or set CUDA_HOME",
		MinCUDA, strings.Join(looked, ", "))
}

// findSource returns the runtime's source folder: explicit, or runtime/ under the current
// directory, the checkout containing it, or the checkout containing the executable.
func findSource(explicit string) (string, error) {
	if explicit != "" {
		if !isFile(filepath.Join(explicit, "CMakeLists.txt")) {
			return "", fmt.Errorf("--source %s holds no CMakeLists.txt", explicit)
		}
		return explicit, nil
	}
	var cands []string
	if wd, err := os.Getwd(); err == nil {
		cands = append(cands, filepath.Join(wd, "runtime"))
		if root := repoRoot(wd); root != "" {
			cands = append(cands, filepath.Join(root, "runtime"))
		}
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		if root := repoRoot(filepath.Dir(exe)); root != "" {
			cands = append(cands, filepath.Join(root, "runtime"))
		}
	}
	for _, c := range cands {
		if isFile(filepath.Join(c, "CMakeLists.txt")) {
			return c, nil
		}
	}
	return "", fmt.Errorf("the runtime's source (runtime/CMakeLists.txt) was not found (looked in %s): run from the odyssey checkout or pass --source DIR",
		strings.Join(cands, ", "))
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// toolVersion runs a tool's version command (bounded: a broken tool must not hang the build
// command) and extracts "major.minor" with the pattern.
func toolVersion(path string, args []string, pattern string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(pattern).FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no version in %q", clip(out, 100))
	}
	return string(m[1]), nil
}

// versionLess compares "major.minor" strings numerically.
func versionLess(a, b string) bool {
	part := func(v string, i int) int {
		f := strings.Split(v, ".")
		if i >= len(f) {
			return 0
		}
		n, _ := strconv.Atoi(f[i])
		return n
	}
	for i := 0; i < 2; i++ {
		if x, y := part(a, i), part(b, i); x != y {
			return x < y
		}
	}
	return false
}
