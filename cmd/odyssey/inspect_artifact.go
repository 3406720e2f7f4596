package main

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/model"
)

// artifactReport is what `odyssey inspect --json` prints for a quantized artifact. Field
// names are a stable interface.
type artifactReport struct {
	Path          string                `json:"path"`
	QuantMethod   string                `json:"quant_method"`
	Format        string                `json:"format"`
	FormatVersion int                   `json:"format_version,omitempty"`
	LayoutVersion int                   `json:"layout_version,omitempty"`
	Model         *modelSummary         `json:"model"`
	Scheme        *artifact.Scheme      `json:"scheme,omitempty"`
	Recipe        *artifact.RecipeInfo  `json:"recipe,omitempty"`
	Calibration   *artifact.Calibration `json:"calibration,omitempty"`
	Tool          *artifact.Tool        `json:"tool,omitempty"`
	Source        *artifact.SourceInfo  `json:"source_model,omitempty"`
	Summary       *artifact.Summary     `json:"summary,omitempty"`
	Notes         []string              `json:"notes,omitempty"`
	Shards        []string              `json:"shards"`
	Bytes         int64                 `json:"bytes"`
	SourceBytes   int64                 `json:"source_fp16_bytes,omitempty"`
	Compression   float64               `json:"compression_ratio,omitempty"`
	Layers        []artifactLinearRow   `json:"linears"`
	Tensors       []tensorRow           `json:"tensors,omitempty"`
}

// artifactLinearRow is one linear of the per-layer policy table.
type artifactLinearRow struct {
	Layer  int    `json:"layer"`
	Linear string `json:"linear"`
	Policy string `json:"policy"`
	// ActRange is the calibrated input range the policy was decided on, and
	// ActRangeAfterLAE what equalization made of it (for LAE inputs).
	ActRange         float32 `json:"act_range,omitempty"`
	ActRangeAfterLAE float32 `json:"act_range_after_lae,omitempty"`
	ActScale         float32 `json:"act_scale"`
	GroupSize        int     `json:"group_size,omitempty"`
	Fallback         bool    `json:"group_fallback,omitempty"`
	AlphaLog2Min     int     `json:"alpha_log2_min,omitempty"`
	AlphaLog2Max     int     `json:"alpha_log2_max,omitempty"`
	WeightError      float64 `json:"weight_error,omitempty"`
}

// inputOf maps a linear to the input record it reads (named by its first consumer).
var inputOf = map[string]string{
	"q_proj": "q_proj", "k_proj": "q_proj", "v_proj": "q_proj", "o_proj": "o_proj",
	"gate_proj": "gate_proj", "up_proj": "gate_proj", "down_proj": "down_proj",
}

