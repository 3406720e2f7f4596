package safetensors

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// rawFile assembles a safetensors file from a header text and a data section, without any
// validation, so that tests can build every kind of broken file.
func rawFile(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func writeTemp(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// f32 is a header entry for an F32 tensor of shape [n] at [begin, begin+4n].
func f32(name string, begin, n int) string {
	return `"` + name + `":{"dtype":"F32","shape":[` + strconv.Itoa(n) + `],"data_offsets":[` +
		strconv.Itoa(begin) + `,` + strconv.Itoa(begin+4*n) + `]}`
}

// checkFormatError asserts that err is a one-line *FormatError about file and tensor whose
// message contains want.
func checkFormatError(t *testing.T, err error, file, tensor, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %q (%T) is not a *FormatError", err, err)
	}
	msg := err.Error()
	if fe.File != file {
		t.Errorf("File = %q, want %q (error: %s)", fe.File, file, msg)
	}
	if fe.Tensor != tensor {
		t.Errorf("Tensor = %q, want %q (error: %s)", fe.Tensor, tensor, msg)
	}
	if !strings.Contains(msg, file) {
		t.Errorf("error does not name the file: %s", msg)
	}
	if tensor != "" && !strings.Contains(msg, strconv.Quote(tensor)) {
		t.Errorf("error does not name the tensor: %s", msg)
	}
	if !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", msg, want)
	}
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error is not one line: %q", msg)
	}
	if !strings.HasPrefix(msg, "safetensors: ") {
		t.Errorf("error lacks the package prefix: %s", msg)
	}
}

