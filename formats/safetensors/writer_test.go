package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var allDTypes = []DType{F64, F32, F16, BF16, F8E4M3, F8E5M2, I64, I32, I16, I8, U8, Bool, U16, U32, U64}

// randomTensors makes n tensors cycling through every dtype, with varied shapes including
// scalars and empty tensors, filled with seeded random bytes.
func randomTensors(seed uint64, n int) []Tensor {
	r := rand.New(rand.NewPCG(seed, 7))
	shapes := [][]int64{{}, {0}, {1}, {3}, {2, 5}, {4, 0, 3}, {3, 4, 5}, {17}, {1, 1, 1, 2}}
	out := make([]Tensor, n)
	for i := range out {
		d := allDTypes[i%len(allDTypes)]
		s := shapes[r.IntN(len(shapes))]
		nb, _ := byteSize(d, s)
		data := make([]byte, nb)
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		if d == Bool {
			for j := range data {
				data[j] &= 1
			}
		}
		out[i] = Tensor{Name: "layer." + string(rune('a'+i%26)) + "." + string(d) + "." + string(rune('0'+i/26)), DType: d, Shape: s, Data: data}
	}
	return out
}

func infosOf(ts []Tensor) []TensorInfo {
	out := make([]TensorInfo, len(ts))
	for i, t := range ts {
		out[i] = TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	return out
}

// checkContents asserts that c holds exactly tensors, byte for byte, with every tensor
// aligned to its element size in its file, and Float32 agreeing with the converters.
func checkContents(t *testing.T, c *Checkpoint, tensors []Tensor) {
	t.Helper()
	got := c.Tensors()
	if len(got) != len(tensors) {
		t.Fatalf("%d tensors, want %d", len(got), len(tensors))
	}
	for _, want := range tensors {
		info, ok := c.Info(want.Name)
		if !ok {
			t.Fatalf("%q missing", want.Name)
		}
		if info.DType != want.DType || !equalShape(info.Shape, want.Shape) {
			t.Errorf("%q: %s%v, want %s%v", want.Name, info.DType, info.Shape, want.DType, want.Shape)
		}
		b, err := c.Bytes(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want.Data) {
			t.Errorf("%q: data differs", want.Name)
		}
		if info.Begin%int64(info.DType.Size()) != 0 {
			t.Errorf("%q: %s data at offset %d, not aligned", want.Name, info.DType, info.Begin)
		}
		if info.DType.IsFloat() {
			f, err := c.Float32(want.Name)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(f)) != info.NumElements() {
				t.Fatalf("%q: %d values, want %d", want.Name, len(f), info.NumElements())
			}
			for i := range f {
				var w float32
				switch info.DType {
				case F64:
					w = float32(math.Float64frombits(binary.LittleEndian.Uint64(want.Data[8*i:])))
				case F32:
					w = math.Float32frombits(binary.LittleEndian.Uint32(want.Data[4*i:]))
				case F16:
					w = HalfToFloat32(binary.LittleEndian.Uint16(want.Data[2*i:]))
				case BF16:
					w = BFloat16ToFloat32(binary.LittleEndian.Uint16(want.Data[2*i:]))
				case F8E4M3:
					w = F8E4M3ToFloat32(want.Data[i])
				case F8E5M2:
					w = F8E5M2ToFloat32(want.Data[i])
				}
				if !sameFloat(f[i], w) {
					t.Fatalf("%q[%d] = %g, want %g", want.Name, i, f[i], w)
				}
			}
		} else if _, err := c.Float32(want.Name); err == nil {
			t.Errorf("%q: Float32 accepted dtype %s", want.Name, info.DType)
		}
	}
}

func TestWriteFileRoundTripAllDTypes(t *testing.T) {
	tensors := randomTensors(1, 45)
	p := filepath.Join(t.TempDir(), "all.safetensors")
	meta := map[string]string{"format": "pt", "note": "ünïcode \"quoted\"\n"}
	if err := WriteFile(p, tensors, meta); err != nil {
		t.Fatal(err)
	}
	c, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkContents(t, c, tensors)
	if m := c.Metadata(); len(m) != 2 || m["note"] != meta["note"] {
		t.Errorf("metadata %q", m)
	}
	// Every dtype made it.
	seen := map[DType]bool{}
	for _, ti := range c.Tensors() {
		seen[ti.DType] = true
	}
	if len(seen) != len(allDTypes) {
		t.Errorf("dtypes %v", seen)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Errorf("folder holds %d entries, want only the file", len(ents))
	}
}