// inspectArtifact describes a quantized artifact: its scheme, the per-layer policy table
// and its size against the source's.
func inspectArtifact(g *globalOptions, o *inspectOptions, dir string) error {
	a, err := artifact.Open(dir)
	if err != nil {
		return badInput(err)
	}
	defer a.Close()
	rep := &artifactReport{Path: o.path, QuantMethod: a.Method, Layers: []artifactLinearRow{}}
	c := a.Config
	rep.Model = &modelSummary{Architecture: c.Architecture, ModelType: c.ModelType, HiddenSize: c.HiddenSize,
		IntermediateSize: c.IntermediateSize, Layers: c.NumLayers, Heads: c.NumHeads, KVHeads: c.NumKVHeads,
		HeadDim: c.HeadDim, VocabSize: c.VocabSize, MaxPositionEmbeddings: c.MaxPositionEmbeddings,
		RMSNormEps: c.RMSNormEps, RopeTheta: c.Rope.Theta, RopeType: c.Rope.Type, TiedEmbeddings: c.TieWordEmbeddings,
		AttentionBias: c.AttentionBias, MLPBias: c.MLPBias, SlidingWindow: c.SlidingWindow, ConfigDType: c.DType}
	if a.TokenizerPath != "" {
		rep.Model.Tokenizer = filepath.Base(a.TokenizerPath)
	}
	if a.Method == artifact.QuantMethod {
		rep.Format, rep.FormatVersion, rep.LayoutVersion = a.Quant.Format, a.Quant.FormatVersion, a.Quant.LayoutVersion
		s := a.Quant.Scheme
		rep.Scheme = &s
	} else {
		rep.Format = a.CT.Format
	}
	shards := map[string]bool{}
	for _, t := range a.Tensors.Tensors() {
		rep.Bytes += t.Bytes()
		shards[filepath.Base(t.File)] = true
		if o.tensors && o.tensorsSet {
			rep.Tensors = append(rep.Tensors, tensorRow{Name: t.Name, DType: string(t.DType), Shape: t.Shape, Bytes: t.Bytes(), Shard: filepath.Base(t.File)})
		}
	}
	for s := range shards {
		rep.Shards = append(rep.Shards, s)
	}
	sort.Strings(rep.Shards)
	if p := a.Provenance; p != nil {
		rep.Recipe, rep.Calibration, rep.Tool, rep.Source, rep.Summary, rep.Notes = &p.Recipe, &p.Calibration, &p.Tool, &p.Source, &p.Summary, p.Notes
		if rep.Scheme == nil {
			s := p.Scheme
			if s.Activations.Bits == 8 {
				// compressed-tensors quantizes every input per token at run time; the
				// recipe's policy is what was decided, not what the export computes.
				s.Activations.Policy = "per-token (compressed-tensors; the recipe's " + s.Activations.Policy + " decisions are not carried over)"
				s.Activations.V0, s.Activations.V1 = nil, nil
			}
			rep.Scheme = &s
		}
		rep.SourceBytes = p.Source.FP16Bytes
		for _, l := range p.Layers {
			ranges := map[string][2]float32{}
			for _, in := range l.Inputs {
				ranges[in.Input] = [2]float32{in.Decision.Range, in.Decision.RangeAfterLAE}
			}
			for _, lin := range l.Linears {
				kind := lin.Name[strings.LastIndex(lin.Name, ".")+1:]
				row := artifactLinearRow{Layer: l.Layer, Linear: kind, Policy: lin.Policy, ActScale: lin.ActScale,
					GroupSize: lin.GroupSize, Fallback: lin.GroupFallback, AlphaLog2Min: lin.AlphaLog2Min,
					AlphaLog2Max: lin.AlphaLog2Max, WeightError: lin.WeightError}
				if lin.Skipped {
					row.Policy = "skipped (16-bit)"
				}
				r := ranges[inputOf[kind]]
				row.ActRange = r[0]
				if lin.Policy == artifact.PolicyLAE.String() {
					row.ActRangeAfterLAE = r[1]
				}
				rep.Layers = append(rep.Layers, row)
			}
		}
	} else if a.Method == artifact.QuantMethod {
		// Without odyssey.json the policy table comes from the tensors alone.
		for i := range c.NumLayers {
			for _, k := range model.LayerKinds {
				rep.Layers = append(rep.Layers, tensorRowOf(a.Tensors, i, k))
			}
		}
	}
	if rep.SourceBytes > 0 && rep.Bytes > 0 {
		rep.Compression = float64(rep.SourceBytes) / float64(rep.Bytes)
	}
	if o.asJSON {
		return writeJSON(g.out, rep)
	}
	return printArtifact(g.out, rep)
}

// tensorRowOf reads a linear's policy and static scale from its tensors.
func tensorRowOf(ck *safetensors.Checkpoint, layer int, kind model.LinearKind) artifactLinearRow {
	name := artifact.LinearName(layer, kind)
	row := artifactLinearRow{Layer: layer, Linear: kind.String(), Policy: "skipped (16-bit)"}
	if b, err := ck.Bytes(name + artifact.SuffixPolicy); err == nil && len(b) == 1 {
		row.Policy = artifact.Policy(b[0]).String()
	}
	if b, err := ck.Bytes(name + artifact.SuffixActScale); err == nil && len(b) == 4 {
		v := make([]float32, 1)
		safetensors.F32FromBytes(v, b)
		row.ActScale = v[0]
	}
	return row
}

