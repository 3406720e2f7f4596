package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/quant"
	"github.com/odyssey-llm/odyssey/tpsim"
	"github.com/spf13/cobra"
)

func newSimCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate deployment effects on CPU: a compressed tensor-parallel all-reduce",
	}
	cmd.AddCommand(newSimAllReduceCmd(g))
	return cmd
}

// simAllReduceOptions are the flags of `odyssey sim allreduce`.
type simAllReduceOptions struct {
	model     string
	tp        int
	bits      int
	group     int
	symmetric bool
	evalDataOptions
}

// validate checks the flags that need no model, so that a typo fails at once.
func (o *simAllReduceOptions) validate() error {
	if o.model == "" {
		return usageErrorf("sim allreduce needs --model DIR")
	}
	if o.tp < 1 {
		return usageErrorf("--tp %d: the tensor-parallel degree must be at least 1 (typically 2, 4 or 8)", o.tp)
	}
	switch o.bits {
	case 4, 8, 16:
	default:
		return usageErrorf("--bits %d: want 8 or 4 (quantized all-reduce) or 16 (the uncompressed control)", o.bits)
	}
	if o.bits != 16 && (o.group <= 0 || o.group%8 != 0) {
		return usageErrorf("--group %d: want a positive multiple of 8 (32, 64, 128, ...)", o.group)
	}
	return o.evalDataOptions.validate()
}

func (o *simAllReduceOptions) config() tpsim.Config {
	return tpsim.Config{TP: o.tp, Codec: quant.FlashComm{Bits: o.bits, Group: o.group, Symmetric: o.symmetric}}
}

func newSimAllReduceCmd(g *globalOptions) *cobra.Command {
	o := &simAllReduceOptions{}
	cmd := &cobra.Command{
		Use:   "allreduce --model DIR --data FILE --tp N --bits 8|4|16",
		Short: "Perplexity and KL cost of a Flash Communication (quantized) all-reduce at a TP degree",
		Long: `Allreduce runs the model with its row-parallel linears (o_proj, down_proj) split over --tp
simulated ranks along their input dimension, each rank computing its float32 partial product,
and the partial sums all-reduced through the Flash Communication codec: per-group INT8 or INT4
quantization (asymmetric: scale and minimum; --symmetric: scale only), reduce-scatter, the
integer-scale reduce (the codes summed over ranks exactly in integers with 20-bit integer group
scales), requantization, all-gather (docs/flash-communication.md). --bits 16 is the control:
the same split with the float32 partials summed in rank order.

It reports the perplexity of the split model and of the unsplit model (exact all-reduce) over
the same windows (the protocol of eval ppl), their ratio, and the KL divergence between them.
--model may be a quantized artifact, evaluated with its W4A8 reference linears.

--tp must divide the hidden size and the input sizes of o_proj and down_proj, and the group
must divide hidden/tp: the all-reduce cuts each token's output into tp chunks, and a group may
not straddle two ranks' chunks.`,
		Example: "  odyssey sim allreduce --model testdata/tiny-llama --data testdata/text/sample.txt --tp 8 --bits 8 --group 32 --seq-len 256\n" +
			"  odyssey sim allreduce --model ../shared/models/small-llama --data ../shared/data/wikitext2/wiki.test.raw --tp 4 --bits 4 --group 32 --max-windows 64 --json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return runSimAllReduce(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model folder, bundle or quantized artifact (required)")
	f.IntVar(&o.tp, "tp", 0, "tensor-parallel degree: ranks the row-parallel linears are split over (required)")
	f.IntVar(&o.bits, "bits", 0, "all-reduce codec: 8 or 4 (quantized), 16 (uncompressed control) (required)")
	f.IntVar(&o.group, "group", 128, "values per quantization group along the hidden dimension; must divide hidden/tp")
	f.BoolVar(&o.symmetric, "symmetric", false, "symmetric groups (scale only) instead of asymmetric (scale and minimum)")
	_ = cmd.MarkFlagRequired("model")
	_ = cmd.MarkFlagRequired("tp")
	_ = cmd.MarkFlagRequired("bits")
	o.register(cmd)
	return cmd
}

// simReport is what `odyssey sim allreduce --json` prints.
type simReport struct {
	Model string `json:"model"`
	Data  string `json:"data"`
	*tpsim.Result
}

func runSimAllReduce(ctx context.Context, g *globalOptions, o *simAllReduceOptions) error {
	c := o.config()
	lm, err := loadForEvalChecked(g, o.model, &o.evalDataOptions, func(cfg *hf.Config) error {
		if err := tpsim.CheckConfig(cfg, c); err != nil {
			return badInput(fmt.Errorf("%s: %w", o.model, err))
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer lm.Close()
	stream, err := lm.stream(&o.evalDataOptions)
	if err != nil {
		return err
	}
	opt, bar := o.evalOptionsWithProgress(g.errOut, windowsToRun(len(stream), o.seqLen, o.maxWindows), fmt.Sprintf("TP %d all-reduce", o.tp))
	res, err := tpsim.Compare(ctx, lm.model, c, stream, opt)
	bar.Done()
	if err != nil {
		return evalError(err)
	}
	if o.asJSON {
		return writeJSON(g.out, simReport{Model: o.model, Data: o.data, Result: res})
	}
	return printSim(g.out, o, res)
}

func printSim(w io.Writer, o *simAllReduceOptions, r *tpsim.Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s\n", o.model)
	fmt.Fprintf(tw, "data\t%s\n", o.data)
	fmt.Fprintf(tw, "windows\t%d of %d, L = %d, %d tokens scored\n", r.Windows, r.TotalWindows, r.SeqLen, r.TokensScored)
	codec := "uncompressed control (float32 partials, exact float32 sum)"
	if r.Bits != 16 {
		kind := "asymmetric (scale + min)"
		if r.Symmetric {
			kind = "symmetric (scale)"
		}
		codec = fmt.Sprintf("INT%d, groups of %d, %s, %.4f bytes/value (%.2fx less than 16-bit)", r.Bits, r.Group, kind, r.BytesPerElement, r.Compression)
	}
	fmt.Fprintf(tw, "all-reduce\tTP %d, %s\n", r.TP, codec)
	fmt.Fprintf(tw, "perplexity\texact all-reduce %.4f, simulated %.4f (ratio %.6f, %+.4f%%)\n", r.PPLReference, r.PPL, r.Ratio, 100*(r.Ratio-1))
	fmt.Fprintf(tw, "mean KL\t%.3g ± %.2g nats (p99 %.3g, max %.3g)\n", r.KLMean, r.KLStdErr, r.KLP99, r.KLMax)
	fmt.Fprintf(tw, "top-1 agreement\t%.4f%%\n", 100*r.Top1Agreement)
	fmt.Fprintf(tw, "time\t%.1f s\n", r.Seconds)
	return tw.Flush()
}
