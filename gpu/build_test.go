package gpu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// noTools empties PATH and the CUDA variables, so the build sees no nvcc and no cmake even on
// a machine that has them.
func noTools(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	t.Setenv("CUDACXX", "")
	t.Setenv("CUDA_HOME", "")
	saved := cudaHomes
	cudaHomes = nil
	t.Cleanup(func() { cudaHomes = saved })
	return dir
}

func TestBuildNoTools(t *testing.T) {
	noTools(t)
	err := Build(context.Background(), BuildOptions{Source: t.TempDir()})
	var pe *PrereqError
	if !errors.As(err, &pe) || len(pe.Missing) != 3 {
		t.Fatalf("error %v", err)
	}
	for _, w := range []string{"nvcc (CUDA toolkit ≥ 12.4) not found", "developer.nvidia.com", "CUDA_HOME",
		"cmake (≥ 3.24) is not on $PATH", "apt install cmake", "pip install cmake", "holds no CMakeLists.txt"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

// TestBuildCUDAVariables: a CUDACXX or CUDA_HOME that points at nothing is named in the
// message, so the user sees the setting is wrong.
func TestBuildCUDAVariables(t *testing.T) {
	noTools(t)
	t.Setenv("CUDACXX", "/nonexistent/nvcc")
	t.Setenv("CUDA_HOME", "/nonexistent/cuda")
	_, err := PlanBuild(BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "$CUDACXX=/nonexistent/nvcc") || !strings.Contains(err.Error(), "/nonexistent/cuda/bin/nvcc ($CUDA_HOME)") {
		t.Errorf("error %v", err)
	}
}

func fakeTools(t *testing.T, cmakeVersion, cudaRelease string) (bin, src string) {
	needUnix(t)
	bin = noTools(t)
	writeScript(t, bin, "nvcc", `echo "Cuda compilation tools, release `+cudaRelease+`, V`+cudaRelease+`.77"`)
	// The fake cmake logs its arguments and, for --build, "compiles" the runtime.
	writeScript(t, bin, "cmake", `echo "$@" >> "${0%/*}/cmake.log"
case "$1" in
--version) echo "cmake version `+cmakeVersion+`" ;;
--build) : > "$2/odyssey-rt"; /bin/chmod +x "$2/odyssey-rt" ;;
-S) /bin/mkdir -p "$4"; echo "-- Configuring done" ;;
esac`)
	src = t.TempDir()
	os.WriteFile(filepath.Join(src, "CMakeLists.txt"), []byte("cmake_minimum_required(VERSION 3.24)\n"), 0o644)
	return bin, src
}

func TestBuildOldTools(t *testing.T) {
	_, src := fakeTools(t, "3.22.1", "11.8")
	_, err := PlanBuild(BuildOptions{Source: src})
	var pe *PrereqError
	if !errors.As(err, &pe) || len(pe.Missing) != 2 || !strings.Contains(err.Error(), "cmake 3.22 ") ||
		!strings.Contains(err.Error(), "nvcc 11.8 ") || !strings.Contains(err.Error(), "older than CUDA 12.4") {
		t.Errorf("error %v", err)
	}
}

func TestBuildRuns(t *testing.T) {
	bin, src := fakeTools(t, "3.28.3", "12.6")
	var out strings.Builder
	opts := BuildOptions{Source: src, CutlassDir: "/opt/cutlass", Jobs: 3, Output: &out}
	p, err := PlanBuild(opts)
	if err != nil {
		t.Fatal(err)
	}
	if p.Binary != filepath.Join(src, "build", "odyssey-rt") || p.NVCC != filepath.Join(bin, "nvcc") {
		t.Errorf("plan %+v", p)
	}
	if err := Build(context.Background(), opts); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	log, _ := os.ReadFile(filepath.Join(bin, "cmake.log"))
	want := "-S " + src + " -B " + filepath.Join(src, "build") + " -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER=" +
		filepath.Join(bin, "nvcc") + " -DODYSSEY_CUTLASS_DIR=/opt/cutlass\n--build " + filepath.Join(src, "build") + " -j 3\n"
	if !strings.HasSuffix(string(log), want) {
		t.Errorf("cmake ran with\n%s\nwant it to end with\n%s", log, want)
	}
	if !strings.Contains(out.String(), "-- Configuring done") || !strings.Contains(out.String(), "+ "+filepath.Join(bin, "cmake")+" --build") {
		t.Errorf("output %q", out.String())
	}
	if !isExecutable(p.Binary) {
		t.Error("no binary")
	}
}

// TestBuildFailureReported: a compile that fails returns an error naming the step.
func TestBuildFailureReported(t *testing.T) {
	bin, src := fakeTools(t, "3.28.3", "12.6")
	writeScript(t, bin, "cmake", `case "$1" in --version) echo "cmake version 3.28.3" ;; --build) echo "error: kernel.cu" >&2; exit 2 ;; esac`)
	var out strings.Builder
	err := Build(context.Background(), BuildOptions{Source: src, Output: &out})
	if err == nil || !strings.Contains(err.Error(), "--build failed") || !strings.Contains(out.String(), "error: kernel.cu") {
		t.Errorf("error %v, output %q", err, out.String())
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{{"3.22", "3.24", true}, {"3.24", "3.24", false}, {"3.100", "3.24", false}, {"4", "3.24", false}, {"12", "12.4", true}, {"11.8", "12.4", true}} {
		if versionLess(c.a, c.b) != c.less {
			t.Errorf("versionLess(%s, %s) != %v", c.a, c.b, c.less)
		}
	}
}
