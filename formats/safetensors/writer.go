package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// WriterOptions configure NewWriter. The zero value writes one model.safetensors without
// metadata.
type WriterOptions struct {
	// MaxShardSize caps the tensor data bytes of one file; 0 means no cap (a single file).
	// Tensors are assigned to shards greedily in declaration order; a tensor larger than the
	// cap gets a shard of its own, as transformers does.
	MaxShardSize int64
	// Metadata is written as __metadata__ into every file. transformers refuses to load files
	// whose metadata lacks "format" (it wants "pt"), so checkpoints meant for it should carry
	// {"format": "pt"}. Nil or empty writes no __metadata__.
	Metadata map[string]string
	// BaseName names the files: BaseName.safetensors for one file, else
	// BaseName-00001-of-0000N.safetensors and BaseName.safetensors.index.json. Default "model".
	BaseName string
	// NoSync skips flushing the files to stable storage (fsync) before they are renamed into
	// place. The rename still makes each file appear whole or not at all to other programs,
	// but after a power loss or a kernel crash a published file may be incomplete. It is for
	// scratch output whose writing is bound by the disk (fsync can take longer than all the
	// rest of a quantization run) and for checkpoints that carry their own checksum.
	NoSync bool
}

// Writer streams a checkpoint to disk; see the package documentation for the protocol. Its
// methods may be called from several goroutines at once (different tensors in parallel),
// except that Close and Abort must come after every write has returned.
type Writer struct {
	mu       sync.Mutex
	dir      string
	index    string // final path of the index file, "" for a single file
	base     string // BaseName for stale-file cleanup; "" disables cleanup (WriteFile)
	shards   []*wshard
	tensors  []*wtensor // declaration order
	byName   map[string]*wtensor
	err      error // first write failure; the writer is then dead
	finished bool  // Close or Abort ran
	noSync   bool  // WriterOptions.NoSync
}

type wshard struct {
	final, tmp string
	f          *os.File
	base       int64 // file offset of the data section
	size       int64 // data section length
}

type wtensor struct {
	info    TensorInfo // File, Begin and End filled in
	shard   *wshard
	written int64
}

