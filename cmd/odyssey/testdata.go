package main

import (
	"fmt"
	"strings"
	"time"

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
		Short: "Make test inputs (synthetic checkpoints for speed work)",
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
	cmd.AddCommand(synthCmd)
	return cmd
}
