package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/odyssey-llm/odyssey/gpu"
	"github.com/spf13/cobra"
)

func newBenchCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure kernel speed on the GPU (through the CUDA runtime)",
	}
	cmd.AddCommand(newBenchGEMMCmd(g))
	return cmd
}

type benchGEMMOptions struct {
	runtime string
	shapes  string
	m       string
	timeout time.Duration
	asJSON  bool
	out     string
	md      string
	sweep   bool
	iters   int
}

func newBenchGEMMCmd(g *globalOptions) *cobra.Command {
	o := &benchGEMMOptions{}
	cmd := &cobra.Command{
		Use:   "gemm",
		Short: "Time the W4A8 GEMM kernels against the memory floor and the peak",
		Long: `Bench gemm runs odyssey-rt bench gemm and prints a markdown table: time per GEMM (µs), TOP/s,
GB/s of weight traffic, the percentage of the memory floor (the time to read the weights at the
measured copy bandwidth) and of the tensor cores' peak. --shapes and --m are passed through;
the runtime's defaults are LLaMA-2-7B's linears and M = 1..4096.`,
		Example: "  odyssey bench gemm\n  odyssey bench gemm --shapes 4096x4096,11008x4096 --m 1,16,256 --out bench.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBenchGEMM(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.runtime, "runtime", "", "the odyssey-rt binary (default: $ODYSSEY_RT, runtime/build/odyssey-rt, PATH)")
	f.StringVar(&o.shapes, "shapes", "", "weight shapes N×K (or NxK), comma-separated (default: the runtime's)")
	f.StringVar(&o.m, "m", "", "numbers of rows M, comma-separated (default: the runtime's)")
	f.DurationVar(&o.timeout, "timeout", time.Hour, "give up after this long")
	f.BoolVar(&o.asJSON, "json", false, "print the runtime's JSON instead of the table")
	f.StringVar(&o.out, "out", "", "also write the runtime's JSON to this file")
	f.StringVar(&o.md, "md", "", "also write the runtime's markdown table (with the goals) to this file")
	f.BoolVar(&o.sweep, "sweep", false, "also time every tile configuration and split-K factor (for the dispatch table)")
	f.IntVar(&o.iters, "iters", 0, "timed samples per kernel, median reported (default: the runtime's, 100)")
	return cmd
}

func runBenchGEMM(ctx context.Context, g *globalOptions, o *benchGEMMOptions) error {
	if err := checkTimeout(o.timeout); err != nil {
		return err
	}
	if o.iters != 0 && o.iters < 5 {
		return usageErrorf("--iters must be at least 5 (the median of fewer samples is noise)")
	}
	shapes, err := parseShapes(o.shapes)
	if err != nil {
		return err
	}
	ms, err := parsePositiveList("--m", o.m)
	if err != nil {
		return err
	}
	rt, err := findRuntime(o.runtime)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	res, raw, err := gpu.BenchGEMM(ctx, gpu.RunOptions{Stderr: g.errOut}, rt, gpu.BenchOptions{Shapes: shapes, M: ms, Sweep: o.sweep, Iters: o.iters, MD: o.md})
	if err != nil {
		return err
	}
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return err
		}
		if err := writeRaw(f, raw); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if o.asJSON {
		return writeRaw(g.out, raw)
	}
	return printBench(g.out, res)
}

// parseShapes checks "N×K,..." and returns it with ASCII x, the spelling the runtime parses.
func parseShapes(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	var out []string
	for _, sh := range strings.Split(s, ",") {
		sh = strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(sh, "×", "x"), "X", "x"))
		n, k, ok := strings.Cut(sh, "x")
		nv, err1 := strconv.Atoi(n)
		kv, err2 := strconv.Atoi(k)
		if !ok || err1 != nil || err2 != nil || nv <= 0 || kv <= 0 {
			return "", usageErrorf("--shapes: %q is not N×K with positive integers (e.g. 4096x11008)", sh)
		}
		out = append(out, fmt.Sprintf("%dx%d", nv, kv))
	}
	return strings.Join(out, ","), nil
}

// parsePositiveList checks a comma-separated list of positive integers.
func parsePositiveList(flag, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	var out []string
	for _, v := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n <= 0 {
			return "", usageErrorf("%s: %q is not a positive integer", flag, v)
		}
		out = append(out, strconv.Itoa(n))
	}
	return strings.Join(out, ","), nil
}

func printBench(w io.Writer, b *gpu.GEMMBench) error {
	fmt.Fprintf(w, "GPU: %s (driver %s, CUDA %s); copy bandwidth %.0f GB/s\n\n", b.GPU, b.Driver, b.CUDA, b.CopyBandwidthGBs)
	fmt.Fprintln(w, "| N | K | M | kernel | µs | TOP/s | GB/s | % memory floor | % peak |")
	fmt.Fprintln(w, "|---:|---:|---:|---|---:|---:|---:|---:|---:|")
	for _, r := range b.Rows {
		fmt.Fprintf(w, "| %d | %d | %d | %s | %.1f | %.2f | %.0f | %.1f | %.1f |\n",
			r.N, r.K, r.M, r.Kernel, r.US, r.TOPS, r.GBs, r.PctMemoryFloor, r.PctPeak)
	}
	return nil
}
