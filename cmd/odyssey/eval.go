package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/eval"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/tokenizer"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/spf13/cobra"
)

// evalDataOptions are the flags that choose the text and its windows, shared by ppl and kl so
// both measure exactly the same windows.
type evalDataOptions struct {
	data       string
	format     string
	seqLen     int
	maxWindows int
	batch      int
	force      bool
	asJSON     bool
}

func (o *evalDataOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.data, "data", "", "evaluation text file (required)")
	f.StringVar(&o.format, "format", "", "data format: text or jsonl (a \"text\" field per line); default: by extension")
	f.IntVar(&o.seqLen, "seq-len", 512, "window length L in tokens, BOS included")
	f.IntVar(&o.maxWindows, "max-windows", 0, "evaluate only the first N windows (0: all)")
	f.IntVar(&o.batch, "batch", 0, "windows per forward pass (0: about 1024 tokens per pass)")
	f.BoolVar(&o.force, "force", false, "allow a window longer than the model's max_position_embeddings")
	f.BoolVar(&o.asJSON, "json", false, "print machine-readable JSON")
	_ = cmd.MarkFlagRequired("data")
}

// validate checks what can be checked without reading the model, so a typo fails in
// milliseconds rather than after loading weights.
func (o *evalDataOptions) validate() error {
	if o.format == "" {
		o.format = "text"
		if strings.HasSuffix(strings.ToLower(o.data), ".jsonl") {
			o.format = "jsonl"
		}
	}
	known := false
	for _, f := range eval.Formats {
		known = known || f == o.format
	}
	if !known {
		return usageErrorf("unknown --format %q (want one of: %s)", o.format, strings.Join(eval.Formats, ", "))
	}
	if o.seqLen < 2 {
		return usageErrorf("--seq-len %d is too short: a window scores tokens 1..L-1, so L must be at least 2", o.seqLen)
	}
	if o.maxWindows < 0 || o.batch < 0 {
		return usageErrorf("--max-windows and --batch must not be negative")
	}
	if st, err := os.Stat(o.data); err != nil {
		return badInput(fmt.Errorf("--data: %w", err))
	} else if st.IsDir() {
		return badInput(fmt.Errorf("--data %s is a folder, not a text file", o.data))
	}
	if err := eval.CheckTextFile(o.data); err != nil {
		return badInput(fmt.Errorf("--data: %w", err))
	}
	return nil
}

func (o *evalDataOptions) evalOptions() eval.Options {
	return eval.Options{SeqLen: o.seqLen, MaxWindows: o.maxWindows, BatchWindows: o.batch, Force: o.force}
}

// evalOptionsWithProgress is evalOptions reporting to a progress bar over windows windows on
// errOut (silent with --json), labelled label and the tokens per second; the caller ends the bar
// with Done when the run returns.
func (o *evalDataOptions) evalOptionsWithProgress(errOut io.Writer, windows int, label string) (eval.Options, *progress) {
	opt := o.evalOptions()
	bar := newProgress(errOut, o.asJSON, int64(windows), label, "windows")
	opt.Progress = func(done, total int, tps float64) {
		bar.Set(int64(done), fmt.Sprintf("%s (%.0f tok/s)", label, tps))
	}
	return opt, bar
}

// loadedModel is a model ready to evaluate, with the tokenizer it was trained with. Opened
// (openForEval) it has its configuration and tokenizer; loaded (loadWeights) its weights too.
type loadedModel struct {
	dir string
	// path is the folder the model is read from: dir, or a bundle's extraction.
	path    string
	cfg     hf.Config
	hf      *hf.Model
	art     *artifact.Artifact
	model   *model.Model
	tok     *tokenizer.Tokenizer
	cleanup func()
}

func (l *loadedModel) Close() {
	if l.hf != nil {
		l.hf.Close()
	}
	if l.art != nil {
		l.art.Close()
	}
	if l.cleanup != nil {
		l.cleanup()
	}
}

// loadForEval opens a checkpoint folder and its tokenizer and converts the weights to
// float32, refusing early what the forward pass cannot run.
func loadForEval(g *globalOptions, dir string, o *evalDataOptions) (*loadedModel, error) {
	return loadForEvalChecked(g, dir, o, nil)
}

