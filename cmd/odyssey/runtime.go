package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/odyssey-llm/odyssey/gpu"
	"github.com/spf13/cobra"
)

// The runtime commands drive the CUDA runtime (odyssey-rt) as a subprocess through package
// gpu. Every one is bounded by --timeout, so a wedged driver or a runtime waiting on a GPU
// that never frees cannot hang a script; when no runtime is built, or it finds no GPU, they
// fail at once with a sentence saying what to do.

func newRuntimeCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runtime",
		Short: "Build, inspect and test the CUDA runtime (odyssey-rt)",
		Long: `The CUDA runtime (runtime/, binary odyssey-rt) runs the W4A8 FastGEMM kernels on an NVIDIA GPU.
odyssey finds it with --runtime PATH, $ODYSSEY_RT, runtime/build/odyssey-rt of the checkout,
beside the odyssey executable, or on $PATH.`,
	}
	cmd.AddCommand(newRuntimeBuildCmd(g), newRuntimeInfoCmd(g), newRuntimeTestCmd(g))
	return cmd
}

// findRuntime wraps gpu.Find: a --runtime or $ODYSSEY_RT that names no executable is the
// user's mistake (exit 2); a runtime found nowhere is a failure (exit 1) with the fix.
func findRuntime(explicit string) (string, error) {
	p, err := gpu.Find(explicit)
	if errors.Is(err, gpu.ErrBadPath) {
		return "", &exitError{code: exitUsage, err: err}
	}
	return p, err
}

func checkTimeout(d time.Duration) error {
	if d <= 0 {
		return usageErrorf("--timeout must be positive (got %v)", d)
	}
	return nil
}

type runtimeBuildOptions struct {
	source, buildDir, cutlass string
	jobs                      int
	asJSON                    bool
}

func newRuntimeBuildCmd(g *globalOptions) *cobra.Command {
	o := &runtimeBuildOptions{}
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build odyssey-rt with CMake and nvcc",
		Long: `Build configures and compiles the CUDA runtime: cmake -S runtime -B runtime/build
-DCMAKE_BUILD_TYPE=Release, then cmake --build. It needs the CUDA toolkit ≥ 12.4 (nvcc on PATH,
or CUDA_HOME / CUDACXX) and CMake ≥ 3.24; what is missing is reported before anything runs.
The tools' output streams to stderr.`,
		Example: "  odyssey runtime build\n  odyssey runtime build --cutlass ~/src/cutlass",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.jobs < 0 {
				return usageErrorf("--jobs must not be negative")
			}
			start := time.Now()
			plan, err := gpu.PlanBuild(gpu.BuildOptions{Source: o.source, BuildDir: o.buildDir, CutlassDir: o.cutlass, Jobs: o.jobs})
			if err != nil {
				return err
			}
			if err := plan.Run(cmd.Context(), g.errOut); err != nil {
				return err
			}
			secs := time.Since(start).Seconds()
			if o.asJSON {
				return writeJSON(g.out, map[string]any{"binary": plan.Binary, "source": plan.Source, "build_dir": plan.BuildDir,
					"nvcc": plan.NVCC, "cmake": plan.CMake, "seconds": secs})
			}
			_, err = fmt.Fprintf(g.out, "built %s in %.0f s\n", plan.Binary, secs)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.source, "source", "", "the runtime's source folder (default: runtime/ of the checkout)")
	f.StringVar(&o.buildDir, "build-dir", "", "CMake build folder (default: SOURCE/build, where odyssey looks for the binary)")
	f.StringVar(&o.cutlass, "cutlass", "", "a CUTLASS checkout (passed as -DODYSSEY_CUTLASS_DIR)")
	f.IntVarP(&o.jobs, "jobs", "j", 0, "parallel compile jobs (0: the number of CPUs)")
	f.BoolVar(&o.asJSON, "json", false, "print machine-readable JSON")
	return cmd
}

type runtimeInfoOptions struct {
	runtime string
	timeout time.Duration
	asJSON  bool
}

func newRuntimeInfoCmd(g *globalOptions) *cobra.Command {
	o := &runtimeInfoOptions{}
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show the GPUs, driver and CUDA versions the runtime sees",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTimeout(o.timeout); err != nil {
				return err
			}
			rt, err := findRuntime(o.runtime)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			info, raw, err := gpu.GetInfo(ctx, rt)
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeRaw(g.out, raw)
			}
			if err := printInfo(g.out, rt, info); err != nil {
				return err
			}
			if len(info.Devices) == 0 {
				return errors.New("the runtime found no CUDA device")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.runtime, "runtime", "", "the odyssey-rt binary (default: $ODYSSEY_RT, runtime/build/odyssey-rt, PATH)")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up after this long")
	f.BoolVar(&o.asJSON, "json", false, "print the runtime's JSON")
	return cmd
}

