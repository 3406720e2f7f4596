package artifact

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
	"github.com/odyssey-llm/odyssey/ptq/qresult"
)

// Writer builds an artifact in a staging folder: each finished layer is checkpointed into
// layers/NNNNN.safetensors as it comes out of the quantizer (WriteLayer), so that memory
// never holds more than one quantized layer and an interrupted run can continue (Reopen,
// Done, ReadLayer); Finish then assembles the artifact's files in the same folder. The
// caller renames the folder into place.
type Writer struct {
	dir   string
	state State
	// Writeback, when positive, is the shard size of an artifact that will be fsynced:
	// once the layer checkpoints are seen to add up to more than one shard (so that Finish
	// will rename them into shards, not copy them), each is handed to the disk as soon as
	// it is written, and the disk works while the next layers are quantized instead of
	// during Finish's fsync. Set it before the first WriteLayer.
	Writeback int64
	// NoPackedPool, when true, lets a layer's packed int4 weights go once written instead
	// of keeping them for the next layer to pack into (packpool.go). Set it for calibrated
	// runs: minutes of calibration pass between two layers' packing, and the kept buffers
	// (101 MB for a LLaMA-7B layer) would be resident through the next layer's collection,
	// its peak (issue 10); the RTN path, whose layers follow each other in seconds, keeps
	// the pool and saves the page faults. Set it before the first WriteLayer.
	NoPackedPool bool
}

// ErrStateMismatch is wrapped by Reopen's error when the staging folder was made from other
// inputs.
var ErrStateMismatch = errors.New("the partial run was made from other inputs")

// Create starts a staging folder dir, which must not exist, recording st in state.json.
func Create(dir string, st State) (*Writer, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, LayersDir), 0o755); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	st.FormatVersion = FormatVersion
	w := &Writer{dir: dir, state: st}
	if err := writeJSONFile(filepath.Join(dir, StateFile), st); err != nil {
		return nil, err
	}
	return w, nil
}

// Reopen opens an existing staging folder to resume it. It fails, wrapping
// ErrStateMismatch and saying what differs, when the folder's state.json does not match st
// in anything that decides the layers (model, recipe, calibration). st.Output may differ.
func Reopen(dir string, st State) (*Writer, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, fmt.Errorf("artifact: %s is not a resumable staging folder: %w", dir, err)
	}
	var old State
	if err := json.Unmarshal(b, &old); err != nil {
		return nil, fmt.Errorf("artifact: %s: %w", filepath.Join(dir, StateFile), err)
	}
	st.FormatVersion = FormatVersion
	if st.Calibration.WindowsSHA256 == "" {
		st.Calibration.WindowsSHA256 = old.Calibration.WindowsSHA256
	}
	if d := old.mismatch(st); d != "" {
		return nil, fmt.Errorf("artifact: %s: %w: %s", dir, ErrStateMismatch, d)
	}
	if err := os.MkdirAll(filepath.Join(dir, LayersDir), 0o755); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	w := &Writer{dir: dir, state: st}
	w.dropDamaged()
	return w, writeJSONFile(filepath.Join(w.dir, StateFile), st)
}

// dropDamaged removes, from the first layer checkpoint that fails its checksum (a crash
// before the kernel wrote it back, say) on, every checkpoint, so that Done counts only
// layers that can be resumed and the others are computed again.
func (w *Writer) dropDamaged() {
	n := w.Done()
	for i := range n {
		ck, err := w.openLayer(i)
		if err == nil {
			ck.Close()
			continue
		}
		for j := i; j < n; j++ {
			os.Remove(w.layerPath(j))
			os.Remove(w.resumePath(j))
		}
		return
	}
}

// Dir returns the staging folder.
func (w *Writer) Dir() string { return w.dir }

// State returns the recorded state.
func (w *Writer) State() State { return w.state }

