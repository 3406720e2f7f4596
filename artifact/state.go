package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/odyssey-llm/odyssey/formats/hf"
)

// Fingerprint identifies a source checkpoint cheaply: the hash of its config.json and of its
// tensor table (names, dtypes, shapes, byte lengths), not of the weights, which would mean
// reading the whole model before starting. It tells a resumed run that the model folder is
// the one the interrupted run read; a checkpoint rewritten with other weights of the same
// shapes is not detected.
type Fingerprint struct {
	ConfigSHA256  string `json:"config_sha256"`
	TensorsSHA256 string `json:"tensors_sha256"`
}

// ModelFingerprint computes the fingerprint of an opened checkpoint folder.
func ModelFingerprint(hm *hf.Model) (Fingerprint, error) {
	b, err := os.ReadFile(filepath.Join(hm.Dir, "config.json"))
	if err != nil {
		return Fingerprint{}, fmt.Errorf("artifact: %w", err)
	}
	c := sha256.Sum256(b)
	h := sha256.New()
	for _, t := range hm.Tensors.Tensors() { // sorted by name
		fmt.Fprintf(h, "%s\x00%s\x00%v\x00%d\n", t.Name, t.DType, t.Shape, t.Bytes())
	}
	return Fingerprint{ConfigSHA256: hex.EncodeToString(c[:]), TensorsSHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// CalibrationNone is the Calibration.Source of a run whose recipe needs no statistics
// (round-to-nearest weights, per-token activations, no equalization): nothing was drawn or
// run, and the artifact depends on the weights alone.
const CalibrationNone = "none"

// Describe returns the calibration in words, for reports.
func (c Calibration) Describe() string {
	switch c.Source {
	case CalibrationNone:
		return "none (the recipe needs no statistics)"
	case "self":
		return fmt.Sprintf("self (sampled from the model), %d×%d tokens, seed %d", c.Samples, c.SeqLen, c.Seed)
	}
	return fmt.Sprintf("%s, %d×%d tokens, seed %d", c.Source, c.Samples, c.SeqLen, c.Seed)
}

// Calibration describes the calibration set: where it came from and what was drawn.
type Calibration struct {
	// Source is "self" (sampled from the model), the calibration file's path as given, or
	// CalibrationNone.
	Source string `json:"source"`
	Format string `json:"format,omitempty"`
	// SHA256 is the hash of the calibration file's bytes (empty for "self").
	SHA256  string `json:"sha256,omitempty"`
	Seed    int64  `json:"seed"`
	Samples int    `json:"samples"`
	SeqLen  int    `json:"seq_len"`
	// WindowsSHA256 is the hash of the token ids of the windows drawn, which is what the
	// quantization actually saw.
	WindowsSHA256 string `json:"windows_sha256,omitempty"`
}

// WindowsHash returns the hash recorded as Calibration.WindowsSHA256.
func WindowsHash(windows [][]int) string {
	h := sha256.New()
	var buf []byte
	for _, w := range windows {
		buf = buf[:0]
		for _, t := range w {
			buf = strconv.AppendInt(buf, int64(t), 10)
			buf = append(buf, ' ')
		}
		buf = append(buf, '\n')
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// FileSHA256 returns the hex SHA-256 of a file's bytes.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// State is the staging folder's state.json: everything that determines the quantized
// layers, so that a resumed run can refuse to mix layers made from different inputs.
type State struct {
	FormatVersion int         `json:"format_version"`
	Model         Fingerprint `json:"model"`
	RecipeHash    string      `json:"recipe_hash"`
	Calibration   Calibration `json:"calibration"`
	// Output is the artifact format to assemble: "odyssey" or "compressed-tensors". It does
	// not change the layers, so a resumed run may change it.
	Output string `json:"output"`
	Layers int    `json:"layers"`
}

// mismatch lists how o differs from s in what decides the layers, "" when it does not.
func (s State) mismatch(o State) string {
	var d []string
	diff := func(what, a, b string) {
		if a != b {
			d = append(d, fmt.Sprintf("%s %s, now %s", what, a, b))
		}
	}
	diff("format version", fmt.Sprint(s.FormatVersion), fmt.Sprint(o.FormatVersion))
	diff("model config sha256", s.Model.ConfigSHA256, o.Model.ConfigSHA256)
	diff("model tensors sha256", s.Model.TensorsSHA256, o.Model.TensorsSHA256)
	diff("recipe", s.RecipeHash, o.RecipeHash)
	a, b := s.Calibration, o.Calibration
	diff("calibration source", a.Source, b.Source)
	diff("calibration sha256", a.SHA256, b.SHA256)
	diff("calibration seed", fmt.Sprint(a.Seed), fmt.Sprint(b.Seed))
	diff("calibration samples", fmt.Sprint(a.Samples), fmt.Sprint(b.Samples))
	diff("calibration seq_len", fmt.Sprint(a.SeqLen), fmt.Sprint(b.SeqLen))
	if a.WindowsSHA256 != "" && b.WindowsSHA256 != "" {
		diff("calibration windows sha256", a.WindowsSHA256, b.WindowsSHA256)
	}
	diff("layers", fmt.Sprint(s.Layers), fmt.Sprint(o.Layers))
	return strings.Join(d, "; ")
}

// writeJSONFile writes v as indented JSON to path atomically (temporary file, fsync, rename).
func writeJSONFile(path string, v any) error { return writeJSON(path, v, true) }

// writeJSON is writeJSONFile, with the fsync only when sync is set: on ext4, one fsync can
// wait for every dirty page of the folder's other new files (a whole artifact's weights)
// to reach the disk, which is what --no-sync avoids.
func writeJSON(path string, v any, sync bool) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return writeFileAtomic(path, buf.Bytes(), sync)
}

// writeFileAtomic writes data to a temporary file beside path, syncs it (when sync is set)
// and renames it, so a reader (or a crash, when synced) sees the old file or the new one,
// never part of one.
func writeFileAtomic(path string, data []byte, sync bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("artifact: writing %s: %w", path, err)
	}
	return nil
}
