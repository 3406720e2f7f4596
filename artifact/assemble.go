package artifact

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/quant"
)

// Output formats Finish can assemble.
const (
	OutputOdyssey           = "odyssey"
	OutputCompressedTensors = "compressed-tensors"
)

// FinishOptions describe the artifact beyond its layers.
type FinishOptions struct {
	// Output is OutputOdyssey (default) or OutputCompressedTensors.
	Output string
	// ShardSize caps the tensor bytes of one model-NNNNN-of-NNNNN.safetensors file; 0 means
	// one model.safetensors.
	ShardSize int64
	Tool      Tool
	Recipe    RecipeInfo
	// SourcePath is the model folder as the user gave it, for odyssey.json.
	SourcePath string
	Scheme     Scheme
	Notes      []string
	// NoSync skips the fsync of the artifact's weight files (safetensors.WriterOptions.NoSync).
	NoSync bool
	// Progress, when set, is called with the tensor bytes written so far and in all.
	Progress func(done, total int64)
	// Context, when set, stops the assembly between tensors once it is cancelled; the
	// layer checkpoints are kept, so the run can be resumed.
	Context context.Context
}

// item is one tensor of the assembled checkpoint and how to produce its bytes.
type item struct {
	info  safetensors.TensorInfo
	layer int // the layer checkpoint it comes from, −1 for the source model
	// write streams the tensor into sw; src is the layer checkpoint (nil for source tensors).
	write func(sw *safetensors.Writer, src *safetensors.Checkpoint) error
}

// Finish assembles the artifact in the staging folder from the checkpointed layers and the
// source model src (its embedding, final norm and LM head, converted to fp16): the weights
// (sharded by ShardSize, streamed tensor by tensor, so memory holds one tensor at a time),
// config.json with its quantization_config, the tokenizer files, and odyssey.json. It then
// removes the layer checkpoints and state.json, leaving exactly the artifact. Every layer
// must be done.
func (w *Writer) Finish(src *hf.Model, o FinishOptions) (*Provenance, error) {
	cfg := src.Config
	if n := w.Done(); n != w.state.Layers || n != cfg.NumLayers {
		return nil, fmt.Errorf("artifact: %d of %d layers are checkpointed in %s", n, cfg.NumLayers, w.dir)
	}
	if o.Output == "" {
		o.Output = OutputOdyssey
	}
	if o.Output != OutputOdyssey && o.Output != OutputCompressedTensors {
		return nil, fmt.Errorf("artifact: unknown output format %q (want %s or %s)", o.Output, OutputOdyssey, OutputCompressedTensors)
	}
	fp, err := ModelFingerprint(src)
	if err != nil {
		return nil, err
	}
	if fp != w.state.Model {
		return nil, fmt.Errorf("artifact: %s: %w: the source model is not the one quantized", w.dir, ErrStateMismatch)
	}

	// Records first: they say which linears were skipped, fell back or stay 16-bit, which
	// the compressed-tensors declarations and both config blocks need.
	recs := make([]LayerRecord, cfg.NumLayers)
	for i := range recs {
		ck, err := safetensors.Open(w.layerPath(i))
		if err != nil {
			return nil, fmt.Errorf("artifact: layer checkpoint %d: %w", i, err)
		}
		recs[i], err = readRecord(ck, w.layerPath(i))
		ck.Close()
		if err != nil {
			return nil, err
		}
	}

	var total int64
	var shards int
	inPlace, err := w.canAssembleInPlace(o)
	if err != nil {
		return nil, err
	}
	if inPlace {
		total, shards, err = w.assembleInPlace(src, o)
	} else {
		total, shards, err = w.assembleCopy(src, recs, o)
	}
	if err != nil {
		return nil, err
	}

	if o.Output == OutputCompressedTensors {
		o.Notes = append(o.Notes, "compressed-tensors export: every linear input is quantized to int8 per token at run time; "+
			"the static activation scales and per-layer policies recorded here are not carried over (LAE stays folded into the weights), "+
			"and the integer group scales are multiplied out into fp16 weight_scale")
	}
	prov := w.provenance(src, recs, o, fp, total, shards)
	if err := w.writeConfig(src, recs, o, prov); err != nil {
		return nil, err
	}
	if err := copyTokenizerFiles(src.Dir, w.dir, !o.NoSync); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(w.dir, ProvenanceFile), prov, !o.NoSync); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(filepath.Join(w.dir, LayersDir)); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	for _, f := range []string{windowsFile, StateFile} { // state.json last: it marks a staging folder
		if err := os.Remove(filepath.Join(w.dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("artifact: %w", err)
		}
	}
	return prov, nil
}

