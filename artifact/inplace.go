package artifact

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/formats/safetensors"
)

// Assembling in place. Each layer checkpoint holds exactly that layer's artifact tensors
// (the resume copies live in a file of their own), so it can become one of the artifact's
// shards by a rename instead of a copy: for a 7B model that is 3.9 GB less to write (and,
// on a disk slower than the quantizer, 15 s less waiting for it), and the checkpoints'
// pages, already in the page cache or on the disk, are the artifact's. The source model's
// tensors (embedding, final norm, LM head) go into shards of their own, first. The shards
// are then model-00001-of-NNNNN.safetensors with the source tensors, then one per decoder
// layer, and model.safetensors.index.json maps every tensor to its shard, as transformers
// writes it. Layer shards keep their checkpoint metadata (the layer's record and checksum),
// which loaders ignore.
//
// It applies to the Odyssey output when ShardSize is set, the artifact would not fit in one
// shard anyway, and no layer checkpoint exceeds it (a layer per shard is then within the
// limit the recipe asked for). A model whose artifact fits in one shard (the tiny default, a
// 1B model at the 2 GiB default) gets its single model.safetensors by copying, which costs
// little at that size; the compressed-tensors output, whose tensors are converted, is
// always copied (assembleCopy).

// srcPartial is the folder, inside the staging folder, where the source tensors' shards
// are written before they are renamed into place.
const srcPartial = "source.partial"

// canAssembleInPlace reports whether Finish may assemble in place.
func (w *Writer) canAssembleInPlace(o FinishOptions) (bool, error) {
	if o.Output != OutputOdyssey || o.ShardSize <= 0 {
		return false, nil
	}
	var sum int64
	for i := range w.state.Layers {
		st, err := os.Stat(w.layerPath(i))
		if err != nil {
			return false, fmt.Errorf("artifact: layer checkpoint %d: %w", i, err)
		}
		if st.Size() > o.ShardSize {
			return false, nil
		}
		sum += st.Size()
	}
	return sum > o.ShardSize, nil
}

// assembleInPlace writes the source tensors' shards, renames the layer checkpoints into
// shards and writes the index. It returns the tensor bytes and the shard count.
func (w *Writer) assembleInPlace(src *hf.Model, o FinishOptions) (int64, int, error) {
	items := []item{sourceItem(src, embedName, src.Embed), sourceItem(src, finalNormName, src.FinalNorm)}
	if !src.Tied {
		items = append(items, sourceItem(src, lmHeadName, src.LMHead))
	}
	decls := make([]safetensors.TensorInfo, len(items))
	for i, it := range items {
		decls[i] = it.info
	}
	// Every layer's tensors, from the checkpoint headers.
	type layerFile struct {
		path    string
		tensors []safetensors.TensorInfo
	}
	layers := make([]layerFile, w.state.Layers)
	var total, done int64
	for _, d := range decls {
		n, _ := byteSize(d)
		total += n
	}
	for i := range layers {
		ck, err := safetensors.Open(w.layerPath(i))
		if err != nil {
			return 0, 0, fmt.Errorf("artifact: layer checkpoint %d: %w", i, err)
		}
		layers[i] = layerFile{path: w.layerPath(i), tensors: ck.Tensors()}
		ck.Close()
		for _, t := range layers[i].tensors {
			n, _ := byteSize(t)
			total += n
		}
	}

	srcDir := filepath.Join(w.dir, srcPartial)
	os.RemoveAll(srcDir) // left by an interrupted Finish
	sw, err := safetensors.NewWriter(srcDir, decls, safetensors.WriterOptions{MaxShardSize: o.ShardSize, Metadata: map[string]string{"format": "pt"}, NoSync: o.NoSync})
	if err != nil {
		return 0, 0, fmt.Errorf("artifact: %w", err)
	}
	defer sw.Abort()
	for _, it := range items {
		if o.Context != nil && o.Context.Err() != nil {
			return 0, 0, o.Context.Err()
		}
		if err := it.write(sw, nil); err != nil {
			return 0, 0, err
		}
		n, _ := byteSize(it.info)
		done += n
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	if err := sw.Close(); err != nil {
		return 0, 0, fmt.Errorf("artifact: %w", err)
	}
	srcFiles := sw.Files()
	srcOf := map[string]int{} // tensor → index into srcFiles
	for _, t := range sw.Tensors() {
		for j, f := range srcFiles {
			if f == t.File {
				srcOf[t.Name] = j
			}
		}
	}

	n := len(srcFiles) + len(layers)
	name := func(j int) string { return fmt.Sprintf("model-%05d-of-%05d.safetensors", j+1, n) }
	var index []safetensors.TensorInfo // File: the final shard
	for _, d := range decls {
		d.File = name(srcOf[d.Name])
		index = append(index, d)
	}
	for i, l := range layers {
		for _, t := range l.tensors {
			t.File = name(len(srcFiles) + i)
			index = append(index, t)
		}
	}
	if !o.NoSync {
		// The checkpoints were written without fsync; the artifact's files must be durable
		// before the artifact is published. Most of their pages are written back by now.
		for _, l := range layers {
			if err := syncFile(l.path); err != nil {
				return 0, 0, err
			}
		}
	}
	for j, f := range srcFiles {
		if err := os.Rename(f, filepath.Join(w.dir, name(j))); err != nil {
			return 0, 0, fmt.Errorf("artifact: %w", err)
		}
	}
	for i, l := range layers {
		if err := os.Rename(l.path, filepath.Join(w.dir, name(len(srcFiles)+i))); err != nil {
			return 0, 0, fmt.Errorf("artifact: %w", err)
		}
	}
	if err := os.RemoveAll(srcDir); err != nil {
		return 0, 0, fmt.Errorf("artifact: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(w.dir, "model.safetensors.index.json"), safetensors.EncodeIndex(index), !o.NoSync); err != nil {
		return 0, 0, fmt.Errorf("artifact: %w", err)
	}
	if !o.NoSync {
		// The renames, too, must be on the disk before the folder is published.
		if d, err := os.Open(w.dir); err == nil {
			d.Sync() // best effort: some systems cannot fsync a folder
			d.Close()
		}
	}
	if o.Progress != nil {
		o.Progress(total, total)
	}
	return total, n, nil
}

// syncFile flushes a written file to stable storage.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("artifact: %s: %w", path, err)
	}
	return nil
}