// NewWriter plans a checkpoint of the declared tensors in folder dir (created if missing) and
// creates its files under temporary names, headers written. The caller then supplies every
// tensor's bytes with WriteTensor or WriteFloat32, in any order and in as many pieces as it
// likes, and calls Close to verify and publish the files, or Abort to drop them.
//
// Only Name, DType and Shape of the declarations are used. Names must be unique, non-empty,
// valid UTF-8 and not "__metadata__".
func NewWriter(dir string, tensors []TensorInfo, opts WriterOptions) (*Writer, error) {
	base := opts.BaseName
	if base == "" {
		base = "model"
	}
	if base != filepath.Base(base) || base == "." || base == ".." || strings.ContainsAny(base, `/\`) {
		return nil, fmt.Errorf("safetensors: writer: BaseName %q is not a plain file name", base)
	}
	if opts.MaxShardSize < 0 {
		return nil, fmt.Errorf("safetensors: writer: MaxShardSize %d is negative", opts.MaxShardSize)
	}
	ts, err := declare(dir, tensors)
	if err != nil {
		return nil, err
	}
	groups := planShards(ts, opts.MaxShardSize)
	finals := make([]string, len(groups))
	index := ""
	if len(groups) == 1 {
		finals[0] = filepath.Join(dir, base+".safetensors")
	} else {
		for i := range groups {
			finals[i] = filepath.Join(dir, fmt.Sprintf("%s-%05d-of-%05d.safetensors", base, i+1, len(groups)))
		}
		index = filepath.Join(dir, base+".safetensors.index.json")
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("safetensors: writer: %w", err)
	}
	w := &Writer{dir: dir, index: index, base: base, noSync: opts.NoSync}
	if err := w.create(ts, groups, finals, opts.Metadata); err != nil {
		return nil, err
	}
	return w, nil
}

// Tensor is a tensor with its data, for WriteFile.
type Tensor struct {
	Name  string
	DType DType
	Shape []int64
	// Data is the little-endian element data, row-major; its length must be the shape's
	// element count times the dtype's size.
	Data []byte
}

// WriteFile writes tensors into the single file path, atomically (see Writer), for callers
// that hold a small set of tensors in memory. Tensor data is laid out as Writer does.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	return writeFile(path, tensors, metadata, false)
}

// WriteFileNoSync is WriteFile without the fsync (see WriterOptions.NoSync).
func WriteFileNoSync(path string, tensors []Tensor, metadata map[string]string) error {
	return writeFile(path, tensors, metadata, true)
}

func writeFile(path string, tensors []Tensor, metadata map[string]string, noSync bool) error {
	infos := make([]TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	ts, err := declare(path, infos)
	if err != nil {
		return err
	}
	for i, t := range ts {
		if n := t.info.End - t.info.Begin; int64(len(tensors[i].Data)) != n {
			return &usageError{file: path, tensor: t.info.Name, msg: fmt.Sprintf("data is %d bytes, shape %v of %s needs %d", len(tensors[i].Data), t.info.Shape, t.info.DType, n)}
		}
	}
	w := &Writer{dir: filepath.Dir(path), noSync: noSync}
	if err := w.create(ts, [][]*wtensor{ts}, []string{path}, metadata); err != nil {
		return err
	}
	for _, t := range tensors {
		if err := w.WriteTensor(t.Name, t.Data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// declare validates tensor declarations; Begin and End temporarily hold 0 and the byte size.
func declare(where string, tensors []TensorInfo) ([]*wtensor, error) {
	seen := make(map[string]bool, len(tensors))
	ts := make([]*wtensor, len(tensors))
	for i, d := range tensors {
		bad := func(format string, args ...any) error {
			return &usageError{file: where, tensor: d.Name, msg: fmt.Sprintf(format, args...)}
		}
		switch {
		case d.Name == "":
			return nil, bad("empty tensor name")
		case !utf8.ValidString(d.Name):
			return nil, bad("tensor name is not valid UTF-8")
		case d.Name == metadataKey:
			return nil, bad("the name is reserved for metadata")
		case seen[d.Name]:
			return nil, bad("declared twice")
		case !d.DType.Valid():
			return nil, bad("unknown dtype %q", string(d.DType))
		}
		seen[d.Name] = true
		for _, s := range d.Shape {
			if s < 0 {
				return nil, bad("shape %v has a negative dimension", d.Shape)
			}
		}
		n, ok := byteSize(d.DType, d.Shape)
		if !ok {
			return nil, bad("shape %v of %s overflows 63 bits of bytes", d.Shape, d.DType)
		}
		shape := slices.Clone(d.Shape)
		if shape == nil {
			shape = []int64{}
		}
		ts[i] = &wtensor{info: TensorInfo{Name: d.Name, DType: d.DType, Shape: shape, End: n}}
	}
	return ts, nil
}

// planShards assigns tensors to shards greedily in declaration order.
func planShards(ts []*wtensor, max int64) [][]*wtensor {
	groups := [][]*wtensor{nil}
	var size int64
	for _, t := range ts {
		n := t.info.End
		cur := len(groups) - 1
		if max > 0 && len(groups[cur]) > 0 && n > max-size {
			groups = append(groups, nil)
			cur++
			size = 0
		}
		groups[cur] = append(groups[cur], t)
		size += n
	}
	return groups
}

// create lays out each shard, encodes its header and creates its temporary file.
func (w *Writer) create(ts []*wtensor, groups [][]*wtensor, finals []string, meta map[string]string) (err error) {
	for k, v := range meta {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("safetensors: writer: metadata %q: key or value is not valid UTF-8", k)
		}
	}
	w.tensors = ts
	w.byName = make(map[string]*wtensor, len(ts))
	for _, t := range ts {
		w.byName[t.info.Name] = t
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	for i, g := range groups {
		s := &wshard{final: finals[i]}
		w.shards = append(w.shards, s)
		// Data order: larger elements first, declaration order among equals (stable). With
		// the data section starting 8-aligned, every tensor then starts at a multiple of its
		// element size, so readers may view mapped data as []float32 etc. without copying.
		order := slices.Clone(g)
		slices.SortStableFunc(order, func(a, b *wtensor) int { return b.info.DType.Size() - a.info.DType.Size() })
		var off int64
		for _, t := range order {
			n := t.info.End
			t.info.Begin, t.info.End, t.info.File = off, off+n, s.final
			t.shard = s
			off += n
		}
		s.size = off
		hdr := encodeHeader(meta, g)
		if len(hdr) > MaxHeaderSize {
			return fmt.Errorf("safetensors: writer: %s: header would be %d bytes, over the %d-byte limit", s.final, len(hdr), MaxHeaderSize)
		}
		s.base = 8 + int64(len(hdr))
		if s.f, s.tmp, err = createTemp(s.final); err != nil {
			return fmt.Errorf("safetensors: writer: %w", err)
		}
		buf := make([]byte, 8, s.base)
		binary.LittleEndian.PutUint64(buf, uint64(len(hdr)))
		buf = append(buf, hdr...)
		if _, err := s.f.WriteAt(buf, 0); err != nil {
			return fmt.Errorf("safetensors: writer: %w", err)
		}
	}
	return nil
}

// encodeHeader writes the JSON header: __metadata__ first, then tensors sorted by name, keys
// in a fixed order, no white space except the trailing spaces that pad it to a multiple of
// 8 bytes (so that the data section is 8-aligned, as the reference writer does). The same
// declarations always give the same bytes.
func encodeHeader(meta map[string]string, ts []*wtensor) []byte {
	b := []byte{'{'}
	if len(meta) > 0 {
		b = append(b, `"__metadata__":{`...)
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, meta[k])
		}
		b = append(b, '}')
	}
	sorted := slices.Clone(ts)
	slices.SortFunc(sorted, func(a, b *wtensor) int { return strings.Compare(a.info.Name, b.info.Name) })
	for _, t := range sorted {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = appendJSONString(b, t.info.Name)
		b = append(b, `:{"dtype":`...)
		b = appendJSONString(b, string(t.info.DType))
		b = append(b, `,"shape":[`...)
		for i, d := range t.info.Shape {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"data_offsets":[`...)
		b = strconv.AppendInt(b, t.info.Begin, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, t.info.End, 10)
		b = append(b, "]}"...)
	}
	b = append(b, '}')
	for len(b)%8 != 0 {
		b = append(b, ' ')
	}
	return b
}

// appendJSONString appends s (valid UTF-8) as a JSON string, escaping only what JSON
// requires, so that names are stored byte for byte.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// createTemp creates a new file beside final, hidden and uniquely named. Unlike
// os.CreateTemp it asks for mode 0666, so the published file gets the umask's usual
// permissions rather than 0600.
func createTemp(final string) (*os.File, string, error) {
	dir, name := filepath.Split(final)
	for range 100 {
		tmp := filepath.Join(dir, fmt.Sprintf(".%s.tmp%016x", name, rand.Uint64()))
		f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return f, tmp, err
	}
	return nil, "", fmt.Errorf("cannot create a temporary file beside %s", final)
}

// Files returns the paths the checkpoint's .safetensors files will have once Close succeeds.
func (w *Writer) Files() []string {
	out := make([]string, len(w.shards))
	for i, s := range w.shards {
		out[i] = s.final
	}
	return out
}

// Tensors returns the planned layout in declaration order: each tensor's file (final path)
// and offsets.
func (w *Writer) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(w.tensors))
	for i, t := range w.tensors {
		out[i] = t.info
		out[i].Shape = slices.Clone(t.info.Shape)
	}
	return out
}