func printInfo(w io.Writer, rt string, info *gpu.Info) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "runtime\todyssey-rt %s\t(%s)\n", info.RuntimeVersion, rt)
	fmt.Fprintf(tw, "CUDA\truntime %s, driver %s\t\n", info.CUDARuntime, info.CUDADriver)
	for _, d := range info.Devices {
		fmt.Fprintf(tw, "GPU %d\t%s, compute capability %s, %d SMs, %s memory, %s L2, %.0f MHz, memory %.0f MHz × %d bit\t\n",
			d.Index, d.Name, d.CC, d.SMs, humanBytes(d.MemoryBytes), humanBytes(d.L2Bytes),
			float64(d.ClockKHz)/1000, float64(d.MemClockKHz)/1000, d.BusWidth)
	}
	if len(info.Devices) == 0 {
		fmt.Fprintf(tw, "GPU\tnone\t\n")
	}
	return tw.Flush()
}

// writeRaw prints a JSON object from the runtime indented, as the other --json outputs are.
func writeRaw(w io.Writer, raw json.RawMessage) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return writeJSON(w, v)
}

type runtimeTestOptions struct {
	runtime string
	cases   string
	seed    uint64
	timeout time.Duration
	asJSON  bool
}

func newRuntimeTestCmd(g *globalOptions) *cobra.Command {
	o := &runtimeTestOptions{}
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Test the CUDA kernels against the Go references",
		Long: `Test runs odyssey-rt test gemm on the cases of odyssey testdata gemm-cases (written to a temporary
folder unless --cases names one) and prints every case's result. It exits 1 when any case fails.`,
		Example: "  odyssey runtime test\n  odyssey runtime test --cases /tmp/gemm-cases --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRuntimeTest(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.runtime, "runtime", "", "the odyssey-rt binary (default: $ODYSSEY_RT, runtime/build/odyssey-rt, PATH)")
	f.StringVar(&o.cases, "cases", "", "a folder written by odyssey testdata gemm-cases (default: generate into a temporary folder)")
	f.Uint64Var(&o.seed, "seed", 0, "random seed of the generated cases")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	f.BoolVar(&o.asJSON, "json", false, "print the runtime's JSON")
	return cmd
}

func runRuntimeTest(ctx context.Context, g *globalOptions, o *runtimeTestOptions) error {
	if err := checkTimeout(o.timeout); err != nil {
		return err
	}
	if o.cases != "" && o.seed != 0 {
		return usageErrorf("--seed applies to generated cases, not to --cases %s", o.cases)
	}
	// Find the runtime before writing cases: without one there is nothing to test.
	rt, err := findRuntime(o.runtime)
	if err != nil {
		return err
	}
	dir := o.cases
	if dir == "" {
		tmp, err := os.MkdirTemp("", "odyssey-gemm-cases-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if err := gpu.WriteGEMMCases(tmp, gpu.CaseOptions{Seed: o.seed}); err != nil {
			return err
		}
		dir = tmp
	}
	man, err := gpu.ReadManifest(dir)
	if err != nil {
		return badInput(fmt.Errorf("--cases: %w (write cases with odyssey testdata gemm-cases)", err))
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	res, raw, err := gpu.TestGEMM(ctx, gpu.RunOptions{Stderr: g.errOut}, rt, dir)
	if err != nil {
		return err
	}
	if o.asJSON {
		if err := writeRaw(g.out, raw); err != nil {
			return err
		}
	} else if err := printTest(g.out, res, len(man.Cases)); err != nil {
		return err
	}
	switch {
	case res.Failed > 0:
		return &exitError{code: exitFailure, err: fmt.Errorf("%d of %d GEMM test results failed", res.Failed, len(res.Cases))}
	case len(res.Cases) == 0:
		return fmt.Errorf("the runtime reported no results for the %d cases in %s", len(man.Cases), dir)
	}
	return nil
}

func printTest(w io.Writer, res *gpu.GEMMTest, nCases int) error {
	fmt.Fprintln(w, "| case | kernel | result | acc mismatches | y max ulp | message |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---|")
	for _, c := range res.Cases {
		result := "pass"
		if !c.Passed {
			result = "**FAIL**"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %g | %s |\n", c.Name, c.Kernel, result, c.AccMismatches, c.YMaxULP,
			strings.ReplaceAll(c.Message, "|", `\|`))
	}
	_, err := fmt.Fprintf(w, "\n%d passed, %d failed (%d results for %d cases)\n", res.Passed, res.Failed, len(res.Cases), nCases)
	return err
}
