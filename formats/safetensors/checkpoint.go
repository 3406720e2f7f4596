package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
)

// Checkpoint is one safetensors file, or a sharded set read through its index, opened for
// reading. Headers are parsed and validated by Open; tensor data stays on disk (mapped, where
// the platform allows) until asked for.
//
// All methods may be called from several goroutines at once, except Close, which must not
// run concurrently with the others.
type Checkpoint struct {
	path    string
	shards  []*shard
	entries []entry // sorted by name
	byName  map[string]int
	meta    map[string]string
	closed  atomic.Bool
}

type entry struct {
	info  TensorInfo
	shard *shard
}

// shard is one open .safetensors file.
type shard struct {
	path string
	hdr  *header
	base int64    // file offset of the data section: 8 + header length
	data []byte   // the whole file, mapped read-only; nil when not mapped
	f    *os.File // kept open for ReadAt when data is nil
}

// Open opens a checkpoint for reading. path is a .safetensors file, a *.safetensors.index.json
// file, or a folder holding model.safetensors or model.safetensors.index.json (the single
// file is preferred when both exist, as transformers does).
//
// Every file is treated as hostile: Open validates each header completely (see FormatError
// for what it reports) before any tensor can be read, so later reads never meet a bad offset.
// A malformed file gives a *FormatError naming the file and the tensor; an unreadable one the
// os package's error, wrapped.
//
// Sharded checkpoints must be consistent: every shard named in weight_map must exist and
// hold exactly the tensors weight_map assigns to it. A tensor in weight_map but not in its
// shard, a tensor in a shard but not in weight_map (which includes one tensor stored in two
// shards) are errors rather than warnings: either means the index and the shards come from
// different saves, and loading whichever copy happens to be found would produce a model no
// one wrote. Files in the folder that weight_map does not name are ignored.
func Open(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if st.IsDir() {
		single := filepath.Join(path, "model.safetensors")
		index := filepath.Join(path, "model.safetensors.index.json")
		switch {
		case isFile(single):
			return openSingle(single)
		case isFile(index):
			return openIndex(index)
		}
		return nil, &FormatError{File: path, Msg: "folder holds neither model.safetensors nor model.safetensors.index.json", Err: fs.ErrNotExist}
	}
	if strings.HasSuffix(path, ".json") {
		return openIndex(path)
	}
	return openSingle(path)
}

// errNoMmap means the file cannot be mapped here; the reader falls back to ReadAt.
var errNoMmap = errors.New("mmap not available")

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func openSingle(path string) (*Checkpoint, error) {
	s, err := openShard(path)
	if err != nil {
		return nil, err
	}
	return newCheckpoint(path, []*shard{s}, nil), nil
}

// newCheckpoint assembles a checkpoint from validated shards whose tensor names are known to
// be unique across shards.
func newCheckpoint(path string, shards []*shard, indexMeta map[string]string) *Checkpoint {
	c := &Checkpoint{path: path, shards: shards, byName: make(map[string]int)}
	merge := func(m map[string]string) { // first value of a key wins
		for k, v := range m {
			if _, ok := c.meta[k]; !ok {
				if c.meta == nil {
					c.meta = make(map[string]string)
				}
				c.meta[k] = v
			}
		}
	}
	for _, s := range shards {
		for _, t := range s.hdr.tensors {
			c.entries = append(c.entries, entry{info: t, shard: s})
		}
		merge(s.hdr.metadata)
	}
	merge(indexMeta)
	slices.SortFunc(c.entries, func(a, b entry) int { return strings.Compare(a.info.Name, b.info.Name) })
	for i, e := range c.entries {
		c.byName[e.info.Name] = i
	}
	return c
}

// openShard opens and validates one .safetensors file. It reads the 8-byte length and the
// header with ReadAt, so a hostile length never makes it read, map or allocate more than
// MaxHeaderSize bytes, and maps the file only once the header is known to describe it.
func openShard(path string) (s *shard, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &FormatError{File: path, Msg: "not a regular file"}
	}
	size := st.Size()
	if size < 8 {
		return nil, &FormatError{File: path, Msg: fmt.Sprintf("file is %d bytes, shorter than the 8-byte header length (truncated?)", size)}
	}
	var prefix [8]byte
	if _, err := f.ReadAt(prefix[:], 0); err != nil {
		return nil, readErr(path, err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > MaxHeaderSize {
		return nil, &FormatError{File: path, Msg: fmt.Sprintf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)}
	}
	if n > uint64(size-8) {
		return nil, &FormatError{File: path, Msg: fmt.Sprintf("header length %d runs past the end of the %d-byte file (truncated?)", n, size)}
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 8); err != nil {
		return nil, readErr(path, err)
	}
	base := 8 + int64(n)
	h, err := parseHeader(path, buf, size-base)
	if err != nil {
		return nil, err
	}
	s = &shard{path: path, hdr: h, base: base}
	// Map the file; where that is impossible (platform, file system) read through ReadAt.
	if data, merr := mmapFile(f, size); merr == nil {
		s.data = data
		f.Close()
	} else {
		s.f = f
	}
	return s, nil
}

// readErr turns a short read of a file whose size was just checked (it shrank meanwhile)
// into a FormatError; other errors are I/O errors and pass through.
func readErr(path string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &FormatError{File: path, Msg: "file ended early (truncated while being read?)", Err: err}
	}
	return err
}

func (s *shard) close() error {
	if s.data != nil {
		err := munmap(s.data)
		s.data = nil
		return err
	}
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		return err
	}
	return nil
}

func closeShards(shards []*shard) {
	for _, s := range shards {
		s.close()
	}
}