// WriteTensor appends data to the named tensor's bytes. A tensor may be written in several
// pieces; in total it must receive exactly its byte length (shape × dtype size), and more is
// refused without writing anything. Tensors may be written in any order: each has a fixed
// place in its file, so the output does not depend on the order of the calls.
func (w *Writer) WriteTensor(name string, data []byte) error {
	n := int64(len(data))
	s, off, err := w.reserve(name, &n, false)
	if err != nil || len(data) == 0 {
		return err
	}
	if _, err := s.f.WriteAt(data, off); err != nil {
		return w.fail(fmt.Errorf("safetensors: writer: %w", err))
	}
	return nil
}

// reserve claims the next n bytes of the named tensor, or with whole all of them (none may
// have been written before; n is then set to the tensor's size), and returns where they go:
// the shard and the file offset.
func (w *Writer) reserve(name string, n *int64, whole bool) (*wshard, int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return nil, 0, err
	}
	t := w.byName[name]
	if t == nil {
		return nil, 0, &usageError{file: w.dir, tensor: name, msg: "not declared to the writer"}
	}
	size := t.info.End - t.info.Begin
	if whole {
		if t.written != 0 {
			return nil, 0, &usageError{file: t.info.File, tensor: name, msg: fmt.Sprintf("CopyTensorFrom after %d bytes were written", t.written)}
		}
		*n = size
	}
	if *n > size-t.written {
		return nil, 0, &usageError{file: t.info.File, tensor: name, msg: fmt.Sprintf("%d more bytes would exceed its %d bytes (%d already written)", *n, size, t.written)}
	}
	off := t.shard.base + t.info.Begin + t.written
	t.written += *n
	return t.shard, off, nil
}

// fail records the writer's first write failure (the writer is then dead) and returns err.
func (w *Writer) fail(err error) error {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	return err
}