func TestMalformedFiles(t *testing.T) {
	d4 := make([]byte, 4)
	d8 := make([]byte, 8)
	d12 := make([]byte, 12)
	big := make([]byte, 8)
	binary.LittleEndian.PutUint64(big, MaxHeaderSize+1)
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, ^uint64(0))
	past := make([]byte, 8, 20)
	binary.LittleEndian.PutUint64(past, 100)
	past = append(past, "{}          "...)

	cases := []struct {
		name   string
		file   []byte
		tensor string
		want   string
	}{
		{"empty file", nil, "", "0 bytes, shorter than the 8-byte header length"},
		{"seven bytes", []byte{1, 0, 0, 0, 0, 0, 0}, "", "7 bytes, shorter"},
		{"header length over limit", append(big, "{}"...), "", "exceeds the 100000000-byte limit"},
		{"header length 2^64-1", huge, "", "header length 18446744073709551615 exceeds"},
		{"header length past end", past, "", "header length 100 runs past the end of the 20-byte file"},
		{"invalid UTF-8", rawFile("{\"a\xff\":{}}", nil), "", "not valid UTF-8"},
		{"not JSON", rawFile("hello", nil), "", "invalid JSON in header"},
		{"JSON array", rawFile("[]", nil), "", "header is an array, want a JSON object"},
		{"JSON string", rawFile(`"x"`, nil), "", "header is a string, want a JSON object"},
		{"empty header", rawFile("", nil), "", "invalid JSON in header: unexpected EOF"},
		{"only spaces", rawFile("        ", nil), "", "unexpected EOF"},
		{"truncated JSON", rawFile(`{"a":`, nil), "a", "invalid JSON in tensor entry: unexpected EOF"},
		{"trailing object", rawFile(`{} {}`, nil), "", "unexpected an object after the header object"},
		{"trailing garbage", rawFile(`{}x`, nil), "", "invalid JSON after the header object"},
		{"entry not an object", rawFile(`{"a":5}`, nil), "a", "tensor entry is the number 5, want a JSON object"},
		{"entry null", rawFile(`{"a":null}`, nil), "a", "tensor entry is null"},
		{"missing dtype", rawFile(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, d4), "a", `entry has no "dtype"`},
		{"missing shape", rawFile(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, d4), "a", `entry has no "shape"`},
		{"missing offsets", rawFile(`{"a":{"dtype":"F32","shape":[1]}}`, d4), "a", `entry has no "data_offsets"`},
		{"dtype not string", rawFile(`{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, d4), "a", "dtype is the number 4, want a string"},
		{"unknown dtype", rawFile(`{"a":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]}}`, d4), "a", `unknown dtype "Q4_K"`},
		{"newer dtype F4", rawFile(`{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}`, d4[:1]), "a", `unknown dtype "F4"`},
		{"lower-case dtype", rawFile(`{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, d4), "a", `unknown dtype "f32"`},
		{"negative dim", rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, d4), "a", "shape has negative dimension -1"},
		{"float dim", rawFile(`{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}`, d4), "a", "shape value 1.0 is not an integer"},
		{"exponent dim", rawFile(`{"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}`, d4), "a", "shape value 1e0 is not an integer"},
		{"string dim", rawFile(`{"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}`, d4), "a", "shape holds a string, want integers"},
		{"nested dim", rawFile(`{"a":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}}`, d4), "a", "shape holds an array"},
		{"shape not array", rawFile(`{"a":{"dtype":"F32","shape":1,"data_offsets":[0,4]}}`, d4), "a", "shape is the number 1, want an array"},
		{"dim out of range", rawFile(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}`, d4), "a", "shape value 99999999999999999999 is out of range"},
		{"three offsets", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, d4), "a", "data_offsets has 3 values, want 2"},
		{"one offset", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}}`, d4), "a", "data_offsets has 1 values, want 2"},
		{"negative offset", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, d4), "a", "data_offsets holds negative value -4"},
		{"offset out of range", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}`, d4), "a", "out of range"},
		{"begin after end", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[10,5]}}`, d12), "a", "data_offsets [10, 5]: begin is after end"},
		{"end past data", rawFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, d8), "a", "data_offsets [0, 16] run past the end of the 8-byte data section"},
		{"size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, d4), "a", "data_offsets [0, 4] hold 4 bytes but shape [2] of F32 needs 8"},
		{"scalar mismatch", rawFile(`{"a":{"dtype":"F64","shape":[],"data_offsets":[0,4]}}`, d4), "a", "shape [] of F64 needs 8"},
		{"shape overflow", rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,4]}}`, d4), "a", "overflows"},
		{"shape overflow by dtype", rawFile(`{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}}`, d4), "a", "overflows"},
		{"overflow hidden by zero dim", rawFile(`{"a":{"dtype":"F32","shape":[0,4294967296,4294967296,4],"data_offsets":[0,0]}}`, nil), "a", "overflows"},
		{"first not at 0", rawFile(`{`+f32("a", 4, 1)+`}`, d8), "a", "the first tensor must begin at 0 (4 unused bytes)"},
		{"gap", rawFile(`{`+f32("a", 0, 1)+`,`+f32("b", 8, 1)+`}`, d12), "b", `gap of 4 bytes after tensor "a"`},
		{"overlap", rawFile(`{`+f32("a", 0, 2)+`,`+f32("b", 4, 1)+`}`, d8), "b", `overlap tensor "a", which ends at 8`},
		{"same offsets", rawFile(`{`+f32("a", 0, 1)+`,`+f32("b", 0, 1)+`}`, d4), "b", `overlap tensor "a"`},
		{"trailing bytes", rawFile(`{`+f32("a", 0, 1)+`}`, d8), "", `tensors cover 4 bytes of the 8-byte data section: 4 trailing bytes (last tensor "a")`},
		{"no tensors but data", rawFile(`{}`, d4), "", "declares no tensors but 4 bytes of data follow it"},
		{"truncated data", rawFile(`{`+f32("a", 0, 2)+`,`+f32("b", 8, 2)+`}`, d12), "b", "run past the end of the 12-byte data section (truncated file?)"},
		{"duplicate tensor", rawFile(`{`+f32("a", 0, 1)+`,`+f32("a", 0, 1)+`}`, d4), "a", "duplicate key in header"},
		{"duplicate field", rawFile(`{"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}`, d4), "a", `duplicate key "dtype" in tensor entry`},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), "__metadata__", "duplicate key in header"},
		{"duplicate metadata key", rawFile(`{"__metadata__":{"k":"1","k":"2"}}`, nil), "", `duplicate key "k" in __metadata__`},
		{"metadata value not string", rawFile(`{"__metadata__":{"k":1}}`, nil), "", `__metadata__ value for key "k" is the number 1, want a string`},
		{"metadata array", rawFile(`{"__metadata__":["k"]}`, nil), "", "__metadata__ is an array"},
		{"deeply nested unknown field", rawFile(`{"a":{"x":`+strings.Repeat("[", 65)+strings.Repeat("]", 65)+`,"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, d4), "a", `field "x" nests deeper than 64 levels`},
		{"control char in name", rawFile("{\"a\\nb\":{\"dtype\":\"Q\",\"shape\":[],\"data_offsets\":[0,0]}}", nil), "a\nb", `unknown dtype "Q"`},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeTemp(t, dir, "case"+strconv.Itoa(i)+".safetensors", c.file)
			ck, err := Open(p)
			if err == nil {
				ck.Close()
			}
			checkFormatError(t, err, p, c.tensor, c.want)
		})
	}
}

// TestEdgeCasesAccepted lists unusual files the reference implementation accepts, and so
// must we.
func TestEdgeCasesAccepted(t *testing.T) {
	d4 := []byte{0, 0, 0x80, 0x3f} // 1.0f
	cases := []struct {
		name    string
		file    []byte
		tensors int
		meta    map[string]string
	}{
		{"no tensors", rawFile(`{}`, nil), 0, nil},
		{"padded with spaces", rawFile(`{}      `, nil), 0, nil},
		{"leading white space", rawFile(" \n\t{"+f32("a", 0, 1)+"}", d4), 1, nil},
		{"null metadata", rawFile(`{"__metadata__":null,`+f32("a", 0, 1)+`}`, d4), 1, nil},
		{"metadata only", rawFile(`{"__metadata__":{"format":"pt"}}`, nil), 0, map[string]string{"format": "pt"}},
		{"nested unknown field at the limit", rawFile(`{"a":{"x":`+strings.Repeat("[", 64)+strings.Repeat("]", 64)+`,"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, d4), 1, nil},
		{"unknown field skipped", rawFile(`{"a":{"dtype":"F32","x":{"y":[1,{"z":null}]},"shape":[1],"data_offsets":[0,4]}}`, d4), 1, nil},
		{"scalar", rawFile(`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, d4), 1, nil},
		{"empty tensors share offsets", rawFile(`{"e1":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},`+f32("a", 0, 1)+`,"e2":{"dtype":"I8","shape":[3,0],"data_offsets":[4,4]}}`, d4), 3, nil},
		{"keys in any order", rawFile(`{"a":{"data_offsets":[0,4],"shape":[1],"dtype":"F32"}}`, d4), 1, nil},
		{"unsigned dtypes", rawFile(`{"a":{"dtype":"U16","shape":[2],"data_offsets":[0,4]}}`, d4), 1, nil},
		{"unicode name", rawFile(`{"Ü\u00e9":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, d4), 1, nil},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeTemp(t, dir, "ok"+strconv.Itoa(i)+".safetensors", c.file)
			ck, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			if n := len(ck.Tensors()); n != c.tensors {
				t.Errorf("%d tensors, want %d", n, c.tensors)
			}
			if m := ck.Metadata(); len(m) != len(c.meta) || m["format"] != c.meta["format"] {
				t.Errorf("metadata %v, want %v", m, c.meta)
			}
			for _, ti := range ck.Tensors() {
				b, err := ck.Bytes(ti.Name)
				if err != nil || int64(len(b)) != ti.Bytes() {
					t.Errorf("%s: %d bytes, %v", ti.Name, len(b), err)
				}
			}
		})
	}
}

// shardedFixture writes a valid two-shard checkpoint (a, b in shard 1; c in shard 2) and
// returns its folder; edit then breaks it.
func shardedFixture(t *testing.T, index string, shards map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range shards {
		writeTemp(t, dir, name, b)
	}
	writeTemp(t, dir, "model.safetensors.index.json", []byte(index))
	return dir
}

func TestMalformedSharded(t *testing.T) {
	s1 := rawFile(`{`+f32("a", 0, 1)+`,`+f32("b", 4, 1)+`}`, make([]byte, 8))
	s2 := rawFile(`{`+f32("c", 0, 1)+`}`, make([]byte, 4))
	s2withA := rawFile(`{`+f32("a", 0, 1)+`,`+f32("c", 4, 1)+`}`, make([]byte, 8))
	const n1, n2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
	good := map[string][]byte{n1: s1, n2: s2}
	wm := func(entries ...string) string {
		return `{"metadata":{"total_size":12},"weight_map":{` + strings.Join(entries, ",") + `}}`
	}
	e := func(tensor, shard string) string { return strconv.Quote(tensor) + ":" + strconv.Quote(shard) }
	goodIndex := wm(e("a", n1), e("b", n1), e("c", n2))

	// The fixture itself must open.
	ck, err := Open(shardedFixture(t, goodIndex, good))
	if err != nil {
		t.Fatal(err)
	}
	if len(ck.Tensors()) != 3 || len(ck.Files()) != 2 || ck.Metadata()["total_size"] != "12" {
		t.Errorf("fixture: %v, %v, %v", ck.Tensors(), ck.Files(), ck.Metadata())
	}
	ck.Close()

	const inIndex, inShard1, inShard2 = 0, 1, 2
	cases := []struct {
		name   string
		index  string
		shards map[string][]byte
		where  int // which file the error must name
		tensor string
		want   string
	}{
		{"missing shard", goodIndex, map[string][]byte{n1: s1}, inIndex, "c", `shard "` + n2 + `" named in weight_map cannot be opened`},
		{"weight_map tensor not in shard", wm(e("a", n1), e("b", n1), e("c", n2), e("d", n2)), good, inIndex, "d", `weight_map places the tensor in "` + n2 + `", which does not hold it`},
		{"weight_map tensor in wrong shard", wm(e("a", n1), e("b", n2), e("c", n2)), good, inIndex, "b", "which does not hold it"},
		{"shard tensor not in weight_map", wm(e("a", n1), e("c", n2)), good, inShard1, "b", "does not list it in weight_map"},
		{"tensor in two shards", goodIndex, map[string][]byte{n1: s1, n2: s2withA}, inShard2, "a", `stored in two shards: here and in "` + n1 + `"`},
		{"no weight_map", `{"metadata":{}}`, good, inIndex, "", `index has no "weight_map"`},
		{"weight_map null", `{"weight_map":null}`, good, inIndex, "", "weight_map is null"},
		{"weight_map array", `{"weight_map":[]}`, good, inIndex, "", "weight_map is an array"},
		{"weight_map value not string", `{"weight_map":{"a":1}}`, good, inIndex, "", `weight_map value for key "a" is the number 1`},
		{"duplicate weight_map key", wm(e("a", n1), e("a", n1), e("b", n1), e("c", n2)), good, inIndex, "", `duplicate key "a" in weight_map`},
		{"duplicate top-level key", `{"weight_map":{},"weight_map":{}}`, good, inIndex, "", `duplicate key "weight_map" in index`},
		{"index not JSON", `{"weight_map":`, good, inIndex, "", "invalid JSON in weight_map"},
		{"index not object", `[]`, good, inIndex, "", "index is an array"},
		{"index trailing data", goodIndex + `x`, good, inIndex, "", "invalid JSON after the index object"},
		{"index invalid UTF-8", "{\"weight_map\":{\"\xff\":\"x\"}}", good, inIndex, "", "index is not valid UTF-8"},
		{"shard outside folder", wm(e("a", "../"+n1)), good, inIndex, "a", `weight_map names shard "../` + n1 + `", which is not a file name inside the index's folder`},
		{"absolute shard path", wm(e("a", "/etc/passwd")), good, inIndex, "a", "not a file name inside"},
		{"empty shard name", wm(e("a", "")), good, inIndex, "a", "not a file name inside"},
		{"shard is a folder", wm(e("a", ".")), good, inIndex, "a", "not a file name inside"},
		{"malformed shard", goodIndex, map[string][]byte{n1: s1, n2: rawFile(`{`+f32("c", 0, 2)+`}`, make([]byte, 4))}, inShard2, "c", "run past the end"},
		{"shard is the index", wm(e("a", "model.safetensors.index.json")), good, inIndex + 10, "", "exceeds the 100000000-byte limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := shardedFixture(t, c.index, c.shards)
			index := filepath.Join(dir, "model.safetensors.index.json")
			file := map[int]string{inIndex: index, inShard1: filepath.Join(dir, n1), inShard2: filepath.Join(dir, n2), inIndex + 10: index}[c.where]
			for _, p := range []string{dir, index} {
				ck, err := Open(p)
				if err == nil {
					ck.Close()
				}
				checkFormatError(t, err, file, c.tensor, c.want)
			}
		})
	}

	// A missing shard is also recognisable as such.
	_, err = Open(shardedFixture(t, goodIndex, map[string][]byte{n1: s1}))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing shard: %v does not wrap fs.ErrNotExist", err)
	}
	// "./name" and "name" are one shard, opened once.
	ck, err = Open(shardedFixture(t, wm(e("a", n1), e("b", "./"+n1), e("c", n2)), good))
	if err != nil {
		t.Fatal(err)
	}
	if len(ck.Files()) != 2 {
		t.Errorf("files %v", ck.Files())
	}
	ck.Close()
}

func TestOpenPaths(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "nope.safetensors")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	var fe *FormatError
	if _, err := Open(dir); !errors.As(err, &fe) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "neither model.safetensors nor") {
		t.Errorf("empty folder: %v", err)
	}
	// A folder with both prefers the single file, as transformers does.
	single := rawFile(`{`+f32("single", 0, 1)+`}`, make([]byte, 4))
	writeTemp(t, dir, "model.safetensors", single)
	writeTemp(t, dir, "model.safetensors.index.json", []byte(`{"weight_map":{}}`))
	ck, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ck.Info("single"); !ok {
		t.Error("folder with both did not open model.safetensors")
	}
	ck.Close()
	// An index with an empty weight_map is an empty checkpoint.
	ck, err = Open(filepath.Join(dir, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ck.Tensors()) != 0 || len(ck.Files()) != 0 {
		t.Errorf("empty index: %v %v", ck.Tensors(), ck.Files())
	}
	ck.Close()
}