// loadForEvalChecked is loadForEval with fits, when non-nil, run on the model's
// configuration before any weight is read: a command whose flags must fit the model's
// dimensions fails in milliseconds, not after loading it.
func loadForEvalChecked(g *globalOptions, dir string, o *evalDataOptions, fits func(*hf.Config) error) (*loadedModel, error) {
	l, err := openForEval(g, dir, o, fits)
	if err != nil {
		return nil, err
	}
	if err := l.loadWeights(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// openForEval opens a checkpoint or a quantized artifact (see package artifact) without
// reading its weights: the configuration (which must be supported), the tensor index and the
// tokenizer, with check's refusals (o nil: no tokenizer needed). odyssey verify stops here
// and hands the folder to the GPU.
func openForEval(g *globalOptions, dir string, o *evalDataOptions, fits func(*hf.Config) error) (*loadedModel, error) {
	path, cleanup, err := openModelPath(g, dir)
	if err != nil {
		return nil, err
	}
	l := &loadedModel{dir: dir, path: path, cleanup: cleanup}
	tokPath := ""
	if artifact.IsArtifact(path) {
		if l.art, err = artifact.Open(path); err != nil {
			l.Close()
			return nil, badInput(err)
		}
		l.cfg, tokPath = l.art.Config, l.art.TokenizerPath
	} else {
		if l.hf, err = hf.Load(path); err != nil {
			l.Close()
			return nil, badInput(err)
		}
		l.cfg, tokPath = l.hf.Config, l.hf.TokenizerPath
	}
	if err := l.check(tokPath, o, fits); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// loadWeights converts an opened model's weights to the CPU forward pass's: a quantized
// artifact's quantized linears compute the W4A8 reference arithmetic, so CPU numbers can be
// compared with the GPU kernel's and with the fake-quantized model's.
func (l *loadedModel) loadWeights() error {
	var err error
	if l.art != nil {
		l.model, err = l.art.LoadModel()
		// LoadModel copies what it needs.
		l.art.Close()
		l.art = nil
	} else {
		l.model, err = model.Load(l.hf)
	}
	return badInput(err)
}

// check refuses, before any weight is read, a model without a tokenizer, too short a
// context for the windows or (fits, when non-nil) a configuration the command cannot use,
// and loads the tokenizer.
func (l *loadedModel) check(tokPath string, o *evalDataOptions, fits func(*hf.Config) error) error {
	if fits != nil {
		if err := fits(&l.cfg); err != nil {
			return err
		}
	}
	if o == nil { // no text to run (verify speed: random prompt ids)
		return nil
	}
	if tokPath == "" {
		return badInput(fmt.Errorf("model %s has no tokenizer.json; evaluation needs the model's tokenizer", l.dir))
	}
	if max := l.cfg.MaxPositionEmbeddings; o.seqLen > max && !o.force {
		return badInput(fmt.Errorf("--seq-len %d exceeds %s's max_position_embeddings %d (positions it never saw; add --force to run anyway)", o.seqLen, l.dir, max))
	}
	var err error
	if l.tok, err = tokenizer.Load(tokPath); err != nil {
		return badInput(err)
	}
	return nil
}

// stream reads the data and tokenizes it with l's tokenizer into the evaluation stream.
func (l *loadedModel) stream(o *evalDataOptions) ([]int, error) {
	text, err := eval.LoadText(o.data, o.format)
	if err != nil {
		return nil, badInput(err)
	}
	bos, err := eval.BOS(l.tok, l.cfg)
	if err != nil {
		return nil, badInput(err)
	}
	s := eval.Stream(l.tok, text, bos)
	if len(s) < o.seqLen {
		return nil, badInput(fmt.Errorf("%s has %d tokens (BOS included) with %s's tokenizer; one window needs %d (lower --seq-len or use a longer text)", o.data, len(s), l.dir, o.seqLen))
	}
	return s, nil
}

func newEvalCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Measure a model on text: perplexity, or KL divergence against a reference",
	}
	cmd.AddCommand(newEvalPPLCmd(g), newEvalKLCmd(g))
	return cmd
}

type evalPPLOptions struct {
	model string
	evalDataOptions
}

func newEvalPPLCmd(g *globalOptions) *cobra.Command {
	o := &evalPPLOptions{}
	cmd := &cobra.Command{
		Use:   "ppl --model DIR --data FILE",
		Short: "Perplexity of a model on a text, on CPU",
		Long: `Ppl measures perplexity with the protocol of the project's golden references: the text is
tokenized without special tokens, BOS is put in front, the stream is cut into non-overlapping
windows of --seq-len tokens (the remainder dropped), each window runs alone from position 0, and
tokens 1..L-1 of every window are scored given their prefix.`,
		Example: "  odyssey eval ppl --model testdata/tiny-llama --data testdata/text/sample.txt --seq-len 256\n" +
			"  odyssey eval ppl --model ../shared/models/small-llama --data ../shared/data/wikitext2/wiki.test.raw --max-windows 16 --json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.model == "" {
				return usageErrorf("eval ppl needs --model DIR")
			}
			if err := o.validate(); err != nil {
				return err
			}
			return runEvalPPL(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.model, "model", "", "model folder (required)")
	_ = cmd.MarkFlagRequired("model")
	o.register(cmd)
	return cmd
}

// pplReport is what `odyssey eval ppl --json` prints.
type pplReport struct {
	Model string `json:"model"`
	Data  string `json:"data"`
	*eval.PPLResult
}

func runEvalPPL(ctx context.Context, g *globalOptions, o *evalPPLOptions) error {
	lm, err := loadForEval(g, o.model, &o.evalDataOptions)
	if err != nil {
		return err
	}
	defer lm.Close()
	stream, err := lm.stream(&o.evalDataOptions)
	if err != nil {
		return err
	}
	opt, bar := o.evalOptionsWithProgress(g.errOut, windowsToRun(len(stream), o.seqLen, o.maxWindows), "perplexity")
	res, err := eval.Perplexity(ctx, lm.model, stream, opt)
	bar.Done()
	if err != nil {
		return evalError(err)
	}
	if o.asJSON {
		return writeJSON(g.out, pplReport{Model: o.model, Data: o.data, PPLResult: res})
	}
	tw := tabwriter.NewWriter(g.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s\n", o.model)
	fmt.Fprintf(tw, "data\t%s (%d tokens, BOS included)\n", o.data, res.StreamTokens)
	fmt.Fprintf(tw, "windows\t%d of %d, L = %d, %d tokens scored\n", res.Windows, res.TotalWindows, res.SeqLen, res.TokensScored)
	fmt.Fprintf(tw, "perplexity\t%.4f\n", res.PPL)
	fmt.Fprintf(tw, "time\t%.1f s (%.0f tokens/s)\n", res.Seconds, res.TokensPerSecond)
	return tw.Flush()
}

type evalKLOptions struct {
	ref   string
	model string
	evalDataOptions
}

func newEvalKLCmd(g *globalOptions) *cobra.Command {
	o := &evalKLOptions{}
	cmd := &cobra.Command{
		Use:   "kl --ref DIR --model DIR2 --data FILE",
		Short: "KL divergence and top-1 agreement of a model against a reference, on CPU",
		Long: `Kl runs both models over the same perplexity windows and reports the mean KL divergence
KL(P_ref || P_model) of their next-token distributions (with quantiles), how often their most
likely token agrees, and both perplexities, as llama.cpp's KL-divergence mode does. This is how a
quantized model is compared with its original. The text is tokenized with the reference's tokenizer.`,
		Example: "  odyssey eval kl --ref ../shared/models/small-llama --model ../shared/models/small-llama-outliers --data testdata/text/sample.txt --seq-len 256",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.ref == "" || o.model == "" {
				return usageErrorf("eval kl needs --ref DIR and --model DIR")
			}
			if err := o.validate(); err != nil {
				return err
			}
			return runEvalKL(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.ref, "ref", "", "reference model folder, usually the full-precision original (required)")
	cmd.Flags().StringVar(&o.model, "model", "", "model folder to compare with the reference (required)")
	_ = cmd.MarkFlagRequired("ref")
	_ = cmd.MarkFlagRequired("model")
	o.register(cmd)
	return cmd
}

type klReport struct {
	Ref   string `json:"ref"`
	Model string `json:"model"`
	Data  string `json:"data"`
	*eval.KLResult
}

func runEvalKL(ctx context.Context, g *globalOptions, o *evalKLOptions) error {
	ref, err := loadForEval(g, o.ref, &o.evalDataOptions)
	if err != nil {
		return err
	}
	defer ref.Close()
	m, err := loadForEval(g, o.model, &o.evalDataOptions)
	if err != nil {
		return err
	}
	defer m.Close()
	stream, err := ref.stream(&o.evalDataOptions)
	if err != nil {
		return err
	}
	opt, bar := o.evalOptionsWithProgress(g.errOut, windowsToRun(len(stream), o.seqLen, o.maxWindows), "KL divergence")
	res, err := eval.KL(ctx, ref.model, m.model, stream, opt)
	bar.Done()
	if err != nil {
		return evalError(err)
	}
	if o.asJSON {
		return writeJSON(g.out, klReport{Ref: o.ref, Model: o.model, Data: o.data, KLResult: res})
	}
	return printKL(g.out, o, res)
}

func printKL(w io.Writer, o *evalKLOptions, r *eval.KLResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "reference\t%s\n", o.ref)
	fmt.Fprintf(tw, "model\t%s\n", o.model)
	fmt.Fprintf(tw, "data\t%s (%d tokens, BOS included)\n", o.data, r.StreamTokens)
	fmt.Fprintf(tw, "windows\t%d of %d, L = %d, %d tokens scored\n", r.Windows, r.TotalWindows, r.SeqLen, r.TokensScored)
	fmt.Fprintf(tw, "perplexity\treference %.4f, model %.4f (ln ratio %+.5f)\n", r.RefPPL, r.PPL, r.LnPPLRatio)
	fmt.Fprintf(tw, "mean KL\t%.6f ± %.6f nats\n", r.MeanKL, r.KLStdErr)
	fmt.Fprintf(tw, "KL quantiles\tmedian %.6f, p90 %.6f, p99 %.6f, p99.9 %.6f, max %.6f\n", r.MedianKL, r.P90KL, r.P99KL, r.P999KL, r.MaxKL)
	fmt.Fprintf(tw, "top-1 agreement\t%.4f%%\n", 100*r.Top1Agreement)
	fmt.Fprintf(tw, "time\t%.1f s (%.0f tokens/s)\n", r.Seconds, r.TokensPerSecond)
	return tw.Flush()
}

func windowsToRun(streamLen, seqLen, maxWindows int) int {
	n := streamLen / seqLen
	if maxWindows > 0 && maxWindows < n {
		n = maxWindows
	}
	return n
}

// evalError classifies the evaluation library's errors: cancellation stays cancellation,
// anything else about the inputs is bad input.
func evalError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return badInput(err)
}