// SetWindows records the calibration windows once they are drawn (their hash in
// state.json, the token ids in windows.json, so that a resumed run need not sample them
// again), and refuses windows that differ from those an interrupted run recorded (a sampler
// that is not deterministic would otherwise make the resumed layers inconsistent with the
// first ones).
func (w *Writer) SetWindows(windows [][]int) error {
	hash := WindowsHash(windows)
	if old := w.state.Calibration.WindowsSHA256; old != "" && old != hash && w.Done() > 0 {
		return fmt.Errorf("artifact: %s: %w: calibration windows sha256 %s, now %s", w.dir, ErrStateMismatch, old, hash)
	}
	if err := writeJSONFile(filepath.Join(w.dir, windowsFile), windows); err != nil {
		return err
	}
	w.state.Calibration.WindowsSHA256 = hash
	return writeJSONFile(filepath.Join(w.dir, StateFile), w.state)
}

// windowsFile holds a staging folder's calibration windows.
const windowsFile = "windows.json"

// SavedWindows returns the calibration windows an interrupted run recorded, when they are
// there and match the hash in state.json.
func (w *Writer) SavedWindows() ([][]int, bool) {
	want := w.state.Calibration.WindowsSHA256
	if want == "" {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join(w.dir, windowsFile))
	if err != nil {
		return nil, false
	}
	var windows [][]int
	if json.Unmarshal(b, &windows) != nil || len(windows) == 0 || WindowsHash(windows) != want {
		return nil, false
	}
	return windows, true
}

func (w *Writer) layerPath(i int) string {
	return filepath.Join(w.dir, LayersDir, fmt.Sprintf("%05d.safetensors", i))
}

// Done returns how many layers, from layer 0 on, are checkpointed. Layers are quantized in
// order, each on the output of the ones before, so only a prefix can be reused.
func (w *Writer) Done() int {
	n := 0
	for n < w.state.Layers {
		if _, err := os.Stat(w.layerPath(n)); err != nil {
			break
		}
		n++
	}
	return n
}

// resumePath is the file of layer i's float32 copies (of the weights of skipped linears,
// which the artifact stores in fp16), present only when the layer has some.
func (w *Writer) resumePath(i int) string {
	return filepath.Join(w.dir, LayersDir, fmt.Sprintf("%05d.resume.safetensors", i))
}

// resumeKey is set in a layer checkpoint's metadata when the layer has a resume file.
const resumeKey = "odyssey.resume_file"

// WriteLayer checkpoints one finished layer: its artifact tensors and record in
// layers/NNNNN.safetensors, which later becomes one of the artifact's shards as it is (see
// Finish), and the float32 copies a resume needs, if any, in layers/NNNNN.resume.safetensors,
// written first, so that the main file's existence means the layer is complete. Each file
// is written atomically and carries its checksum.
func (w *Writer) WriteLayer(lr *qresult.LayerResult) error {
	if lr.Layer < 0 || lr.Layer >= w.state.Layers {
		return fmt.Errorf("artifact: layer %d out of range [0, %d)", lr.Layer, w.state.Layers)
	}
	ts, rec, err := encodeLayer(lr)
	if err != nil {
		return err
	}
	var main, extra []safetensors.Tensor
	for _, t := range ts {
		if strings.HasPrefix(t.Name, resumePrefix) {
			extra = append(extra, t)
		} else {
			main = append(main, t)
		}
	}
	meta, err := layerMetadata(rec)
	if err != nil {
		return err
	}
	if len(extra) > 0 {
		rm := map[string]string{checksumKey: strconv.FormatUint(uint64(tensorsChecksum(extra)), 10)}
		if err := safetensors.WriteFileNoSync(w.resumePath(lr.Layer), extra, rm); err != nil {
			return fmt.Errorf("artifact: layer %d: %w", lr.Layer, err)
		}
		meta[resumeKey] = filepath.Base(w.resumePath(lr.Layer))
	}
	meta[checksumKey] = strconv.FormatUint(uint64(tensorsChecksum(main)), 10)
	if err := safetensors.WriteFileNoSync(w.layerPath(lr.Layer), main, meta); err != nil {
		return fmt.Errorf("artifact: layer %d: %w", lr.Layer, err)
	}
	for _, t := range main {
		if strings.HasSuffix(t.Name, SuffixQWeight) && !w.NoPackedPool {
			releasePacked(t.Data) // written; packInt4 made it for this layer alone
		}
	}
	if w.Writeback > 0 {
		// Layers are alike: this one's size times the layer count predicts whether they
		// will be the artifact's shards (canAssembleInPlace).
		if st, err := os.Stat(w.layerPath(lr.Layer)); err == nil && st.Size() <= w.Writeback && st.Size()*int64(w.state.Layers) > w.Writeback {
			startWriteback(w.layerPath(lr.Layer))
		}
	}
	return nil
}

