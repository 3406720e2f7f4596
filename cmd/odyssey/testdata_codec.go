package main

import (
	"github.com/odyssey-llm/odyssey/gpu"
	"github.com/spf13/cobra"
)

// newCodecCasesCmd is `odyssey testdata codec-cases`: the Flash Communication codec cases of
// the CUDA runtime, with the expected wire bytes and outputs from quant.FlashComm
// (docs/codec-cases.md).
func newCodecCasesCmd(g *globalOptions) *cobra.Command {
	o := &gemmCasesOptions{} // the same flags
	cmd := &cobra.Command{
		Use:   "codec-cases --out DIR",
		Short: "Write the CUDA runtime's Flash Communication (compressed all-reduce) test cases",
		Long: `Codec-cases writes manifest.json and one safetensors file per case: the partials of N ranks
(N = 1, 2, 4, 8; INT4 and INT8; groups of 32, 64 and 128; symmetric and asymmetric; and the
specification's test vector), the messages every rank sends after quantizing (step 1), the
requantized reduced chunks (step 3) and the output every rank must end with, all computed by the Go
reference quant.FlashComm (docs/flash-communication.md, docs/codec-cases.md).
odyssey-rt test codec --cases DIR runs the CUDA kernels on them, simulating the ranks on one
GPU, and compares bit for bit.`,
		Example: "  odyssey testdata codec-cases --out /tmp/codec-cases\n  runtime/build/odyssey-rt test codec --cases /tmp/codec-cases",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeCaseDir(g, o, caseKind{
				command: "codec-cases", what: "codec test cases",
				isOurs: gpu.IsCodecCases, write: gpu.WriteCodecCases,
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "output folder")
	f.Uint64Var(&o.seed, "seed", 0, "random seed")
	f.BoolVar(&o.force, "force", false, "replace an existing output folder (an earlier set of codec cases, or an empty folder)")
	f.BoolVar(&o.asJSON, "json", false, "print machine-readable JSON")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
