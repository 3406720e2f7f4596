package artifact

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/model"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
	"github.com/odyssey-llm/odyssey/quant"
)

// Artifact is an opened artifact folder: an Odyssey W4A8 artifact or a compressed-tensors
// export.
type Artifact struct {
	Dir    string
	Config hf.Config
	// Method is quantization_config.quant_method: QuantMethod or "compressed-tensors".
	Method string
	// Quant is the Odyssey quantization_config (zero for compressed-tensors); CT the
	// compressed-tensors one (nil for Odyssey).
	Quant QuantConfig
	CT    *CTQuantConfig
	// Provenance is odyssey.json, nil when the folder has none.
	Provenance *Provenance
	Tensors    *safetensors.Checkpoint
	// TokenizerPath is the tokenizer.json in the folder, "" when absent.
	TokenizerPath string
}

// quantMethod returns quantization_config.quant_method of a config.json, "" when there is
// none.
func quantMethod(data []byte) (string, json.RawMessage, error) {
	var c struct {
		QC json.RawMessage `json:"quantization_config"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return "", nil, err
	}
	if len(c.QC) == 0 || string(c.QC) == "null" {
		return "", nil, nil
	}
	var m struct {
		Method string `json:"quant_method"`
	}
	if err := json.Unmarshal(c.QC, &m); err != nil {
		return "", nil, fmt.Errorf("quantization_config: %w", err)
	}
	return m.Method, c.QC, nil
}

// IsArtifact reports whether dir holds a quantized checkpoint this package reads: its
// config.json has a quantization_config whose quant_method is "odyssey" or
// "compressed-tensors".
func IsArtifact(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return false
	}
	m, _, err := quantMethod(b)
	return err == nil && (m == QuantMethod || m == "compressed-tensors")
}

// Open opens an artifact folder: its config (which must pass model.CheckConfig), its
// quantization_config, odyssey.json when present, and the weights (read lazily).
func Open(dir string) (*Artifact, error) {
	cfgPath := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	method, qc, err := quantMethod(data)
	if err != nil {
		return nil, fmt.Errorf("artifact: %s: %w", cfgPath, err)
	}
	a := &Artifact{Dir: dir, Method: method}
	switch method {
	case QuantMethod:
		if err := json.Unmarshal(qc, &a.Quant); err != nil {
			return nil, fmt.Errorf("artifact: %s: quantization_config: %w", cfgPath, err)
		}
		if a.Quant.FormatVersion != FormatVersion || a.Quant.LayoutVersion != quant.PackLayoutVersion {
			return nil, fmt.Errorf("artifact: %s: format version %d, layout version %d; this odyssey reads format %d, layout %d",
				cfgPath, a.Quant.FormatVersion, a.Quant.LayoutVersion, FormatVersion, quant.PackLayoutVersion)
		}
	case "compressed-tensors":
		a.CT = new(CTQuantConfig)
		if err := json.Unmarshal(qc, a.CT); err != nil {
			return nil, fmt.Errorf("artifact: %s: quantization_config: %w", cfgPath, err)
		}
		if f := a.CT.Format; f != "pack-quantized" && f != "int-quantized" && f != "mixed-precision" {
			return nil, fmt.Errorf("artifact: %s: compressed-tensors format %q is not supported (only pack-quantized, int-quantized and a mix of the two)", cfgPath, a.CT.Format)
		}
	case "":
		return nil, fmt.Errorf("artifact: %s has no quantization_config: not a quantized artifact", cfgPath)
	default:
		return nil, fmt.Errorf("artifact: %s: quant_method %q is not supported (want %s or compressed-tensors)", cfgPath, method, QuantMethod)
	}
	if a.Config, err = hf.LoadConfig(cfgPath); err != nil {
		return nil, err
	}
	if err := model.CheckConfig(&a.Config); err != nil {
		return nil, fmt.Errorf("artifact: %s: %w", cfgPath, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, ProvenanceFile)); err == nil {
		a.Provenance = new(Provenance)
		if err := json.Unmarshal(b, a.Provenance); err != nil {
			return nil, fmt.Errorf("artifact: %s: %w", filepath.Join(dir, ProvenanceFile), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	if a.Tensors, err = safetensors.Open(dir); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	if st, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err == nil && st.Mode().IsRegular() {
		a.TokenizerPath = filepath.Join(dir, "tokenizer.json")
	}
	return a, nil
}

// Close releases the weights.
func (a *Artifact) Close() error {
	if a == nil || a.Tensors == nil {
		return nil
	}
	err := a.Tensors.Close()
	a.Tensors = nil
	return err
}

// Layer decodes layer i of an Odyssey artifact into the ptq result it was written from
// (up to the fp16 rounding of norms and biases): codes, integer or float scales,
// activation policy and scale, checked as untrusted input.
func (a *Artifact) Layer(i int) (*qresult.LayerResult, error) {
	if a.Method != QuantMethod {
		return nil, fmt.Errorf("artifact: %s is a %s checkpoint, not an Odyssey artifact", a.Dir, a.Method)
	}
	if i < 0 || i >= a.Config.NumLayers {
		return nil, fmt.Errorf("artifact: layer %d out of range [0, %d)", i, a.Config.NumLayers)
	}
	lr, err := decodeLayer(a.Tensors, &a.Config, i, a.Quant.Weights.GroupSize, false)
	if err != nil {
		return nil, fmt.Errorf("artifact: %s: %w", a.Dir, err)
	}
	return lr, nil
}

// LoadModel builds a float32 model that computes as the artifact specifies: fp16
// embedding, norms and LM head, and for every quantized linear the W4A8 arithmetic of the
// scalar reference (quant.QLinear, bit-exact with quant.W4A8GEMMRef) reconstructed from the
// packed codes and the stored scales: ChannelScale = channel_scale·2^(4+alpha_log2), exactly.
// A compressed-tensors export runs its dequantized weights with per-token int8 activations.
func (a *Artifact) LoadModel() (*model.Model, error) {
	m := &model.Model{Config: a.Config, Layers: make([]*model.Layer, a.Config.NumLayers)}
	cfg := &m.Config
	var err error
	h, v := cfg.HiddenSize, cfg.VocabSize
	if m.Embedding, err = readFloat(a.Tensors, embedName, false, v, h); err != nil {
		return nil, err
	}
	if m.FinalNorm, err = readFloat(a.Tensors, finalNormName, false, h); err != nil {
		return nil, err
	}
	head := m.Embedding
	if !cfg.TieWordEmbeddings {
		if head, err = readFloat(a.Tensors, lmHeadName, false, v, h); err != nil {
			return nil, err
		}
	}
	m.LMHead = model.NewDense(head, nil, v, h)
	for i := range m.Layers {
		var l *model.Layer
		if a.Method == QuantMethod {
			lr, err := a.Layer(i)
			if err != nil {
				return nil, err
			}
			if l, err = BuildLayer(lr, cfg); err != nil {
				return nil, err
			}
		} else if l, err = a.ctLayer(i, cfg); err != nil {
			return nil, err
		}
		m.Layers[i] = l
	}
	return m, nil
}

// ctLayer builds layer i of a compressed-tensors export: dequantized weights, with int8
// per-token fake quantization of the inputs of the linears whose group says so.
func (a *Artifact) ctLayer(i int, cfg *hf.Config) (*model.Layer, error) {
	l := &model.Layer{Index: i, Config: cfg}
	var err error
	if l.AttnNorm, err = readFloat(a.Tensors, attnNormName(i), false, cfg.HiddenSize); err != nil {
		return nil, err
	}
	if l.MLPNorm, err = readFloat(a.Tensors, mlpNormName(i), false, cfg.HiddenSize); err != nil {
		return nil, err
	}
	for _, sp := range specs(cfg, i, 0) {
		var bias []float32
		if sp.bias {
			if bias, err = readFloat(a.Tensors, sp.name+SuffixBias, false, sp.out); err != nil {
				return nil, err
			}
		}
		if wi, ok := a.Tensors.Info(sp.name + SuffixWeight); ok && wi.DType == safetensors.I8 {
			// int-quantized: int8 codes [out, in] and per-channel scales [out, 1].
			raw, err := readRaw(a.Tensors, sp.name+SuffixWeight, safetensors.I8, sp.out, sp.in)
			if err != nil {
				return nil, err
			}
			s, err := readFloat(a.Tensors, sp.name+ctScale, false, sp.out, 1)
			if err != nil {
				return nil, err
			}
			w := make([]float32, sp.out*sp.in)
			for o := range sp.out {
				for k := range sp.in {
					w[o*sp.in+k] = s[o] * float32(int8(raw[o*sp.in+k]))
				}
			}
			var lin model.Linear = model.NewDense(w, bias, sp.out, sp.in)
			if a.ctActBits(sp.name) == 8 {
				lin = &qresult.FakeActLinear{Act: quant.ActQuant{Policy: quant.DynamicPerToken}, Inner: lin}
			}
			l.SetLinear(sp.kind, lin)
			continue
		}
		if _, ok := a.Tensors.Info(sp.name + ctPacked); !ok {
			w, err := readFloat(a.Tensors, sp.name+SuffixWeight, false, sp.out, sp.in)
			if err != nil {
				return nil, err
			}
			l.SetLinear(sp.kind, model.NewDense(w, bias, sp.out, sp.in))
			continue
		}
		packed, err := readRaw(a.Tensors, sp.name+ctPacked, safetensors.I32, sp.out, (sp.in+7)/8)
		if err != nil {
			return nil, err
		}
		q, err := UnpackInt32(packed, sp.out, sp.in)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sp.name, err)
		}
		st, ok := a.Tensors.Info(sp.name + ctScale)
		if !ok || len(st.Shape) != 2 || st.Shape[0] != int64(sp.out) || st.Shape[1] < 1 || int64(sp.in)%st.Shape[1] != 0 {
			return nil, fmt.Errorf("artifact: %s: missing or malformed", sp.name+ctScale)
		}
		ng := int(st.Shape[1])
		s, err := readFloat(a.Tensors, sp.name+ctScale, false, sp.out, ng)
		if err != nil {
			return nil, err
		}
		gs := sp.in / ng
		w := make([]float32, sp.out*sp.in)
		for o := range sp.out {
			for k := range sp.in {
				w[o*sp.in+k] = s[o*ng+k/gs] * float32(q[o*sp.in+k])
			}
		}
		var lin model.Linear = model.NewDense(w, bias, sp.out, sp.in)
		if a.ctActBits(sp.name) == 8 {
			lin = &qresult.FakeActLinear{Act: quant.ActQuant{Policy: quant.DynamicPerToken}, Inner: lin}
		}
		l.SetLinear(sp.kind, lin)
	}
	return l, nil
}

// ctActBits returns 8 when the config group covering module name quantizes its input
// activations, else 16.
func (a *Artifact) ctActBits(name string) int {
	for _, g := range a.CT.ConfigGroups {
		match := false
		for _, t := range g.Targets {
			match = match || t == "Linear" || t == name
		}
		if match && g.InputActivations != nil && g.InputActivations.NumBits == 8 {
			return 8
		}
	}
	return 16
}

// LoadModel opens the artifact in dir and builds its model (see Artifact.LoadModel). It
// returns the artifact too, still open, for its tokenizer path and provenance; close it
// when done.
func LoadModel(dir string) (*model.Model, *Artifact, error) {
	a, err := Open(dir)
	if err != nil {
		return nil, nil, err
	}
	m, err := a.LoadModel()
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return m, a, nil
}
