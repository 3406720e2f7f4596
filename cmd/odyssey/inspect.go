package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/spf13/cobra"
)

type inspectOptions struct {
	path    string
	asJSON  bool
	tensors bool
	// tensorsSet is whether --tensors was given: an artifact's tensor table (six tensors
	// per linear) is shown only when asked for, its policy table always.
	tensorsSet bool
}

// inspectReport is what `odyssey inspect --json` prints. Field names are a stable interface.
type inspectReport struct {
	Path       string            `json:"path"`
	Model      *modelSummary     `json:"model,omitempty"`
	Shards     []string          `json:"shards"`
	DTypes     map[string]int64  `json:"dtype_bytes"`
	Parameters int64             `json:"parameters"`
	Bytes      int64             `json:"bytes"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Warnings   []string          `json:"warnings,omitempty"`
	Tensors    []tensorRow       `json:"tensors"`
}

type modelSummary struct {
	Architecture          string   `json:"architecture"`
	ModelType             string   `json:"model_type"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	Layers                int      `json:"num_layers"`
	Heads                 int      `json:"num_heads"`
	KVHeads               int      `json:"num_kv_heads"`
	HeadDim               int      `json:"head_dim"`
	VocabSize             int      `json:"vocab_size"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	RMSNormEps            float64  `json:"rms_norm_eps"`
	RopeTheta             float64  `json:"rope_theta"`
	RopeType              string   `json:"rope_type"`
	RopeScaling           *hf.Rope `json:"rope_scaling,omitempty"`
	TiedEmbeddings        bool     `json:"tied_embeddings"`
	AttentionBias         bool     `json:"attention_bias"`
	MLPBias               bool     `json:"mlp_bias"`
	SlidingWindow         int      `json:"sliding_window,omitempty"`
	ConfigDType           string   `json:"config_dtype,omitempty"`
	Tokenizer             string   `json:"tokenizer,omitempty"`
}

type tensorRow struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	Bytes int64   `json:"bytes"`
	Shard string  `json:"shard"`
}

func newInspectCmd(g *globalOptions) *cobra.Command {
	o := &inspectOptions{}
	cmd := &cobra.Command{
		Use:   "inspect DIR|FILE",
		Short: "Describe a checkpoint: architecture, config, dtypes, parameters, tensors",
		Long: `Inspect prints what a checkpoint is: for a Hugging Face folder (config.json with one
model.safetensors or shards with model.safetensors.index.json) the architecture and every config
field that changes the computation, the dtypes, the parameter count, the shards and a tensor
table. A single .safetensors file gets the tensor table alone.

For a quantized artifact (odyssey quantize) it prints the scheme, the recipe and calibration it was
made with, a per-layer table of every linear's activation policy, calibrated input range, static
scale, group size, integer-scale amplifiers and weight error, and the size against the fp16
source (the tensor table only with --tensors).`,
		Example: "  odyssey inspect testdata/tiny-llama\n  odyssey inspect ../shared/models/small-llama --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.path = args[0]
			o.tensorsSet = cmd.Flags().Changed("tensors")
			return runInspect(g, o)
		},
	}
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print machine-readable JSON")
	cmd.Flags().BoolVar(&o.tensors, "tensors", true, "include the tensor table")
	return cmd
}

func runInspect(g *globalOptions, o *inspectOptions) error {
	if _, err := os.Stat(o.path); err != nil {
		return badInput(fmt.Errorf("inspect: %w", err))
	}
	dir, cleanup, err := openModelPath(g, o.path)
	if err != nil {
		return err
	}
	defer cleanup()
	st, err := os.Stat(dir)
	if err != nil {
		return badInput(fmt.Errorf("inspect: %w", err))
	}
	if st.IsDir() && artifact.IsArtifact(dir) {
		return inspectArtifact(g, o, dir)
	}
	rep := &inspectReport{Path: o.path, DTypes: map[string]int64{}}
	var ckpt *safetensors.Checkpoint
	if st.IsDir() && fileExists(filepath.Join(dir, "config.json")) {
		m, err := hf.Load(dir)
		if err != nil {
			return badInput(err)
		}
		defer m.Close()
		ckpt = m.Tensors
		rep.Model = summarize(m)
		rep.Warnings = m.Warnings
	} else {
		c, err := safetensors.Open(dir)
		if err != nil {
			return badInput(err)
		}
		defer c.Close()
		ckpt = c
	}
	rep.Metadata = ckpt.Metadata()
	shardSet := map[string]bool{}
	for _, t := range ckpt.Tensors() {
		rep.DTypes[string(t.DType)] += t.Bytes()
		rep.Parameters += t.NumElements()
		rep.Bytes += t.Bytes()
		shard := filepath.Base(t.File)
		shardSet[shard] = true
		if o.tensors {
			rep.Tensors = append(rep.Tensors, tensorRow{Name: t.Name, DType: string(t.DType), Shape: t.Shape, Bytes: t.Bytes(), Shard: shard})
		}
	}
	for s := range shardSet {
		rep.Shards = append(rep.Shards, s)
	}
	sort.Strings(rep.Shards)
	if rep.Tensors == nil {
		rep.Tensors = []tensorRow{}
	}
	if o.asJSON {
		return writeJSON(g.out, rep)
	}
	return printInspect(g.out, rep)
}

func summarize(m *hf.Model) *modelSummary {
	c := m.Config
	s := &modelSummary{
		Architecture: c.Architecture, ModelType: c.ModelType,
		HiddenSize: c.HiddenSize, IntermediateSize: c.IntermediateSize, Layers: c.NumLayers,
		Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: c.HeadDim, VocabSize: c.VocabSize,
		MaxPositionEmbeddings: c.MaxPositionEmbeddings, RMSNormEps: c.RMSNormEps,
		RopeTheta: c.Rope.Theta, RopeType: c.Rope.Type,
		TiedEmbeddings: m.Tied, AttentionBias: c.AttentionBias, MLPBias: c.MLPBias,
		SlidingWindow: c.SlidingWindow, ConfigDType: c.DType,
	}
	if c.Rope.Type != "" && c.Rope.Type != "default" {
		r := c.Rope
		s.RopeScaling = &r
	}
	if m.TokenizerPath != "" {
		s.Tokenizer = filepath.Base(m.TokenizerPath)
	}
	return s
}

func printInspect(w io.Writer, r *inspectReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "path\t%s\n", r.Path)
	if m := r.Model; m != nil {
		fmt.Fprintf(tw, "architecture\t%s (model_type %s)\n", m.Architecture, m.ModelType)
		fmt.Fprintf(tw, "hidden / intermediate\t%d / %d\n", m.HiddenSize, m.IntermediateSize)
		fmt.Fprintf(tw, "layers\t%d\n", m.Layers)
		gqa := ""
		if m.KVHeads != m.Heads {
			gqa = fmt.Sprintf(" (GQA, %d query heads per KV head)", m.Heads/max(m.KVHeads, 1))
		}
		fmt.Fprintf(tw, "heads / kv heads / head_dim\t%d / %d / %d%s\n", m.Heads, m.KVHeads, m.HeadDim, gqa)
		fmt.Fprintf(tw, "vocab\t%d\n", m.VocabSize)
		fmt.Fprintf(tw, "max positions\t%d\n", m.MaxPositionEmbeddings)
		fmt.Fprintf(tw, "rms_norm_eps\t%g\n", m.RMSNormEps)
		rope := fmt.Sprintf("theta %g, %s", m.RopeTheta, m.RopeType)
		if s := m.RopeScaling; s != nil && s.Type == "llama3" {
			rope += fmt.Sprintf(" (factor %g, low %g, high %g, original max %d)", s.Factor, s.LowFreqFactor, s.HighFreqFactor, s.OriginalMaxPositionEmbeddings)
		} else if s != nil {
			rope += fmt.Sprintf(" (factor %g)", s.Factor)
		}
		fmt.Fprintf(tw, "rope\t%s\n", rope)
		fmt.Fprintf(tw, "tied embeddings\t%v\n", m.TiedEmbeddings)
		fmt.Fprintf(tw, "biases\tattention %v, mlp %v\n", m.AttentionBias, m.MLPBias)
		if m.SlidingWindow > 0 {
			fmt.Fprintf(tw, "sliding window\t%d\n", m.SlidingWindow)
		}
		tok := m.Tokenizer
		if tok == "" {
			tok = "(none)"
		}
		fmt.Fprintf(tw, "tokenizer\t%s\n", tok)
	}
	var dts []string
	for d, b := range r.DTypes {
		dts = append(dts, fmt.Sprintf("%s %s", d, humanBytes(b)))
	}
	sort.Strings(dts)
	fmt.Fprintf(tw, "dtypes\t%s\n", strings.Join(dts, ", "))
	fmt.Fprintf(tw, "parameters\t%s (%d)\n", humanCount(r.Parameters), r.Parameters)
	fmt.Fprintf(tw, "size\t%s\n", humanBytes(r.Bytes))
	fmt.Fprintf(tw, "shards\t%d: %s\n", len(r.Shards), strings.Join(r.Shards, ", "))
	for _, wn := range r.Warnings {
		fmt.Fprintf(tw, "warning\t%s\n", wn)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Tensors) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	multi := len(r.Shards) > 1
	hdr := "TENSOR\tDTYPE\tSHAPE\tBYTES"
	if multi {
		hdr += "\tSHARD"
	}
	fmt.Fprintln(tw, hdr)
	for _, t := range r.Tensors {
		line := fmt.Sprintf("%s\t%s\t%s\t%s", t.Name, t.DType, shapeString(t.Shape), humanBytes(t.Bytes))
		if multi {
			line += "\t" + t.Shard
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func humanBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