// CopyTensorFrom writes the whole of the named tensor, none of which may have been written
// yet, from the size bytes of file src at offset off: a tensor that goes into the
// checkpoint exactly as it is stored elsewhere (an fp16 embedding copied from the source
// model, say). On Linux the kernel copies the bytes (copy_file_range), which costs neither
// a user-space copy nor the page faults of reading through a mapping; elsewhere, or where
// the kernel cannot, it is read and written in chunks. The bytes are the same either way.
func (w *Writer) CopyTensorFrom(name string, src *os.File, off int64) error {
	var size int64
	s, dst, err := w.reserve(name, &size, true)
	if err != nil {
		return err
	}
	fail := func(err error) error { return w.fail(fmt.Errorf("safetensors: writer: %s: %w", name, err)) }
	var done int64
	if kernelCopy {
		if done, err = copyRange(s.f, dst, src, off, size); err != nil {
			return fail(err)
		}
	}
	buf := make([]byte, min(size-done, 4<<20))
	for done < size {
		b := buf[:min(int64(len(buf)), size-done)]
		if _, err := src.ReadAt(b, off+done); err != nil {
			return fail(err)
		}
		if _, err := s.f.WriteAt(b, dst+done); err != nil {
			return fail(err)
		}
		done += int64(len(b))
	}
	return nil
}

// WriteFloat32 converts src to the named tensor's dtype (F32, F16, BF16 or F64; see
// Float32ToHalf and Float32ToBFloat16 for the rounding) and appends it like WriteTensor. It
// converts in bounded chunks, so it never holds a second copy of a large tensor.
func (w *Writer) WriteFloat32(name string, src []float32) error {
	w.mu.Lock()
	t := w.byName[name]
	var remaining int64
	if t != nil {
		remaining = t.info.End - t.info.Begin - t.written
	}
	w.mu.Unlock()
	if t == nil {
		return &usageError{file: w.dir, tensor: name, msg: "not declared to the writer"}
	}
	var enc func([]byte, []float32)
	switch t.info.DType {
	case F32:
		enc = Float32ToBytes
	case F16:
		enc = Float32ToF16
	case BF16:
		enc = Float32ToBF16
	case F64:
		enc = Float32ToF64
	default:
		return &usageError{file: t.info.File, tensor: name, msg: fmt.Sprintf("WriteFloat32 cannot encode dtype %s", t.info.DType)}
	}
	es := int64(t.info.DType.Size())
	if int64(len(src)) > remaining/es {
		return &usageError{file: t.info.File, tensor: name, msg: fmt.Sprintf("%d more values would exceed its %d bytes (%d bytes left)", len(src), t.info.End-t.info.Begin, remaining)}
	}
	const chunk = 16 << 10 // values per conversion
	buf := make([]byte, min(len(src), chunk)*int(es))
	for len(src) > 0 {
		n := min(len(src), chunk)
		b := buf[:n*int(es)]
		enc(b, src[:n])
		if err := w.WriteTensor(name, b); err != nil {
			return err
		}
		src = src[n:]
	}
	return nil
}

func (w *Writer) usable() error {
	if w.finished {
		return errors.New("safetensors: writer: already closed")
	}
	return w.err
}

// Close verifies that every tensor received exactly its bytes, flushes the files to stable
// storage (fsync), renames them to their final names and, for several shards, writes the
// index last. On any error it removes the temporary files and returns the error.
//
// Each published file appears whole or not at all (rename is atomic). A set of shards cannot
// be replaced atomically as a whole: the index is renamed last, so a crash midway leaves the
// old index (or none) beside some new shards, never a new index naming missing shards.
// Once published, stale files of a previous save in the same folder under the same BaseName
// are removed (BaseName.safetensors after a sharded save, the index and other
// BaseName-NNNNN-of-NNNNN.safetensors shards after any save), as transformers does, so that
// Open on the folder cannot find an old checkpoint instead of the new one.
func (w *Writer) Close() (err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finished {
		return errors.New("safetensors: writer: already closed")
	}
	defer func() {
		if err != nil {
			w.abortLocked()
		}
	}()
	if w.err != nil {
		return w.err
	}
	for _, t := range w.tensors {
		if size := t.info.End - t.info.Begin; t.written != size {
			return &usageError{file: t.info.File, tensor: t.info.Name, msg: fmt.Sprintf("only %d of its %d bytes were written", t.written, size)}
		}
	}
	for _, s := range w.shards {
		// Every byte of the file has been written exactly once, so its size is known; a
		// mismatch would be a bug here, and publishing the file would hide it.
		if st, err := s.f.Stat(); err != nil {
			return fmt.Errorf("safetensors: writer: %w", err)
		} else if st.Size() != s.base+s.size {
			return fmt.Errorf("safetensors: writer: %s: internal error: file is %d bytes, want %d", s.final, st.Size(), s.base+s.size)
		}
		if w.syncs() {
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("safetensors: writer: %w", err)
			}
		}
		err := s.f.Close()
		s.f = nil
		if err != nil {
			return fmt.Errorf("safetensors: writer: %w", err)
		}
	}
	var ixTmp string
	if w.index != "" {
		if ixTmp, err = w.writeIndex(); err != nil {
			return err
		}
	}
	for _, s := range w.shards {
		if err := os.Rename(s.tmp, s.final); err != nil {
			os.Remove(ixTmp)
			return fmt.Errorf("safetensors: writer: %w", err)
		}
		s.tmp = ""
	}
	if ixTmp != "" {
		// The shards must be durable under their names before the index points at them.
		w.syncDir()
		if err := os.Rename(ixTmp, w.index); err != nil {
			os.Remove(ixTmp)
			return fmt.Errorf("safetensors: writer: %w", err)
		}
	}
	w.syncDir()
	w.finished = true
	return w.removeStale()
}