func printArtifact(w io.Writer, r *artifactReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "path\t%s\n", r.Path)
	if r.QuantMethod == artifact.QuantMethod {
		fmt.Fprintf(tw, "artifact\todyssey %s (format %d, layout %d: docs/fastgemm-layout.md)\n", r.Format, r.FormatVersion, r.LayoutVersion)
	} else {
		fmt.Fprintf(tw, "artifact\t%s %s (export)\n", r.QuantMethod, r.Format)
	}
	m := r.Model
	fmt.Fprintf(tw, "architecture\t%s, %d layers, hidden %d / intermediate %d, heads %d / kv %d\n", m.Architecture, m.Layers, m.HiddenSize, m.IntermediateSize, m.Heads, m.KVHeads)
	if s := r.Scheme; s != nil {
		wdesc := fmt.Sprintf("int%d", s.Weights.Bits)
		if s.Weights.GroupSize > 0 {
			wdesc += fmt.Sprintf(" g%d", s.Weights.GroupSize)
		} else {
			wdesc += " per-channel"
		}
		wdesc += fmt.Sprintf(" %s, %s scales", s.Weights.Method, s.Weights.Scales)
		if s.Weights.Amplifier != "" {
			wdesc += fmt.Sprintf(" (%s α ≤ 2^%d)", s.Weights.Amplifier, s.Weights.Log2Alpha)
		}
		fmt.Fprintf(tw, "weights\t%s\n", wdesc)
		adesc := fmt.Sprintf("int%d", s.Activations.Bits)
		if s.Activations.Bits == 16 {
			adesc = "16-bit (weight-only)"
		} else {
			adesc += ", policy " + s.Activations.Policy
			if s.Activations.V0 != nil && s.Activations.V1 != nil {
				adesc += fmt.Sprintf(" (v0 %g, v1 %g)", *s.Activations.V0, *s.Activations.V1)
			}
		}
		fmt.Fprintf(tw, "activations\t%s\n", adesc)
		e := s.Equalization
		edesc := e.Method
		if e.Statistic != "" {
			edesc += " (" + e.Statistic + ")"
		}
		if len(e.Pairs) > 0 {
			edesc += " on " + strings.Join(e.Pairs, ", ")
		}
		fmt.Fprintf(tw, "equalization\t%s\n", edesc)
	}
	if s := r.Summary; s != nil {
		var pol []string
		for _, k := range sortedKeys(s.Policies) {
			pol = append(pol, fmt.Sprintf("%s %d", k, s.Policies[k]))
		}
		fmt.Fprintf(tw, "linears\t%d quantized (%s), %d kept in 16 bits, %d group-size fallbacks\n", s.Quantized, strings.Join(pol, ", "), len(s.Skipped), len(s.Fallbacks))
		fmt.Fprintf(tw, "weight error\tmean %.4f, max %.4f (relative Frobenius)\n", s.MeanWeightError, s.MaxWeightError)
	}
	if r.Recipe != nil {
		fmt.Fprintf(tw, "recipe\t%s (%s)\n", r.Recipe.Source, r.Recipe.Hash)
	}
	if c := r.Calibration; c != nil {
		fmt.Fprintf(tw, "calibration\t%s\n", c.Describe())
	}
	if t := r.Tool; t != nil {
		rev := ""
		if t.Revision != "" {
			rev = " (" + shortRev(t.Revision) + ")"
		}
		fmt.Fprintf(tw, "made by\t%s %s%s\n", t.Name, t.Version, rev)
	}
	size := fmt.Sprintf("%s in %d shard(s)", humanBytes(r.Bytes), len(r.Shards))
	if r.SourceBytes > 0 {
		size += fmt.Sprintf("; source %s in fp16: %.2f× smaller", humanBytes(r.SourceBytes), r.Compression)
	}
	fmt.Fprintf(tw, "size\t%s\n", size)
	for _, n := range r.Notes {
		fmt.Fprintf(tw, "note\t%s\n", n)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Layers) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "LAYER\tLINEAR\tPOLICY\tACT RANGE\tACT SCALE\tGROUP\tLOG2 α\tWEIGHT ERR")
		for _, l := range r.Layers {
			rng := "-"
			if l.ActRange > 0 {
				rng = fmt.Sprintf("%.4g", l.ActRange)
				if l.ActRangeAfterLAE > 0 {
					rng += fmt.Sprintf(" → %.4g", l.ActRangeAfterLAE)
				}
			}
			scale := "-"
			if l.ActScale > 0 {
				scale = fmt.Sprintf("%.4g", l.ActScale)
			}
			grp := "-"
			if l.GroupSize > 0 {
				grp = fmt.Sprint(l.GroupSize)
				if l.Fallback {
					grp += " (fallback)"
				}
			}
			alpha := "-"
			if l.AlphaLog2Max > 0 {
				alpha = fmt.Sprintf("%d-%d", l.AlphaLog2Min, l.AlphaLog2Max)
			}
			werr := "-"
			if l.WeightError > 0 {
				werr = fmt.Sprintf("%.4f", l.WeightError)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Layer, l.Linear, l.Policy, rng, scale, grp, alpha, werr)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Tensors) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TENSOR\tDTYPE\tSHAPE\tBYTES\tSHARD")
		for _, t := range r.Tensors {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.DType, shapeString(t.Shape), humanBytes(t.Bytes), t.Shard)
		}
		return tw.Flush()
	}
	return nil
}