// Info returns the description of the named tensor; File is the shard holding it and
// Begin/End its offsets in that shard's data section. The Shape slice is the caller's own.
func (c *Checkpoint) Info(name string) (TensorInfo, bool) {
	i, ok := c.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := c.entries[i].info
	t.Shape = slices.Clone(t.Shape)
	return t, true
}

// Tensors returns every tensor's description, sorted by name. The slice and its shapes are
// the caller's own.
func (c *Checkpoint) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(c.entries))
	for i, e := range c.entries {
		out[i] = e.info
		out[i].Shape = slices.Clone(e.info.Shape)
	}
	return out
}

// Files returns the paths of the checkpoint's .safetensors files: one for a single file, the
// shards in name order for a sharded checkpoint.
func (c *Checkpoint) Files() []string {
	out := make([]string, len(c.shards))
	for i, s := range c.shards {
		out[i] = s.path
	}
	return out
}

// Metadata returns the files' __metadata__ string maps merged into one (a key present in
// several shards keeps the value of the first shard in name order). For a sharded checkpoint
// the index's "metadata" entries are added too, for keys no shard defines, as strings: a
// string as it is, any other JSON value (such as total_size's number) as its JSON text.
// It returns nil when there is no metadata; the map is the caller's own.
func (c *Checkpoint) Metadata() map[string]string {
	if len(c.meta) == 0 {
		return nil
	}
	out := make(map[string]string, len(c.meta))
	for k, v := range c.meta {
		out[k] = v
	}
	return out
}

func (c *Checkpoint) lookup(name string) (*entry, error) {
	i, ok := c.byName[name]
	if !ok {
		return nil, &usageError{file: c.path, tensor: name, err: ErrNotFound}
	}
	if c.closed.Load() {
		return nil, &usageError{file: c.path, tensor: name, err: ErrClosed}
	}
	return &c.entries[i], nil
}

// Bytes returns the raw little-endian bytes of the named tensor. Where the file is mapped
// (unix systems) it is a read-only view into the mapping: no copy, valid until Close, and
// writing to it crashes the program. Elsewhere it is a fresh copy. Its capacity equals its
// length, so append copies rather than writing past the tensor.
//
// If another process truncates a mapped file while it is open, touching the missing pages
// raises SIGBUS; that is the price of zero-copy reads, and the reason checkpoints should be
// replaced by rename (as Writer does), never rewritten in place.
func (c *Checkpoint) Bytes(name string) ([]byte, error) {
	e, err := c.lookup(name)
	if err != nil {
		return nil, err
	}
	return e.bytes()
}

func (e *entry) bytes() ([]byte, error) {
	s, t := e.shard, &e.info
	lo, hi := s.base+t.Begin, s.base+t.End
	if s.data != nil {
		return s.data[lo:hi:hi], nil
	}
	buf := make([]byte, hi-lo)
	if _, err := s.f.ReadAt(buf, lo); err != nil {
		return nil, readErr(s.path, err)
	}
	return buf, nil
}

// Float32 converts the named floating-point tensor (F64, F32, F16, BF16, F8_E4M3, F8_E5M2) to
// a new []float32 in row-major order. F64 values are rounded to nearest; the others convert
// exactly. Integer and boolean tensors are refused: their meaning (quantized codes, ids,
// masks) is for the caller to interpret. The tensor's mapped pages are released from the
// resident set afterwards (see ReleasePages), so converting a model tensor by tensor keeps
// only the converted copies resident.
func (c *Checkpoint) Float32(name string) ([]float32, error) {
	e, err := c.lookup(name)
	if err != nil {
		return nil, err
	}
	if !e.info.DType.IsFloat() {
		return nil, notFloat(&e.info)
	}
	dst := make([]float32, e.info.NumElements())
	if err := c.float32Into(e, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// Float32Into is Float32 writing into dst, which must hold exactly the tensor's number of
// elements, so that callers can reuse one buffer across tensors.
func (c *Checkpoint) Float32Into(name string, dst []float32) error {
	e, err := c.lookup(name)
	if err != nil {
		return err
	}
	return c.float32Into(e, dst)
}

func notFloat(t *TensorInfo) error {
	return &usageError{file: t.File, tensor: t.Name, msg: fmt.Sprintf("dtype %s is not a floating-point type", t.DType)}
}

func (c *Checkpoint) float32Into(e *entry, dst []float32) error {
	t := &e.info
	if !t.DType.IsFloat() {
		return notFloat(t)
	}
	if n := t.NumElements(); int64(len(dst)) != n {
		return &usageError{file: t.File, tensor: t.Name, msg: fmt.Sprintf("destination holds %d values, tensor %v has %d", len(dst), t.Shape, n)}
	}
	src, err := e.bytes()
	if err != nil {
		return err
	}
	if err := DecodeFloat32(t.DType, dst, src); err != nil {
		return notFloat(t)
	}
	if e.shard.data != nil {
		// The values now live in dst; the file's pages would otherwise stay in the resident
		// set for as long as the file is mapped, which for a model read layer by layer
		// grows to the whole model (see ReleasePages).
		releaseRange(src)
	}
	return nil
}

// Close releases the files and mappings. Slices returned by Bytes become invalid (touching a
// view of an unmapped file crashes); later Bytes and Float32 calls return ErrClosed. Closing
// twice is harmless.
func (c *Checkpoint) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	var first error
	for _, s := range c.shards {
		if err := s.close(); err != nil && first == nil {
			first = fmt.Errorf("safetensors: closing %s: %w", s.path, err)
		}
	}
	return first
}
