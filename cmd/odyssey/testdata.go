package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/odyssey-llm/odyssey/gpu"
	"github.com/odyssey-llm/odyssey/synth"
	"github.com/spf13/cobra"
)

type synthOptions struct {
	shape    string
	layers   int
	out      string
	seed     uint64
	shardMiB int64
	force    bool
	asJSON   bool
}

func newTestdataCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "testdata",
		Short: "Make test inputs (synthetic checkpoints for speed work, the CUDA runtime's test cases)",
	}
	o := &synthOptions{}
	synthCmd := &cobra.Command{
		Use:   "synth --shape NAME --out DIR",
		Short: "Write a random-weight fp16 checkpoint with a real model's dimensions",
		Long: `Synth writes config.json and an fp16 safetensors checkpoint with random weights and the
dimensions of a real model (no tokenizer), for measuring quantization speed and memory on
realistic shapes. --layers cuts the depth so a 2-layer LLaMA-2-7B slice takes seconds; the
per-layer cost then projects to the full model. Shapes: ` + strings.Join(synth.ShapeNames(), ", ") + `.`,
		Example: "  odyssey testdata synth --shape llama2-7b --layers 2 --out /tmp/llama2-7b-2l",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			shape, ok := synth.Shapes[o.shape]
			if !ok {
				return usageErrorf("unknown --shape %q (want one of: %s)", o.shape, strings.Join(synth.ShapeNames(), ", "))
			}
			if o.out == "" {
				return usageErrorf("testdata synth needs --out DIR")
			}
			if o.layers < 0 || o.shardMiB < 0 {
				return usageErrorf("--layers and --shard-mib must not be negative")
			}
			if err := checkOutputClear("--out", o.out, []protectedPath{workingDir()}); err != nil {
				return err
			}
			stage, err := stageOutput(o.out, o.force, func(dir string) error {
				return replaceableDir(dir, isSynthCheckpoint, "synthetic checkpoint (testdata synth)")
			})
			if err != nil {
				return err
			}
			defer stage.Abort()
			defer onForcedExit(stage.Abort)() // synth does not stop on Ctrl-C; a second one ends it
			bar := newProgress(g.errOut, o.asJSON, 100, "writing "+o.shape, "%")
			start := time.Now()
			err = synth.Write(stage.tmp, synth.Options{
				Shape: shape, Layers: o.layers, Seed: o.seed, MaxShardSize: o.shardMiB << 20,
				Progress: func(done, total int64) { bar.Set(100*done/max(total, 1), "") },
			})
			bar.Done()
			if err != nil {
				return err
			}
			if err := stage.Commit(); err != nil {
				return err
			}
			secs := time.Since(start).Seconds()
			if o.asJSON {
				return writeJSON(g.out, map[string]any{"out": o.out, "shape": o.shape, "layers": max(o.layers, 0), "seconds": secs})
			}
			_, err = fmt.Fprintf(g.out, "wrote %s (%s shape) in %.1f s\n", o.out, o.shape, secs)
			return err
		},
	}
	f := synthCmd.Flags()
	f.StringVar(&o.shape, "shape", "", "model shape: "+strings.Join(synth.ShapeNames(), ", "))
	f.IntVar(&o.layers, "layers", 0, "number of decoder layers (0: the shape's own)")
	f.StringVar(&o.out, "out", "", "output folder")
	f.Uint64Var(&o.seed, "seed", 0, "random seed")
	f.Int64Var(&o.shardMiB, "shard-mib", 0, "maximum shard size in MiB (0: one file)")
	f.BoolVar(&o.force, "force", false, "replace an existing output folder: an earlier synthetic checkpoint or an empty folder")
	f.BoolVar(&o.asJSON, "json", false, "print machine-readable JSON")
	_ = synthCmd.MarkFlagRequired("shape")
	_ = synthCmd.MarkFlagRequired("out")
	cmd.AddCommand(synthCmd, newGEMMCasesCmd(g))
	cmd.AddCommand(newCodecCasesCmd(g)) // testdata_codec.go
	return cmd
}

