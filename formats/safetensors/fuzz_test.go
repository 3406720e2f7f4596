package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; the seeds added here are the small valid
// and broken files the table tests use, so the fuzzer starts from both sides of every check.

func openSeeds() [][]byte {
	d4 := []byte{0, 0, 0x80, 0x3f}
	return [][]byte{
		rawFile(`{}`, nil),
		rawFile(`{"__metadata__":{"format":"pt"},`+f32("a", 0, 1)+`,"b":{"dtype":"F16","shape":[2,1],"data_offsets":[4,8]}}`, []byte{0, 0, 0x80, 0x3f, 0, 0x3c, 0, 0xc0}),
		rawFile(`{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}`, d4),
		rawFile(`{"a":{"dtype":"F8_E4M3","shape":[2,2],"data_offsets":[0,4]}}`, d4),
		rawFile(`{"a":{"dtype":"F8_E5M2","shape":[4],"data_offsets":[0,4]},"e":{"dtype":"I64","shape":[0],"data_offsets":[4,4]}}`, d4),
		rawFile(`{"a":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}`, append(d4, d4...)),
		rawFile(`{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}`, d4),
		rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, d4),
		rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}`, d4),
		rawFile(`{`+f32("a", 0, 1)+`,`+f32("a", 0, 1)+`}`, d4),
		rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, d4),
		rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, d4),
		rawFile(`{"a":{"dtype":"F32","x":[{}],"shape":[1],"data_offsets":[0,4]}}`, d4),
		rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, nil),
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{2, 0, 0, 0, 0, 0, 0, 0, '{', '}'},
	}
}

// noSync turns fsync off for the rest of a fuzz target: the fuzzers write thousands of
// throwaway files, and on a real disk fsync would take most of the time.
func noSync(f *testing.F) {
	syncWrites = false
	f.Cleanup(func() { syncWrites = true })
}

// FuzzOpen feeds arbitrary bytes to Open as a file. Open must not panic, and must either
// return a *FormatError (one line) or a checkpoint that is consistent with the file: every
// tensor's bytes readable and of the size its shape implies, the tensors covering the data
// section exactly, Float32 working for float tensors, and a rewrite with the Writer reading
// back identical.
func FuzzOpen(f *testing.F) {
	noSync(f)
	for _, s := range openSeeds() {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.safetensors")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(p)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a *FormatError: %v", err)
			}
			if fe.File != p || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("bad error: %q", err)
			}
			return
		}
		defer c.Close()
		checkConsistent(t, c, int64(len(data))-8-int64(binary.LittleEndian.Uint64(data)))

		// Everything accepted can be written back and reads the same.
		var tensors []Tensor
		for _, ti := range c.Tensors() {
			if ti.Name == "" {
				return // legal to read, refused by the writer
			}
			b, _ := c.Bytes(ti.Name)
			tensors = append(tensors, Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: b})
		}
		q := filepath.Join(dir, "rewrite.safetensors")
		if err := WriteFile(q, tensors, c.Metadata()); err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		c2, err := Open(q)
		if err != nil {
			t.Fatalf("reopen rewrite: %v", err)
		}
		defer c2.Close()
		assertSameTensors(t, c, c2)
		m1, m2 := c.Metadata(), c2.Metadata()
		if len(m1) != len(m2) {
			t.Fatalf("metadata %q became %q", m1, m2)
		}
		for k, v := range m1 {
			if m2[k] != v {
				t.Fatalf("metadata %q became %q", m1, m2)
			}
		}
	})
}

// checkConsistent asserts what a successfully opened checkpoint guarantees; dataLen is the
// single file's data section length, or -1 to skip that check.
func checkConsistent(t *testing.T, c *Checkpoint, dataLen int64) {
	t.Helper()
	var total int64
	ts := c.Tensors()
	for i, ti := range ts {
		if i > 0 && ts[i-1].Name >= ti.Name {
			t.Fatalf("Tensors not sorted and unique: %q, %q", ts[i-1].Name, ti.Name)
		}
		n, ok := byteSize(ti.DType, ti.Shape)
		if !ok || n != ti.Bytes() || ti.Begin < 0 || ti.Begin > ti.End {
			t.Fatalf("%v: inconsistent info: %d bytes, offsets [%d, %d]", ti, n, ti.Begin, ti.End)
		}
		b, err := c.Bytes(ti.Name)
		if err != nil || int64(len(b)) != n {
			t.Fatalf("%v: Bytes gave %d bytes, %v", ti, len(b), err)
		}
		total += n
		if ti.DType.IsFloat() {
			v, err := c.Float32(ti.Name)
			if err != nil || int64(len(v)) != ti.NumElements() {
				t.Fatalf("%v: Float32 gave %d values, %v", ti, len(v), err)
			}
		}
	}
	if dataLen >= 0 && total != dataLen {
		t.Fatalf("tensors hold %d bytes, data section is %d", total, dataLen)
	}
}

// FuzzOpenIndex feeds arbitrary bytes to Open as an index beside two valid shards.
func FuzzOpenIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":12},"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"s1.safetensors","b":"./s1.safetensors","c":"s2.safetensors"},"x":[1,{"y":null}]}`))
	f.Add([]byte(`{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors","c":"s2.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../s1.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{}}`))
	f.Add([]byte(`{"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}}`))
	dir := f.TempDir()
	writeTemp(f, dir, "s1.safetensors", rawFile(`{`+f32("a", 0, 1)+`,`+f32("b", 4, 1)+`}`, make([]byte, 8)))
	writeTemp(f, dir, "s2.safetensors", rawFile(`{`+f32("c", 0, 1)+`}`, make([]byte, 4)))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "model.safetensors.index.json")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(p)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("bad error: %q (%T)", err, err)
			}
			return
		}
		defer c.Close()
		checkConsistent(t, c, -1)
		if n := len(c.Tensors()); n != 0 && n != 1 && n != 2 && n != 3 {
			t.Fatalf("%d tensors", n)
		}
	})
}