// layerSource reads a layer checkpoint together with its resume file.
type layerSource struct {
	main, resume *safetensors.Checkpoint // resume may be nil
}

func (s *layerSource) pick(name string) *safetensors.Checkpoint {
	if s.resume != nil && strings.HasPrefix(name, resumePrefix) {
		return s.resume
	}
	return s.main
}

func (s *layerSource) Info(name string) (safetensors.TensorInfo, bool) {
	return s.pick(name).Info(name)
}
func (s *layerSource) Bytes(name string) ([]byte, error) { return s.pick(name).Bytes(name) }

func (s *layerSource) Close() {
	s.main.Close()
	if s.resume != nil {
		s.resume.Close()
	}
}

// openLayer opens layer checkpoint i and its resume file (when its metadata names one),
// verifying both checksums.
func (w *Writer) openLayer(i int) (*layerSource, error) {
	ck, err := openVerified(w.layerPath(i))
	if err != nil {
		return nil, err
	}
	src := &layerSource{main: ck}
	if _, ok := ck.Metadata()[resumeKey]; ok {
		if src.resume, err = openVerified(w.resumePath(i)); err != nil {
			ck.Close()
			return nil, err
		}
	}
	return src, nil
}

// ReadLayer returns checkpointed layer i as a ptq result that computes exactly like the one
// written (float32 norms, biases and skipped weights), for resuming.
func (w *Writer) ReadLayer(i int, cfg *hf.Config, requestedGroup int) (*qresult.LayerResult, error) {
	ck, err := w.openLayer(i)
	if err != nil {
		return nil, fmt.Errorf("artifact: layer checkpoint %d: %w", i, err)
	}
	defer ck.Close()
	lr, err := decodeLayer(ck, cfg, i, requestedGroup, true)
	if err != nil {
		return nil, fmt.Errorf("artifact: layer checkpoint %s: %w", w.layerPath(i), err)
	}
	return lr, nil
}

// readRecord returns the record stored with layer checkpoint i.
func readRecord(ck *safetensors.Checkpoint, path string) (LayerRecord, error) {
	var rec LayerRecord
	s, ok := ck.Metadata()[recordKey]
	if !ok {
		return rec, fmt.Errorf("artifact: %s: no %s metadata", path, recordKey)
	}
	if err := json.Unmarshal([]byte(s), &rec); err != nil {
		return rec, fmt.Errorf("artifact: %s: %s: %w", path, recordKey, err)
	}
	return rec, nil
}

// RemoveStaging deletes a staging folder, but only one that looks like one (it holds
// state.json, or it is empty, or it holds a finished artifact's odyssey.json that was never
// renamed into place), so that a mistyped path never deletes a user's data.
func RemoveStaging(dir string) error {
	for _, f := range []string{StateFile, ProvenanceFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return os.RemoveAll(dir)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
		return os.Remove(dir)
	}
	return fmt.Errorf("artifact: %s has no %s; not removing what is not a staging folder", dir, StateFile)
}