type gemmCasesOptions struct {
	out    string
	seed   uint64
	force  bool
	asJSON bool
}

// newGEMMCasesCmd is `odyssey testdata gemm-cases`: the CUDA runtime's test cases, with the
// expected results from the Go references (docs/gemm-cases.md).
func newGEMMCasesCmd(g *globalOptions) *cobra.Command {
	o := &gemmCasesOptions{}
	cmd := &cobra.Command{
		Use:   "gemm-cases --out DIR",
		Short: "Write the CUDA runtime's W4A8 GEMM and activation test cases",
		Long: `Gemm-cases writes manifest.json and one safetensors file per case: int8 activations, packed
int4 weights with their integer and float scales, and the expected int32 accumulators and fp16
outputs computed by the Go scalar references (docs/gemm-cases.md), including a case whose
accumulator reaches the largest possible overflow bound. odyssey-rt test gemm --cases DIR
compares the CUDA kernels against them; odyssey runtime test does both steps.`,
		Example: "  odyssey testdata gemm-cases --out /tmp/gemm-cases\n  runtime/build/odyssey-rt test gemm --cases /tmp/gemm-cases",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeCaseDir(g, o, caseKind{
				command: "gemm-cases", what: "GEMM test cases",
				isOurs: func(d string) bool { _, err := gpu.ReadManifest(d); return err == nil },
				write:  gpu.WriteGEMMCases,
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "output folder")
	f.Uint64Var(&o.seed, "seed", 0, "random seed")
	f.BoolVar(&o.force, "force", false, "replace an existing output folder")
	f.BoolVar(&o.asJSON, "json", false, "print machine-readable JSON")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// caseKind is one kind of the runtime's test-case folders (gemm-cases, codec-cases).
type caseKind struct {
	command string                // the testdata subcommand, for messages
	what    string                // "GEMM test cases", for messages
	isOurs  func(dir string) bool // an earlier folder of this kind, which --force may replace
	write   func(dir string, o gpu.CaseOptions) error
}

// writeCaseDir writes a case folder the way every testdata command writes its output: refused
// when it would overlap the working directory, staged in a temporary folder and renamed when
// complete, and replaced with --force only when it is an earlier folder of the same kind (or
// empty).
func writeCaseDir(g *globalOptions, o *gemmCasesOptions, k caseKind) error {
	if o.out == "" {
		return usageErrorf("testdata %s needs --out DIR", k.command)
	}
	if err := checkOutputClear("--out", o.out, []protectedPath{workingDir()}); err != nil {
		return err
	}
	stage, err := stageOutput(o.out, o.force, func(dir string) error {
		return replaceableDir(dir, k.isOurs, "set of "+k.what+" (testdata "+k.command+")")
	})
	if err != nil {
		return err
	}
	defer stage.Abort()
	start := time.Now()
	if err := k.write(stage.tmp, gpu.CaseOptions{Seed: o.seed}); err != nil {
		return err
	}
	n, size, err := casesSize(stage.tmp)
	if err != nil {
		return err
	}
	if err := stage.Commit(); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	if o.asJSON {
		return writeJSON(g.out, map[string]any{"out": o.out, "cases": n, "bytes": size, "seed": o.seed, "seconds": secs})
	}
	_, err = fmt.Fprintf(g.out, "wrote %d %s (%s) to %s in %.1f s\n", n, k.what, humanBytes(size), o.out, secs)
	return err
}

// casesSize returns the number of cases in dir's manifest and the bytes of the folder.
func casesSize(dir string) (int, int64, error) {
	man, err := gpu.ReadManifest(dir)
	if err != nil {
		return 0, 0, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	var size int64
	for _, e := range ents {
		if info, err := e.Info(); err == nil {
			size += info.Size()
		}
	}
	return len(man.Cases), size, nil
}