// tensorsFromBytes derives a valid set of tensors from fuzz input: dtypes, shapes and names
// from the leading bytes, data from the rest (cycled).
func tensorsFromBytes(in []byte) []Tensor {
	next := func() byte {
		if len(in) == 0 {
			return 0
		}
		b := in[0]
		in = in[1:]
		return b
	}
	n := int(next() % 9)
	var out []Tensor
	seen := map[string]bool{}
	for i := range n {
		d := allDTypes[int(next())%len(allDTypes)]
		shape := make([]int64, next()%4)
		for j := range shape {
			shape[j] = int64(next() % 6)
		}
		nameLen := int(next() % 6)
		raw := make([]byte, nameLen)
		for j := range raw {
			raw[j] = next()
		}
		name := strings.ToValidUTF8(string(raw), "?")
		if name == "" || seen[name] || name == metadataKey || !utf8.ValidString(name) {
			name = "t" + string(rune('A'+i))
		}
		seen[name] = true
		size, _ := byteSize(d, shape)
		out = append(out, Tensor{Name: name, DType: d, Shape: shape, Data: make([]byte, size)})
	}
	for i := range out {
		for j := range out[i].Data {
			out[i].Data[j] = next() ^ byte(j)
		}
	}
	return out
}

// FuzzRoundTrip writes random tensors (sharded by a random cap, written in a random order
// and in pieces) and reads them back: everything must come back equal, and every file must
// be valid on its own.
func FuzzRoundTrip(f *testing.F) {
	noSync(f)
	f.Add([]byte{}, uint16(0), uint8(0))
	f.Add([]byte{3, 1, 2, 3, 4, 'a', 'b', 7, 1, 1, 0, 2, 2, 5, 5, 9, 9, 9, 9}, uint16(4), uint8(1))
	f.Add([]byte{8, 0, 3, 2, 3, 4, 1, 'x', 14, 1, 5, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, uint16(16), uint8(3))
	f.Add([]byte("\x05\x0b\x02\x03\x03\x02\xc3\xa9\x07\x00\x01\x09\x03\x01\x02\x03\x02\x00\x02\x01\x01\x00\x01\x05"), uint16(1), uint8(255))
	f.Fuzz(func(t *testing.T, in []byte, maxShard uint16, chunk uint8) {
		tensors := tensorsFromBytes(in)
		dir := t.TempDir()
		w, err := NewWriter(dir, infosOf(tensors), WriterOptions{MaxShardSize: int64(maxShard), Metadata: map[string]string{"format": "pt"}})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		// Write in reverse declaration order, in pieces of chunk+1 bytes.
		for i := len(tensors) - 1; i >= 0; i-- {
			d := tensors[i].Data
			for len(d) > 0 {
				k := min(len(d), int(chunk)+1)
				if err := w.WriteTensor(tensors[i].Name, d[:k]); err != nil {
					t.Fatal(err)
				}
				d = d[k:]
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
		checkConsistent(t, c, -1)
		checkContents(t, c, tensors)
		if !slices.Equal(c.Files(), w.Files()) {
			t.Fatalf("files %v, writer planned %v", c.Files(), w.Files())
		}
		// WriteFile gives the same single file as the writer would.
		p := filepath.Join(dir, "single.safetensors")
		if err := WriteFile(p, tensors, nil); err != nil {
			t.Fatal(err)
		}
		c1, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		checkContents(t, c1, tensors)
		if maxShard == 0 {
			a, _ := os.ReadFile(filepath.Join(dir, "model.safetensors"))
			b := rawFileFromWriter(t, tensors, map[string]string{"format": "pt"})
			if !bytes.Equal(a, b) {
				t.Fatal("Writer and WriteFile disagree")
			}
		}
	})
}

func rawFileFromWriter(t *testing.T, tensors []Tensor, meta map[string]string) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.safetensors")
	if err := WriteFile(p, tensors, meta); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
