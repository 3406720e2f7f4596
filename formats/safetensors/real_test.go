package safetensors

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

// The reference sums and elements below were computed independently of this package, with
// Python's struct module (struct.unpack '<e' / '<f', bf16 as the top half of a float32) and
// math.fsum over the raw tensor bytes.

// realCheck is what a real checkpoint must look like once opened.
type realCheck struct {
	tensors int
	files   int
	dtype   DType
	bytes   int64 // total tensor bytes
	params  int64 // total elements, 0 to skip
	shapes  map[string][]int64
	sums    map[string]refSum
}

type refSum struct {
	n           int
	sum         float64
	first, last float32
}

func checkReal(t *testing.T, path string, want realCheck) *Checkpoint {
	t.Helper()
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ts := c.Tensors()
	if len(ts) != want.tensors {
		t.Errorf("%d tensors, want %d", len(ts), want.tensors)
	}
	if got := len(c.Files()); got != want.files {
		t.Errorf("%d files, want %d: %v", got, want.files, c.Files())
	}
	var total, params int64
	for i, ti := range ts {
		if i > 0 && ts[i-1].Name >= ti.Name {
			t.Errorf("Tensors not sorted: %q before %q", ts[i-1].Name, ti.Name)
		}
		if ti.DType != want.dtype {
			t.Errorf("%s: dtype %s, want %s", ti.Name, ti.DType, want.dtype)
		}
		b, err := c.Bytes(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != ti.Bytes() || ti.Bytes() != ti.NumElements()*int64(ti.DType.Size()) {
			t.Errorf("%s: %d bytes from Bytes, info says %d, shape %v", ti.Name, len(b), ti.Bytes(), ti.Shape)
		}
		total += ti.Bytes()
		params += ti.NumElements()
	}
	if total != want.bytes {
		t.Errorf("total bytes %d, want %d", total, want.bytes)
	}
	if want.params != 0 && params != want.params {
		t.Errorf("total parameters %d, want %d", params, want.params)
	}
	for name, shape := range want.shapes {
		info, ok := c.Info(name)
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if !equalShape(info.Shape, shape) {
			t.Errorf("%s: shape %v, want %v", name, info.Shape, shape)
		}
	}
	for name, ref := range want.sums {
		v, err := c.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for _, x := range v {
			s += float64(x)
		}
		if len(v) != ref.n || v[0] != ref.first || v[len(v)-1] != ref.last || math.Abs(s-ref.sum) > 1e-9*math.Max(1, math.Abs(ref.sum)) {
			t.Errorf("%s: n=%d sum=%.12g first=%g last=%g, want n=%d sum=%.12g first=%g last=%g",
				name, len(v), s, v[0], v[len(v)-1], ref.n, ref.sum, ref.first, ref.last)
		}
	}
	return c
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTinyLlama(t *testing.T) {
	path := sharedtest.Testdata("tiny-llama/model.safetensors")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	const headerLen = 4144
	for _, p := range []string{path, filepath.Dir(path)} {
		c := checkReal(t, p, realCheck{
			tensors: 39, files: 1, dtype: F16, bytes: st.Size() - 8 - headerLen,
			shapes: map[string][]int64{
				"model.embed_tokens.weight":              {4096, 256},
				"lm_head.weight":                         {4096, 256},
				"model.layers.0.self_attn.k_proj.weight": {128, 256},
				"model.layers.3.mlp.down_proj.weight":    {256, 768},
				"model.norm.weight":                      {256},
			},
			sums: map[string]refSum{
				"model.norm.weight":                      {256, 378.87255859375, 1.515625, 1.4873046875},
				"model.layers.3.self_attn.k_proj.weight": {32768, -8.96290636062622, -0.046051025390625, -0.1146240234375},
			},
		})
		if m := c.Metadata(); m["format"] != "pt" || len(m) != 1 {
			t.Errorf("metadata %v, want format=pt", m)
		}
		if f := c.Files(); f[0] != path {
			t.Errorf("Files() = %v, want [%s]", f, path)
		}
	}
}

func TestSmallLlamaSharded(t *testing.T) {
	dir := sharedtest.Path(t, "models/small-llama")
	for _, p := range []string{dir, filepath.Join(dir, "model.safetensors.index.json")} {
		c := checkReal(t, p, realCheck{
			tensors: 57, files: 3, dtype: BF16, bytes: 31467264, params: 15733632,
			shapes: map[string][]int64{
				"model.embed_tokens.weight":              {8192, 384},
				"lm_head.weight":                         {8192, 384},
				"model.layers.5.self_attn.k_proj.weight": {128, 384},
				"model.layers.0.mlp.up_proj.weight":      {1024, 384},
			},
			sums: map[string]refSum{
				"model.norm.weight":         {384, 549.3984375, 1.4921875, 1.4921875},
				"model.embed_tokens.weight": {3145728, 1515.4007026592735, -0.015869140625, -0.051513671875},
			},
		})
		m := c.Metadata()
		if m["format"] != "pt" || m["total_size"] != "31467264" || m["total_parameters"] != "15733632" {
			t.Errorf("metadata %v", m)
		}
		for i, f := range c.Files() {
			want := filepath.Join(dir, []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"}[i])
			if f != want {
				t.Errorf("Files()[%d] = %s, want %s", i, f, want)
			}
		}
		if info, _ := c.Info("lm_head.weight"); filepath.Base(info.File) != "model-00003-of-00003.safetensors" {
			t.Errorf("lm_head.weight in %s", info.File)
		}
	}
}

func TestStories260K(t *testing.T) {
	path := sharedtest.Path(t, "models/stories260K/model.safetensors")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	const headerLen = 4856
	checkReal(t, path, realCheck{
		tensors: 47, files: 1, dtype: F32, bytes: st.Size() - 8 - headerLen,
		shapes: map[string][]int64{
			"model.embed_tokens.weight":              {512, 64},
			"model.layers.0.self_attn.k_proj.weight": {32, 64},
			"model.layers.4.mlp.gate_proj.weight":    {172, 64},
		},
		sums: map[string]refSum{
			"model.norm.weight": {64, 115.95276230573654, 2.4583089351654053, 1.7077769041061401},
		},
	})
}

// TestRealRewrite copies a real checkpoint through the Writer and checks that every tensor
// survives byte for byte.
func TestRealRewrite(t *testing.T) {
	src, err := Open(sharedtest.Testdata("tiny-llama/model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	w, err := NewWriter(dir, src.Tensors(), WriterOptions{MaxShardSize: 4 << 20, Metadata: src.Metadata()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, ti := range src.Tensors() {
		b, err := src.Bytes(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensor(ti.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dst, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if len(dst.Files()) != 3 {
		t.Errorf("%d shards, want 3 (10 MB at 4 MiB per shard): %v", len(dst.Files()), dst.Files())
	}
	assertSameTensors(t, src, dst)
}

func assertSameTensors(t *testing.T, a, b *Checkpoint) {
	t.Helper()
	ta, tb := a.Tensors(), b.Tensors()
	if len(ta) != len(tb) {
		t.Fatalf("%d tensors vs %d", len(ta), len(tb))
	}
	for i := range ta {
		if ta[i].Name != tb[i].Name || ta[i].DType != tb[i].DType || !equalShape(ta[i].Shape, tb[i].Shape) {
			t.Fatalf("tensor %d: %v vs %v", i, ta[i], tb[i])
		}
		x, err := a.Bytes(ta[i].Name)
		if err != nil {
			t.Fatal(err)
		}
		y, err := b.Bytes(tb[i].Name)
		if err != nil {
			t.Fatal(err)
		}
		if string(x) != string(y) {
			t.Fatalf("%s: data differs", ta[i].Name)
		}
	}
}