// assembleCopy writes the artifact's weights as new shards of at most ShardSize bytes,
// copying every tensor from the layer checkpoints and the source model (converting them
// for the compressed-tensors output). It returns the tensor bytes and the shard count.
func (w *Writer) assembleCopy(src *hf.Model, recs []LayerRecord, o FinishOptions) (int64, int, error) {
	items, err := w.items(src, recs, o.Output)
	if err != nil {
		return 0, 0, err
	}
	decls := make([]safetensors.TensorInfo, len(items))
	var total int64
	for i, it := range items {
		decls[i] = it.info
		n, _ := byteSize(it.info)
		total += n
	}
	sw, err := safetensors.NewWriter(w.dir, decls, safetensors.WriterOptions{MaxShardSize: o.ShardSize, Metadata: map[string]string{"format": "pt"}, NoSync: o.NoSync})
	if err != nil {
		return 0, 0, fmt.Errorf("artifact: %w", err)
	}
	defer sw.Abort()
	var done int64
	var ck *safetensors.Checkpoint
	cur := -1
	closeCk := func() {
		if ck != nil {
			ck.Close() // unmaps: the layer's pages leave the process as soon as it is copied
			ck = nil
		}
	}
	defer closeCk()
	for _, it := range items {
		if o.Context != nil && o.Context.Err() != nil {
			return 0, 0, o.Context.Err()
		}
		if it.layer != cur {
			closeCk()
			cur = it.layer
			if cur >= 0 {
				// Not verified again: every checkpoint was written by this run or verified
				// when the run was resumed (Reopen).
				if ck, err = safetensors.Open(w.layerPath(cur)); err != nil {
					return 0, 0, fmt.Errorf("artifact: layer checkpoint %d: %w", cur, err)
				}
			}
		}
		if err := it.write(sw, ck); err != nil {
			return 0, 0, err
		}
		n, _ := byteSize(it.info)
		done += n
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	closeCk()
	if err := sw.Close(); err != nil {
		return 0, 0, fmt.Errorf("artifact: %w", err)
	}
	return total, len(sw.Files()), nil
}

// items lists the artifact's tensors in checkpoint order: embedding, the layers, final norm,
// LM head. Layer tensors come sorted by name within a layer, which makes the order (and so
// the shard boundaries) a function of the names alone.
func (w *Writer) items(src *hf.Model, recs []LayerRecord, output string) ([]item, error) {
	cfg := src.Config
	var items []item
	addSource := func(name string, info safetensors.TensorInfo) {
		items = append(items, sourceItem(src, name, info))
	}
	addSource(embedName, src.Embed)
	for i := range cfg.NumLayers {
		ck, err := safetensors.Open(w.layerPath(i))
		if err != nil {
			return nil, fmt.Errorf("artifact: layer checkpoint %d: %w", i, err)
		}
		var its []item
		if output == OutputCompressedTensors {
			its, err = ctLayerItems(ck, &cfg, i, recs[i])
		} else {
			its = copyItems(ck, i)
		}
		ck.Close()
		if err != nil {
			return nil, err
		}
		items = append(items, its...)
	}
	addSource(finalNormName, src.FinalNorm)
	if !src.Tied {
		addSource(lmHeadName, src.LMHead)
	}
	return items, nil
}

// sourceItem is the artifact tensor name copied, in fp16, from the source model's info.
func sourceItem(src *hf.Model, name string, info safetensors.TensorInfo) item {
	return item{
		info:  safetensors.TensorInfo{Name: name, DType: safetensors.F16, Shape: info.Shape},
		layer: -1,
		write: func(sw *safetensors.Writer, _ *safetensors.Checkpoint) error {
			err := copyAsF16(sw, name, src.Tensors, info)
			src.Tensors.ReleasePages() // the embedding alone is 0.5 GB of a 7B model
			return err
		},
	}
}

// copyItems lists a layer checkpoint's artifact tensors (not its resume copies), copied as
// they are.
func copyItems(ck *safetensors.Checkpoint, layer int) []item {
	var its []item
	for _, t := range ck.Tensors() {
		if len(t.Name) >= len(resumePrefix) && t.Name[:len(resumePrefix)] == resumePrefix {
			continue
		}
		name := t.Name
		its = append(its, item{
			info:  safetensors.TensorInfo{Name: name, DType: t.DType, Shape: t.Shape},
			layer: layer,
			write: func(sw *safetensors.Writer, ck *safetensors.Checkpoint) error {
				info, ok := ck.Info(name)
				if !ok {
					return fmt.Errorf("artifact: layer checkpoint %d: %s missing", layer, name)
				}
				f, err := openDataFile(info.File)
				if err != nil {
					return err
				}
				defer f.f.Close()
				return sw.CopyTensorFrom(name, f.f, f.base+info.Begin)
			},
		})
	}
	return its
}

func byteSize(t safetensors.TensorInfo) (int64, bool) {
	n := int64(t.DType.Size())
	for _, d := range t.Shape {
		n *= d
	}
	return n, n >= 0
}

// copyAsF16 streams a source tensor into sw as fp16: F16 data is copied as it is; other
// float types are converted in chunks (so no second copy of a large embedding is held),
// refusing values that overflow fp16.
func copyAsF16(sw *safetensors.Writer, name string, ck *safetensors.Checkpoint, info safetensors.TensorInfo) error {
	b, err := ck.Bytes(info.Name)
	if err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	if info.DType == safetensors.F16 {
		// The bytes go over as they are, copied by the kernel from the source file.
		f, err := openDataFile(info.File)
		if err != nil {
			return err
		}
		defer f.f.Close()
		return sw.CopyTensorFrom(name, f.f, f.base+info.Begin)
	}
	es := info.DType.Size()
	const chunk = 1 << 16
	f := make([]float32, chunk)
	out := make([]byte, 2*chunk)
	n := int(info.NumElements())
	for i0 := 0; i0 < n; i0 += chunk {
		m := min(chunk, n-i0)
		src := b[i0*es : (i0+m)*es]
		switch info.DType {
		case safetensors.BF16:
			safetensors.BF16ToF32(f[:m], src)
		case safetensors.F32:
			safetensors.F32FromBytes(f[:m], src)
		case safetensors.F64:
			safetensors.F64ToF32(f[:m], src)
		default:
			return fmt.Errorf("artifact: %s: dtype %s cannot be converted to fp16", info.Name, info.DType)
		}
		safetensors.Float32ToF16(out[:2*m], f[:m])
		for j := range m {
			if h := binary.LittleEndian.Uint16(out[2*j:]); h&0x7C00 == 0x7C00 {
				return fmt.Errorf("artifact: %s: %w: value %g at element %d does not fit in fp16 (largest 65504)", info.Name, ErrNotRepresentable, f[j], i0+j)
			}
		}
		if err := sw.WriteTensor(name, out[:2*m]); err != nil {
			return err
		}
	}
	return nil
}

// provenance builds odyssey.json.
func (w *Writer) provenance(src *hf.Model, recs []LayerRecord, o FinishOptions, fp Fingerprint, tensorBytes int64, shards int) *Provenance {
	p := &Provenance{
		Format: o.Output, FormatVersion: FormatVersion,
		Tool: o.Tool, Recipe: o.Recipe, Calibration: w.state.Calibration, Scheme: o.Scheme,
		Notes: o.Notes, Layers: recs,
	}
	if o.Output == OutputOdyssey {
		p.LayoutVersion = quant.PackLayoutVersion
	}
	p.Source = SourceInfo{Path: o.SourcePath, Architecture: src.Config.Architecture, Fingerprint: fp,
		Parameters: src.NumParams(), DTypes: map[string]int64{}}
	for _, t := range src.AllTensors() {
		p.Source.Bytes += t.Bytes()
		p.Source.DTypes[string(t.DType)] += t.Bytes()
	}
	p.Source.FP16Bytes = 2 * p.Source.Parameters
	p.Size = SizeInfo{TensorBytes: tensorBytes, Shards: shards}
	if tensorBytes > 0 {
		p.Size.CompressionRatio = math.Round(float64(p.Source.FP16Bytes)/float64(tensorBytes)*1000) / 1000
	}
	p.Summary = summarize(recs)
	return p
}

func summarize(recs []LayerRecord) Summary {
	s := Summary{Policies: map[string]int{}}
	var sum float64
	for _, r := range recs {
		for _, l := range r.Linears {
			s.Linears++
			if l.Skipped {
				s.Skipped = append(s.Skipped, l.Name)
				continue
			}
			s.Quantized++
			s.Policies[l.Policy]++
			if l.GroupFallback {
				if s.Fallbacks == nil {
					s.Fallbacks = map[string]int{}
				}
				s.Fallbacks[l.Name] = l.GroupSize
			}
			sum += l.WeightError
			s.MaxWeightError = max(s.MaxWeightError, l.WeightError)
		}
	}
	if s.Quantized > 0 {
		s.MeanWeightError = sum / float64(s.Quantized)
	}
	return s
}

// writeConfig writes config.json: the source's config with a quantization_config block and
// the dtype of the 16-bit tensors.
func (w *Writer) writeConfig(src *hf.Model, recs []LayerRecord, o FinishOptions, prov *Provenance) error {
	b, err := os.ReadFile(filepath.Join(src.Dir, "config.json"))
	if err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("artifact: %s: %w", filepath.Join(src.Dir, "config.json"), err)
	}
	var qc any
	if o.Output == OutputCompressedTensors {
		qc = ctQuantConfig(recs, prov)
	} else {
		qc = odysseyQuantConfig(prov)
	}
	set := func(k string, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		m[k] = raw
		return nil
	}
	if err := set("quantization_config", qc); err != nil {
		return err
	}
	// The unquantized tensors are fp16 whatever the source was; transformers reads either key.
	if _, ok := m["dtype"]; ok {
		set("dtype", "float16")
	}
	if _, ok := m["torch_dtype"]; ok || m["dtype"] == nil {
		set("torch_dtype", "float16")
	}
	return writeJSON(filepath.Join(w.dir, ConfigFile), m, !o.NoSync)
}

