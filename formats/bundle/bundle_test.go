package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRoundTrip(t *testing.T) {
	files := map[string]string{"config.json": `{"a":1}`, "model.safetensors": strings.Repeat("x", 100000), "sub/odyssey.json": "{}"}
	src := writeTree(t, files)
	out := filepath.Join(t.TempDir(), "m.tar.zst")
	if err := Write(src, out); err != nil {
		t.Fatal(err)
	}
	if !IsBundle(out) || IsBundle(filepath.Join(src, "config.json")) {
		t.Error("IsBundle wrong")
	}
	dst := filepath.Join(t.TempDir(), "x")
	man, err := Extract(out, dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(man.Files) != 3 {
		t.Errorf("manifest %+v", man)
	}
	for name, body := range files {
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(b) != body {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Deterministic: bundling again gives the same bytes.
	out2 := filepath.Join(t.TempDir(), "m2.tar.zst")
	if err := Write(src, out2); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(out2)
	if !bytes.Equal(a, b) {
		t.Error("bundle bytes differ between runs")
	}
}

// rawBundle builds a bundle by hand so tests can craft hostile ones.
func rawBundle(t *testing.T, entries []struct{ name, body string }) []byte {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(e.body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestHostile(t *testing.T) {
	src := writeTree(t, map[string]string{"a.txt": "hello", "b.txt": "world"})
	good := filepath.Join(t.TempDir(), "g.tar.zst")
	if err := Write(src, good); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(good)
	const sumHello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	man := `{"format":1,"files":[{"path":"a.txt","size":5,"sha256":"` + sumHello + `"}]}`
	cases := map[string][]byte{
		"truncated":  data[:len(data)*2/3],
		"garbage":    []byte("not zstd at all"),
		"traversal":  rawBundle(t, []struct{ name, body string }{{ManifestName, `{"format":1,"files":[{"path":"../x","size":5,"sha256":"` + sumHello + `"}]}`}, {"../x", "hello"}}),
		"corrupt":    rawBundle(t, []struct{ name, body string }{{ManifestName, man}, {"a.txt", "hellp"}}),
		"unlisted":   rawBundle(t, []struct{ name, body string }{{ManifestName, man}, {"a.txt", "hello"}, {"c.txt", "x"}}),
		"missing":    rawBundle(t, []struct{ name, body string }{{ManifestName, man}}),
		"duplicate":  rawBundle(t, []struct{ name, body string }{{ManifestName, man}, {"a.txt", "hello"}, {"a.txt", "hello"}}),
		"nomanifest": rawBundle(t, []struct{ name, body string }{{"a.txt", "hello"}}),
		"badjson":    rawBundle(t, []struct{ name, body string }{{ManifestName, `{"format":1,"files":[`}}),
	}
	for name, b := range cases {
		p := filepath.Join(t.TempDir(), name+".tar.zst")
		os.WriteFile(p, b, 0o644)
		dst := filepath.Join(t.TempDir(), "out")
		if _, err := Extract(p, dst); err == nil {
			t.Errorf("%s: extracted without error", name)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
		if _, err := os.Stat(dst); err == nil {
			t.Errorf("%s: left a partial extraction behind", name)
		}
	}
}

func FuzzExtract(f *testing.F) {
	f.Add(rawBundle(nil, []struct{ name, body string }{{ManifestName, `{"format":1,"files":[]}`}}))
	f.Add([]byte{0x28, 0xB5, 0x2F, 0xFD, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		dst := t.TempDir()
		extract(bytes.NewReader(data), dst, Options{MaxBytes: 1 << 20, Context: context.Background()}) // must not panic or escape dst
	})
}