// EncodeIndex returns the model.safetensors.index.json of a sharded checkpoint whose
// tensors are infos (File naming each one's shard), in the format transformers writes:
// total_parameters and total_size, the weight map with sorted keys, two-space indent,
// trailing newline.
func EncodeIndex(infos []TensorInfo) []byte {
	var params, size int64
	weightMap := make(map[string]string, len(infos))
	for _, t := range infos {
		params += t.NumElements()
		size += t.NumElements() * int64(t.DType.Size())
		weightMap[t.Name] = filepath.Base(t.File)
	}
	doc := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_parameters": params, "total_size": size}, weightMap}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		panic(err) // maps of strings and integers always encode
	}
	return buf.Bytes()
}

// writeIndex writes the index under a temporary name in the format transformers writes:
// sorted keys, two-space indent, trailing newline.
func (w *Writer) writeIndex() (string, error) {
	infos := make([]TensorInfo, len(w.tensors))
	for i, t := range w.tensors {
		infos[i] = t.info
	}
	f, tmp, err := createTemp(w.index)
	if err != nil {
		return "", fmt.Errorf("safetensors: writer: %w", err)
	}
	_, err = f.Write(EncodeIndex(infos))
	if err == nil && w.syncs() {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("safetensors: writer: %w", err)
	}
	return tmp, nil
}

// removeStale deletes what a previous save under the same BaseName left that the new one
// does not overwrite.
func (w *Writer) removeStale() error {
	if w.base == "" {
		return nil
	}
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("safetensors: writer: checkpoint written, but listing %s for stale files failed: %w", w.dir, err)
	}
	keep := make(map[string]bool)
	for _, s := range w.shards {
		keep[filepath.Base(s.final)] = true
	}
	if w.index != "" {
		keep[filepath.Base(w.index)] = true
	}
	shardRE := regexp.MustCompile(`^` + regexp.QuoteMeta(w.base) + `-[0-9]{5,}-of-[0-9]{5,}\.safetensors$`)
	var first error
	for _, e := range ents {
		n := e.Name()
		if keep[n] || e.IsDir() {
			continue
		}
		if n == w.base+".safetensors" || n == w.base+".safetensors.index.json" || shardRE.MatchString(n) {
			if err := os.Remove(filepath.Join(w.dir, n)); err != nil && first == nil {
				first = fmt.Errorf("safetensors: writer: checkpoint written, but removing stale %w", err)
			}
		}
	}
	return first
}

// Abort closes and removes the temporary files. It is a no-op after a successful Close, so
// `defer w.Abort()` right after NewWriter cleans up on every error path.
func (w *Writer) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finished {
		return
	}
	w.abortLocked()
}

func (w *Writer) abortLocked() {
	w.finished = true
	for _, s := range w.shards {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
		if s.tmp != "" {
			os.Remove(s.tmp)
			s.tmp = ""
		}
	}
}

// syncWrites can be turned off by tests that write thousands of throwaway files (the
// fuzzers), where fsync would dominate the run time; it is never off in real use.
var syncWrites = true

// kernelCopy lets CopyTensorFrom use copyRange; tests turn it off to check the fallback.
var kernelCopy = true

func (w *Writer) syncs() bool { return syncWrites && !w.noSync }

// syncDir makes renames in the writer's folder durable. Best effort: some systems cannot
// fsync a folder, and the files themselves are already synced.
func (w *Writer) syncDir() {
	if !w.syncs() {
		return
	}
	if d, err := os.Open(w.dir); err == nil {
		d.Sync()
		d.Close()
	}
}