// QuantConfig is the quantization_config block of an Odyssey artifact's config.json.
type QuantConfig struct {
	QuantMethod   string `json:"quant_method"`
	Format        string `json:"format"`
	FormatVersion int    `json:"format_version"`
	// LayoutVersion is the version of docs/fastgemm-layout.md the weights are packed in.
	LayoutVersion int `json:"layout_version"`
	Scheme
	// GroupSizeFallbacks maps each linear whose input dimension the group size does not
	// divide to the group it was quantized with (its input dimension: per channel).
	GroupSizeFallbacks map[string]int `json:"group_size_fallbacks,omitempty"`
	// ModulesNotQuantized are kept in 16 bits: the embedding and LM head always, and the
	// linears the recipe skips.
	ModulesNotQuantized []string `json:"modules_not_quantized"`
	// ActivationPolicies counts the linears per activation policy; the policy of each is
	// its .policy tensor.
	ActivationPolicies map[string]int `json:"activation_policies"`
}

func odysseyQuantConfig(p *Provenance) QuantConfig {
	not := []string{"model.embed_tokens", "lm_head"}
	not = append(not, p.Summary.Skipped...)
	return QuantConfig{QuantMethod: QuantMethod, Format: Format, FormatVersion: FormatVersion,
		LayoutVersion: quant.PackLayoutVersion, Scheme: p.Scheme, GroupSizeFallbacks: p.Summary.Fallbacks,
		ModulesNotQuantized: not, ActivationPolicies: p.Summary.Policies}
}

// copyTokenizerFiles copies the TokenizerFiles that exist in from into to.
func copyTokenizerFiles(from, to string, sync bool) error {
	for _, name := range TokenizerFiles {
		src := filepath.Join(from, name)
		st, err := os.Stat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("artifact: %w", err)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		if err := copyFile(src, filepath.Join(to, name), sync); err != nil {
			return fmt.Errorf("artifact: copying %s: %w", src, err)
		}
	}
	return nil
}

func copyFile(src, dst string, sync bool) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil && sync {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
