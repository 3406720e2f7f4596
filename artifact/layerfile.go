package artifact

import (
	"fmt"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
)

// WriteLayerFile writes one quantized layer as a single safetensors file: every tensor the
// artifact stores for it (docs/artifact.md: folded float32 norms, packed int4 codes, group
// and channel scales, alpha_log2, act_scale, policy, biases, skipped linears' weights) under
// the artifact's names, plus the float32 copies a layer checkpoint keeps (names prefixed
// "__resume__."). It is how the GPU calibration pass hands a quantized layer to the runtime
// for propagation (docs/gpu-calibration.md, advance_quantized): the runtime reads the same
// tensors it reads from an artifact, so it runs the artifact's arithmetic. The file is not
// fsynced: it is scratch, read once.
func WriteLayerFile(path string, lr *qresult.LayerResult) error {
	ts, _, err := encodeLayer(lr)
	if err != nil {
		return err
	}
	if err := safetensors.WriteFileNoSync(path, ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("artifact: layer %d: %w", lr.Layer, err)
	}
	return nil
}

// ReadLayerFile reads a file WriteLayerFile wrote back into layer i's result, with its exact
// float32 numbers (as a resumed run reads a layer checkpoint). requestedGroup is the recipe's
// group size (0: per channel), as for Writer.ReadLayer.
func ReadLayerFile(path string, cfg *hf.Config, i, requestedGroup int) (*qresult.LayerResult, error) {
	ck, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	lr, err := decodeLayer(ck, cfg, i, requestedGroup, true)
	if err != nil {
		return nil, fmt.Errorf("artifact: %s: %w", path, err)
	}
	return lr, nil
}