// TestHeaderBytes pins the exact header layout to that of the reference writer: compact
// JSON, metadata first, space padding to 8 bytes.
func TestHeaderBytes(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 24)
	Float32ToBytes(data, []float32{0, 1, 2, 3, 4, 5})
	cases := []struct {
		tensors []Tensor
		meta    map[string]string
		header  string
	}{
		{[]Tensor{{"attn.0", F32, []int64{1, 2, 3}, data}}, nil,
			`{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`}, // 64 bytes: no padding
		{nil, nil, `{}      `},
		{nil, map[string]string{"framework": "pt"}, `{"__metadata__":{"framework":"pt"}}     `},
		{[]Tensor{{"b", U8, []int64{1}, []byte{7}}, {"a", F16, []int64{}, []byte{0, 0x3c}}}, map[string]string{"z": "1", "a": "2"},
			`{"__metadata__":{"a":"2","z":"1"},"a":{"dtype":"F16","shape":[],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`},
		{[]Tensor{{"q\"<&>\\\x01", U8, []int64{0}, nil}}, nil, `{"q\"<&>\\\u0001":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`},
	}
	for i, c := range cases {
		p := filepath.Join(dir, "h"+string(rune('0'+i))+".safetensors")
		if err := WriteFile(p, c.tensors, c.meta); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		hdr := c.header
		for len(hdr)%8 != 0 {
			hdr += " "
		}
		var want []byte
		want = binary.LittleEndian.AppendUint64(want, uint64(len(hdr)))
		want = append(want, hdr...)
		for _, ts := range c.tensors {
			if ts.DType == F16 { // data order: larger elements first
				want = append(want, ts.Data...)
			}
		}
		for _, ts := range c.tensors {
			if ts.DType != F16 {
				want = append(want, ts.Data...)
			}
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %q\nwant %q", i, got, want)
		}
		ck, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		checkContents(t, ck, c.tensors)
		ck.Close()
	}
}

func TestShardedRoundTrip(t *testing.T) {
	tensors := randomTensors(2, 30)
	var total, params int64
	for _, ts := range tensors {
		total += int64(len(ts.Data))
		n := int64(1)
		for _, d := range ts.Shape {
			n *= d
		}
		params += n
	}
	dir := filepath.Join(t.TempDir(), "out", "nested") // created by NewWriter
	w, err := NewWriter(dir, infosOf(tensors), WriterOptions{MaxShardSize: 200, Metadata: map[string]string{"format": "pt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	files := w.Files()
	if len(files) < 3 {
		t.Fatalf("only %d shards for %d bytes at 200 per shard", len(files), total)
	}
	// Write in reverse order, in pieces, to show that order does not matter.
	for i := len(tensors) - 1; i >= 0; i-- {
		d := tensors[i].Data
		for len(d) > 0 {
			n := min(len(d), 7)
			if err := w.WriteTensor(tensors[i].Name, d[:n]); err != nil {
				t.Fatal(err)
			}
			d = d[n:]
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		want := filepath.Join(dir, "model-0000"+string(rune('1'+i))+"-of-0000"+string(rune('0'+len(files)))+".safetensors")
		if f != want {
			t.Errorf("shard %d is %s, want %s", i, f, want)
		}
		// Each shard respects the cap, unless it holds a single larger tensor.
		c, err := Open(f)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, ti := range c.Tensors() {
			sum += ti.Bytes()
		}
		if sum > 200 && len(c.Tensors()) > 1 {
			t.Errorf("%s holds %d bytes in %d tensors", f, sum, len(c.Tensors()))
		}
		c.Close()
	}
	// The index, as transformers writes it.
	raw, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ix struct {
		Metadata  map[string]int64
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &ix); err != nil {
		t.Fatal(err)
	}
	if ix.Metadata["total_size"] != total || ix.Metadata["total_parameters"] != params || len(ix.WeightMap) != len(tensors) {
		t.Errorf("index metadata %v, %d entries; want total_size %d, total_parameters %d, %d entries", ix.Metadata, len(ix.WeightMap), total, params, len(tensors))
	}
	if !strings.HasPrefix(string(raw), "{\n  \"metadata\": {\n    \"total_parameters\": ") || !strings.HasSuffix(string(raw), "\n  }\n}\n") {
		t.Errorf("index layout:\n%s", raw)
	}
	for _, p := range []string{dir, filepath.Join(dir, "model.safetensors.index.json")} {
		c, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.Files(), files) {
			t.Errorf("Files() = %v, want %v", c.Files(), files)
		}
		for _, ti := range c.Tensors() {
			if filepath.Base(ti.File) != ix.WeightMap[ti.Name] {
				t.Errorf("%s in %s, index says %s", ti.Name, ti.File, ix.WeightMap[ti.Name])
			}
		}
		checkContents(t, c, tensors)
		if m := c.Metadata(); m["format"] != "pt" {
			t.Errorf("metadata %v", m)
		}
		c.Close()
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != len(files)+1 {
		t.Errorf("folder holds %d entries, want %d shards and the index (temporaries left?)", len(ents), len(files))
	}
}

// writeAll writes tensors into dir through a Writer, in the given order of indices.
func writeAll(t *testing.T, dir string, tensors []Tensor, opts WriterOptions, order []int) []string {
	t.Helper()
	w, err := NewWriter(dir, infosOf(tensors), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, i := range order {
		if err := w.WriteTensor(tensors[i].Name, tensors[i].Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Files()
}

func readFolder(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func TestDeterministic(t *testing.T) {
	tensors := randomTensors(3, 40)
	opts := WriterOptions{MaxShardSize: 300, Metadata: map[string]string{"format": "pt", "b": "x", "a": "y"}}
	inOrder := make([]int, len(tensors))
	for i := range inOrder {
		inOrder[i] = i
	}
	shuffled := slices.Clone(inOrder)
	rand.New(rand.NewPCG(9, 9)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	writeAll(t, a, tensors, opts, inOrder)
	writeAll(t, b, tensors, opts, inOrder)
	writeAll(t, c, tensors, opts, shuffled)
	fa, fb, fc := readFolder(t, a), readFolder(t, b), readFolder(t, c)
	if len(fa) < 3 {
		t.Fatalf("only %d files", len(fa))
	}
	for name, x := range fa {
		if !bytes.Equal(x, fb[name]) {
			t.Errorf("%s differs between two identical writes", name)
		}
		if !bytes.Equal(x, fc[name]) {
			t.Errorf("%s differs when tensors are written in another order", name)
		}
	}
	// WriteFile gives the same bytes as a one-shard Writer.
	p := filepath.Join(t.TempDir(), "model.safetensors")
	if err := WriteFile(p, tensors, opts.Metadata); err != nil {
		t.Fatal(err)
	}
	d := t.TempDir()
	writeAll(t, d, tensors, WriterOptions{Metadata: opts.Metadata}, shuffled)
	x, _ := os.ReadFile(p)
	if !bytes.Equal(x, readFolder(t, d)["model.safetensors"]) {
		t.Error("WriteFile and Writer disagree")
	}
}

func TestWriteFloat32(t *testing.T) {
	vals := make([]float32, 40000) // more than one conversion chunk
	r := rand.New(rand.NewPCG(4, 4))
	for i := range vals {
		vals[i] = float32(r.NormFloat64())
	}
	vals[0], vals[1], vals[2] = 70000, float32(math.Inf(-1)), 1e-30
	dir := t.TempDir()
	decl := []TensorInfo{
		{Name: "f16", DType: F16, Shape: []int64{200, 200}},
		{Name: "bf16", DType: BF16, Shape: []int64{40000}},
		{Name: "f32", DType: F32, Shape: []int64{40000}},
		{Name: "f64", DType: F64, Shape: []int64{40000}},
		{Name: "i8", DType: I8, Shape: []int64{1}},
	}
	w, err := NewWriter(dir, decl, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, d := range decl[:4] {
		if err := w.WriteFloat32(d.Name, vals[:100]); err != nil { // in two calls
			t.Fatal(err)
		}
		if err := w.WriteFloat32(d.Name, vals[100:]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteFloat32("i8", []float32{1}); err == nil || !strings.Contains(err.Error(), "cannot encode dtype I8") {
		t.Errorf("WriteFloat32 to I8: %v", err)
	}
	if err := w.WriteFloat32("f32", []float32{1}); err == nil || !strings.Contains(err.Error(), "would exceed") {
		t.Errorf("WriteFloat32 past the end: %v", err)
	}
	if err := w.WriteTensor("i8", []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	round := map[string]func(float32) float32{
		"f16":  func(f float32) float32 { return HalfToFloat32(Float32ToHalf(f)) },
		"bf16": func(f float32) float32 { return BFloat16ToFloat32(Float32ToBFloat16(f)) },
		"f32":  func(f float32) float32 { return f },
		"f64":  func(f float32) float32 { return f },
	}
	buf := make([]float32, len(vals))
	for name, rt := range round {
		if err := c.Float32Into(name, buf); err != nil {
			t.Fatal(err)
		}
		for i := range vals {
			if !sameFloat(buf[i], rt(vals[i])) {
				t.Fatalf("%s[%d] = %g, want %g", name, i, buf[i], rt(vals[i]))
			}
		}
	}
	if f64, _ := c.Float32("f64"); f64[0] != 70000 {
		t.Errorf("f64 lost precision: %g", f64[0])
	}
	f16, _ := c.Float32("f16")
	if !math.IsInf(float64(f16[0]), 1) || f16[2] != 0 {
		t.Errorf("f16 overflow/underflow: %g %g", f16[0], f16[2])
	}
}

func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	ok := []TensorInfo{{Name: "a", DType: F32, Shape: []int64{2}}, {Name: "b", DType: U8, Shape: []int64{3}}}
	declErrs := []struct {
		name string
		decl []TensorInfo
		opts WriterOptions
		want string
	}{
		{"duplicate", []TensorInfo{ok[0], ok[0]}, WriterOptions{}, `tensor "a": declared twice`},
		{"empty name", []TensorInfo{{DType: F32}}, WriterOptions{}, "empty tensor name"},
		{"reserved name", []TensorInfo{{Name: "__metadata__", DType: F32}}, WriterOptions{}, "reserved"},
		{"bad UTF-8", []TensorInfo{{Name: "\xff", DType: F32}}, WriterOptions{}, "not valid UTF-8"},
		{"unknown dtype", []TensorInfo{{Name: "x", DType: "F4"}}, WriterOptions{}, `unknown dtype "F4"`},
		{"negative dim", []TensorInfo{{Name: "x", DType: F32, Shape: []int64{2, -1}}}, WriterOptions{}, "negative dimension"},
		{"overflow", []TensorInfo{{Name: "x", DType: F64, Shape: []int64{1 << 31, 1 << 31, 4}}}, WriterOptions{}, "overflows"},
		{"negative cap", ok, WriterOptions{MaxShardSize: -1}, "MaxShardSize -1 is negative"},
		{"bad base name", ok, WriterOptions{BaseName: "../x"}, "not a plain file name"},
		{"bad metadata", ok, WriterOptions{Metadata: map[string]string{"k": "\xff"}}, "not valid UTF-8"},
	}
	for _, c := range declErrs {
		if _, err := NewWriter(dir, c.decl, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("failed NewWriter calls left %d files", len(ents))
	}

	// Misuse of a live writer.
	w, err := NewWriter(dir, ok, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor("zz", []byte{1}); err == nil || !strings.Contains(err.Error(), `tensor "zz": not declared`) {
		t.Errorf("unknown tensor: %v", err)
	}
	if err := w.WriteTensor("b", []byte{1, 2, 3, 4}); err == nil || !strings.Contains(err.Error(), "would exceed its 3 bytes") {
		t.Errorf("too much data: %v", err)
	}
	if err := w.WriteTensor("a", make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor("b", []byte{1}); err != nil {
		t.Fatal(err)
	}
	err = w.Close()
	if err == nil || !strings.Contains(err.Error(), `tensor "b": only 1 of its 3 bytes were written`) {
		t.Errorf("incomplete tensor: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed Close left %d files", len(ents))
	}
	if err := w.WriteTensor("b", []byte{1}); err == nil {
		t.Error("write after Close accepted")
	}
	if err := w.Close(); err == nil {
		t.Error("second Close succeeded")
	}

	// Abort drops everything, and is harmless after Close.
	w, err = NewWriter(dir, ok, WriterOptions{MaxShardSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d temporaries, want 2", len(ents))
	}
	w.Abort()
	w.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Abort left %d files", len(ents))
	}

	// WriteFile checks data lengths before creating anything.
	p := filepath.Join(dir, "x.safetensors")
	err = WriteFile(p, []Tensor{{Name: "a", DType: F16, Shape: []int64{3}, Data: make([]byte, 5)}}, nil)
	if err == nil || !strings.Contains(err.Error(), `tensor "a": data is 5 bytes, shape [3] of F16 needs 6`) {
		t.Errorf("WriteFile with short data: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed WriteFile left %d files", len(ents))
	}
	// Writing into a path whose folder does not exist fails cleanly.
	if err := WriteFile(filepath.Join(dir, "missing", "x.safetensors"), nil, nil); err == nil {
		t.Error("WriteFile into a missing folder succeeded")
	}
}

// TestStaleFilesRemoved: saving into a folder that holds an older save under the same base
// name leaves exactly the new checkpoint, so that Open finds it.
func TestStaleFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	var tensors []Tensor
	for i := range 12 {
		tensors = append(tensors, Tensor{Name: string(rune('a' + i)), DType: U8, Shape: []int64{10}, Data: bytes.Repeat([]byte{byte(i)}, 10)})
	}
	all := make([]int, len(tensors))
	for i := range all {
		all[i] = i
	}
	writeTemp(t, dir, "unrelated.txt", []byte("keep me"))
	writeTemp(t, dir, "other-00001-of-00002.safetensors", []byte("keep me"))
	names := func() []string {
		ents, _ := os.ReadDir(dir)
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	var total int64
	for _, ts := range tensors {
		total += int64(len(ts.Data))
	}
	var shards []int
	for _, cap := range []int64{total / 6, total / 2, 0, total / 4} {
		files := writeAll(t, dir, tensors, WriterOptions{MaxShardSize: cap}, all)
		want := []string{"other-00001-of-00002.safetensors", "unrelated.txt"}
		for _, f := range files {
			want = append(want, filepath.Base(f))
		}
		if len(files) > 1 {
			want = append(want, "model.safetensors.index.json")
		}
		slices.Sort(want)
		if got := names(); !slices.Equal(got, want) {
			t.Errorf("after a save with %d shards: %v, want %v", len(files), got, want)
		}
		shards = append(shards, len(files))
	}
	if shards[0] <= shards[1] || shards[1] < 2 || shards[2] != 1 || shards[3] < 2 {
		t.Errorf("shard counts %v do not exercise the cases", shards)
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Files()) < 2 {
		t.Errorf("Open found %v", c.Files())
	}
	checkContents(t, c, tensors)
}

func TestCheckpointUsageErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.safetensors")
	err := WriteFile(p, []Tensor{
		{Name: "f", DType: F16, Shape: []int64{2}, Data: []byte{0, 0x3c, 0, 0xc0}},
		{Name: "i", DType: I32, Shape: []int64{1}, Data: []byte{1, 0, 0, 0}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var fe *FormatError
	if _, err := c.Bytes("nope"); !errors.Is(err, ErrNotFound) || errors.As(err, &fe) || !strings.Contains(err.Error(), `tensor "nope": no such tensor`) {
		t.Errorf("Bytes(nope): %v", err)
	}
	if _, err := c.Float32("i"); err == nil || !strings.Contains(err.Error(), "dtype I32 is not a floating-point type") {
		t.Errorf("Float32(i): %v", err)
	}
	if err := c.Float32Into("f", make([]float32, 3)); err == nil || !strings.Contains(err.Error(), "destination holds 3 values, tensor [2] has 2") {
		t.Errorf("Float32Into short: %v", err)
	}
	if v, err := c.Float32("f"); err != nil || v[0] != 1 || v[1] != -2 {
		t.Errorf("Float32(f) = %v, %v", v, err)
	}
	if _, ok := c.Info("nope"); ok {
		t.Error("Info(nope) found something")
	}
	// Info and Tensors hand out copies.
	info, _ := c.Info("f")
	info.Shape[0] = 99
	c.Tensors()[0].Shape[0] = 99
	if again, _ := c.Info("f"); again.Shape[0] != 2 {
		t.Error("Info shares its Shape with the checkpoint")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Bytes("f"); !errors.Is(err, ErrClosed) {
		t.Errorf("Bytes after Close: %v", err)
	}
	if _, err := c.Float32("f"); !errors.Is(err, ErrClosed) {
		t.Errorf("Float32 after Close: %v", err)
	}
	if len(c.Tensors()) != 2 {
		t.Error("Tensors after Close lost its list")
	}
}

// TestBytesIsBoundedView checks that the view cannot be appended into the next tensor.
func TestBytesIsBoundedView(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.safetensors")
	if err := WriteFile(p, []Tensor{{"a", U8, []int64{2}, []byte{1, 2}}, {"b", U8, []int64{2}, []byte{3, 4}}}, nil); err != nil {
		t.Fatal(err)
	}
	c, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, _ := c.Bytes("a")
	if cap(a) != len(a) {
		t.Errorf("cap %d, len %d", cap(a), len(a))
	}
	_ = append(a, 9) // must copy, not write into the mapping
	if b, _ := c.Bytes("b"); b[0] != 3 {
		t.Error("append wrote into the next tensor")
	}
}

// TestConcurrentUse writes different tensors from several goroutines and reads them back
// from several goroutines; run with -race, it checks the documented concurrency guarantees.
func TestConcurrentUse(t *testing.T) {
	tensors := randomTensors(8, 32)
	dir := t.TempDir()
	w, err := NewWriter(dir, infosOf(tensors), WriterOptions{MaxShardSize: 400})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	errs := make(chan error, len(tensors))
	for _, ts := range tensors {
		go func() {
			d := ts.Data
			for len(d) > 0 {
				n := min(len(d), 5)
				if err := w.WriteTensor(ts.Name, d[:n]); err != nil {
					errs <- err
					return
				}
				d = d[n:]
			}
			errs <- nil
		}()
	}
	for range tensors {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for _, ti := range c.Tensors() {
				if _, err := c.Bytes(ti.Name); err != nil {
					t.Error(err)
				}
				if ti.DType.IsFloat() {
					if _, err := c.Float32(ti.Name); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	checkContents(t, c, tensors)
}

// TestReadAtFallback exercises the path taken where files cannot be mapped (Windows, some
// file systems): the same checkpoint read through ReadAt gives the same results.
func TestReadAtFallback(t *testing.T) {
	tensors := randomTensors(10, 20)
	dir := t.TempDir()
	writeAll(t, dir, tensors, WriterOptions{MaxShardSize: 300}, []int{19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0})
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.shards {
		if s.data == nil {
			t.Skip("files are not mapped on this platform: the fallback is what the other tests use")
		}
		if err := munmap(s.data); err != nil {
			t.Fatal(err)
		}
		s.data = nil
		if s.f, err = os.Open(s.path); err != nil {
			t.Fatal(err)
		}
	}
	checkContents(t, c, tensors)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Bytes(tensors[0].Name); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// CopyTensorFrom copies a tensor's bytes from another file, by the kernel or, where it
// cannot, through a buffer: the checkpoint is the same either way.
func TestCopyTensorFrom(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3<<20+6) // more than one fallback chunk, not a multiple of it
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	src := filepath.Join(dir, "src.bin")
	if err := os.WriteFile(src, append([]byte("0123456789abc"), data...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, kernel := range []bool{true, false} {
		kernelCopy = kernel
		out := filepath.Join(dir, fmt.Sprint(kernel))
		decl := []TensorInfo{{Name: "a", DType: F16, Shape: []int64{int64(len(data) / 2)}}, {Name: "b", DType: U8, Shape: []int64{3}}}
		w, err := NewWriter(out, decl, WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.CopyTensorFrom("a", f, 13); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := w.CopyTensorFrom("a", f, 13); err == nil {
			t.Error("copying a tensor twice succeeded")
		}
		if err := w.WriteTensor("b", []byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		ck, err := Open(out)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := ck.Bytes("a")
		if !bytes.Equal(got, data) {
			t.Errorf("kernel copy %v: the copied tensor differs", kernel)
		}
		ck.Close()
	}
	kernelCopy = true
}
