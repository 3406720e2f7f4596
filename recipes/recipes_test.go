package recipes

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.golden from the current messages")

// semantic returns r without where it came from, for comparing what recipes mean.
func semantic(r *Recipe) Recipe {
	c := *r.clone()
	c.Source, c.src = "", nil
	return c
}

func mustParse(t *testing.T, text string) *Recipe {
	t.Helper()
	r, err := Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatalf("Parse:\n%s\n---\n%v", text, err)
	}
	return r
}

func TestPresets(t *testing.T) {
	names := Presets()
	want := []string{"w4a16-gptq", "w4a8-fptq", "w4a8-odyssey", "w4a8-rtn", "w8a8-smoothquant"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("Presets() = %v, want %v", names, want)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			r, err := Preset(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if r.Source != name || r.Description == "" || strings.Contains(r.Description, "\n") {
				t.Errorf("source %q, description %q: want the name and one line", r.Source, r.Description)
			}
			l, err := Load(name)
			if err != nil || !reflect.DeepEqual(semantic(l), semantic(r)) {
				t.Errorf("Load(%q) = %+v, %v; want the preset", name, l, err)
			}
			if _, err := r.ValidateForModel(tinyLlama); err != nil {
				t.Errorf("ValidateForModel(tiny-llama): %v", err)
			}
			// A recipe that only names the preset as its base is the preset.
			b := mustParse(t, fmt.Sprintf("version: 1\nbase: %s\ndescription: %q\n", name, r.Description))
			if !reflect.DeepEqual(semantic(b), semantic(r)) {
				t.Errorf("base: %s resolves to\n%+v\nwant\n%+v", name, semantic(b), semantic(r))
			}
		})
	}
	// Each preset is a different quantization.
	seen := map[string]string{}
	for _, name := range names {
		r, _ := Preset(name)
		if other, dup := seen[r.Hash()]; dup {
			t.Errorf("presets %s and %s have the same hash", name, other)
		}
		seen[r.Hash()] = name
	}
	if _, err := Preset("w4a8-ftpq"); err == nil || !strings.Contains(err.Error(), `did you mean "w4a8-fptq"`) {
		t.Errorf("unknown preset: %v", err)
	}
	if _, err := Preset("../recipes/presets/w4a8-rtn"); err == nil {
		t.Error("a path is not a preset name")
	}
}

// The documented defaults are the default preset's values: a recipe that says nothing is
// w4a8-fptq.
func TestDefaultIsPreset(t *testing.T) {
	p, err := Preset(Default)
	if err != nil {
		t.Fatal(err)
	}
	d := defaults()
	d.Description = p.Description
	if !reflect.DeepEqual(semantic(d), semantic(p)) {
		t.Errorf("defaults()\n%+v\ndiffer from preset %s\n%+v", semantic(d), Default, semantic(p))
	}
	empty := mustParse(t, "version: 1\n")
	if empty.Hash() != p.Hash() {
		t.Errorf("`version: 1` hashes %s, preset %s %s", empty.Hash(), Default, p.Hash())
	}
}

func TestRoundTrip(t *testing.T) {
	var recipes []*Recipe
	for _, name := range Presets() {
		r, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		recipes = append(recipes, r)
	}
	for _, text := range []string{
		"version: 1\ncalibration: {data: corpus/c4.jsonl, samples: 7, seq_len: 33, seed: 9, propagate: full-precision}\n",
		"version: 1\ncalibration: {data: notes.txt, format: jsonl}\nequalization: {statistic: range, pairs: [down]}\n",
		"version: 1\nactivations: {thresholds: {v0: 0.5, v1: 1e3}}\nweights: {group_size: 32, clip: {search: true, min: 0.125, steps: 7}, fallback: error}\n",
		"version: 1\nbase: w4a8-odyssey\nweights: {gptq: {damp: 1e-05, block_size: 96}}\ninteger_scale: {amplifier: 256}\n",
		"version: 1\nbase: w8a8-smoothquant\nequalization: {alpha: 0.85}\nactivations: {policy: static}\nskip: []\noutput: {shard_size: 1536MiB, format: compressed-tensors}\n",
		"version: 1\ndescription: |\n  two\n  lines: with \"quotes\"\nweights: {group_size: per-channel}\ninteger_scale: {enabled: false}\nskip: [\"layers.*.mlp.down_proj\", \"true\", \"123\"]\noutput: {shard_size: 5GB}\n",
	} {
		recipes = append(recipes, mustParse(t, text))
	}
	for _, r := range recipes {
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse("marshalled.yaml", b)
		if err != nil {
			t.Fatalf("Parse(Marshal(%s)):\n%s\n%v", r.Source, b, err)
		}
		if !reflect.DeepEqual(semantic(back), semantic(r)) {
			t.Errorf("round trip of %s changed it:\n%s\n%+v\n%+v", r.Source, b, semantic(r), semantic(back))
		}
		b2, _ := back.Marshal()
		if string(b2) != string(b) || back.Hash() != r.Hash() {
			t.Errorf("Marshal is not stable for %s:\n%s\n---\n%s", r.Source, b, b2)
		}
	}
}

func TestResolution(t *testing.T) {
	// Overriding a base keeps the rest of the base.
	r := mustParse(t, "version: 1\nbase: w8a8-smoothquant\nequalization:\n  alpha: 0.8\n")
	sq, _ := Preset("w8a8-smoothquant")
	if r.Equalization.Alpha != 0.8 || r.Weights.Bits != 8 || r.IntegerScale.Enabled || !reflect.DeepEqual(r.Equalization.Pairs, sq.Equalization.Pairs) {
		t.Errorf("base w8a8-smoothquant with alpha 0.8: %+v", r)
	}
	if r.Description != "" {
		t.Errorf("the base's description was inherited: %q", r.Description)
	}
	// Values of the base that stop applying are dropped silently; the file did not set them.
	r = mustParse(t, "version: 1\nbase: w4a8-odyssey\nweights:\n  method: rtn\n")
	b, _ := r.Marshal()
	if strings.Contains(string(b), "gptq:") || !r.Weights.Clip.Search {
		t.Errorf("odyssey with rtn:\n%s", b)
	}
	// Values that start applying get their defaults.
	r = mustParse(t, "version: 1\nbase: w4a8-rtn\nequalization: {method: lae}\nactivations: {policy: fptq}\n")
	if r.Activations.Thresholds != (Thresholds{15, 150}) || r.Equalization.Statistic != AbsMax {
		t.Errorf("rtn made fptq: %+v", r)
	}
	// The calibration format follows the data's extension unless given.
	for _, c := range []struct{ text, format string }{
		{"version: 1\ncalibration: {data: c4.jsonl}\n", "jsonl"},
		{"version: 1\ncalibration: {data: wiki.test.raw}\n", "text"},
		{"version: 1\ncalibration: {data: c4.JSONL}\n", "jsonl"},
		{"version: 1\ncalibration: {data: dump.json, format: jsonl}\n", "jsonl"},
		{"version: 1\n", ""},
	} {
		if r := mustParse(t, c.text); r.Calibration.Format != c.format {
			t.Errorf("%q: format %q, want %q", c.text, r.Calibration.Format, c.format)
		}
	}
}

func TestHash(t *testing.T) {
	a := mustParse(t, "version: 1\nweights: {group_size: 64}\n")
	b := mustParse(t, "# comment\ndescription: same thing, other words\nweights:\n  method: rtn\n  group_size: 64\nversion: 1\ncalibration: {seed: 0}\n")
	c := mustParse(t, "version: 1\nweights: {group_size: 128}\n")
	if a.Hash() != b.Hash() {
		t.Errorf("equal recipes hash differently: %s %s", a.Hash(), b.Hash())
	}
	if a.Hash() == c.Hash() || !strings.HasPrefix(a.Hash(), "sha256:") || len(a.Hash()) != 7+64 {
		t.Errorf("hashes %s %s", a.Hash(), c.Hash())
	}
}

// TestBadRecipes checks the exact messages for broken recipes against
// testdata/bad/*.golden; run with -update to rewrite them after a deliberate change, and
// review the diff.
func TestBadRecipes(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad recipes: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(filepath.ToSlash(file), data)
			var rerr *Error
			if !errors.As(err, &rerr) || len(rerr.Problems) == 0 {
				t.Fatalf("Parse accepted a bad recipe (err %v)", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("messages differ from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
			for _, p := range rerr.Problems {
				if p.File != filepath.ToSlash(file) || p.Message == "" {
					t.Errorf("problem %+v: want file %s and a message", p, file)
				}
			}
		})
	}
}

// Recipes built in Go get the same checks, without positions.
func TestValidateGo(t *testing.T) {
	r := defaults()
	r.Calibration.Samples = 0
	r.Equalization.Method = "laee"
	r.Weights.Bits = 8
	r.Output.Format = "gguf"
	err := r.Validate()
	want := `recipe: calibration.samples: must be at least 1, got 0
recipe: equalization.method: unknown value "laee" (want lae, smoothquant or none; did you mean "lae"?)
recipe: output.format: unknown value "gguf" (want odyssey or compressed-tensors)
recipe: weights.bits 8 needs group_size per-channel, but weights.group_size is 128 (the default): 8-bit weights are per-channel, as in SmoothQuant's W8A8
recipe: integer_scale.enabled needs grouped 4-bit weights and 8-bit activations (it turns group scales into integers for the int8×int4 kernel), but weights.bits is 8 (the default); write enabled: false`
	if err == nil || err.Error() != want {
		t.Errorf("Validate:\n%v\nwant:\n%s", err, want)
	}
	if err := defaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	var zero Recipe
	if err := zero.Validate(); err == nil || !strings.Contains(err.Error(), "version is missing") {
		t.Errorf("zero recipe: %v", err)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ci.yaml")
	if err := os.WriteFile(path, []byte("version: 1\ncalibration:\n  data: data/calib.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != path || r.CalibrationPath() != filepath.Join(dir, "data", "calib.txt") {
		t.Errorf("source %q, calibration path %q", r.Source, r.CalibrationPath())
	}
	if p, _ := Preset(Default); p.CalibrationPath() != "" {
		t.Errorf("self calibration has path %q", p.CalibrationPath())
	}
	if _, err := Load("w4a8-ftpq"); err == nil || !strings.Contains(err.Error(), `did you mean "w4a8-fptq"`) {
		t.Errorf("Load of a misspelt preset: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load of a missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nweights: {bits: 5}\n"), 0o644)
	if _, err := Load(bad); err == nil || err.Error() != bad+":2:17: weights.bits: must be 4 or 8, got 5" {
		t.Errorf("Load of a bad file: %v", err)
	}
}

func TestSizes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"2GiB", 2 << 30}, {"2 GiB", 2 << 30}, {"1.5GiB", 3 << 29}, {"500MB", 500e6}, {"5GB", 5e9},
		{"1048576", 1 << 20}, {"0x100000", 1 << 20}, {"64KiB", 64 << 10}, {"1TB", 1e12}, {"10B", 10},
		{"0.5KB", 500},
	} {
		if got, err := ParseSize(c.in); err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "GiB", "2XB", "1e9", "-1GiB", "1.1B", "1/2GiB", "2 G", "99999999999TiB"} {
		if n, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, n)
		}
	}
	for n, want := range map[int64]string{2 << 30: "2GiB", 5e9: "5GB", 1536 << 20: "1536MiB", 1000: "1KB", 1001: "1001B", 0: "0B"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
		}
	}
}

func TestClosest(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"smaples", "samples"}, {"seq-len", "seq_len"}, {"grop_size", "group_size"},
		{"calibraton", "calibration"}, {"xyz", ""}, {"quantize_lm_head", ""},
	} {
		if got := closest(c.in, []string{"samples", "seq_len", "group_size", "calibration", "seed"}); got != c.want {
			t.Errorf("closest(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// FuzzParse holds Parse to its contract on any input: no panic, an *Error with places inside
// the file when it fails, and a valid recipe that survives Marshal when it succeeds.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	for _, name := range Presets() {
		b, _ := presetFS.ReadFile("presets/" + name + ".yaml")
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse("fuzz.yaml", data)
		if err != nil {
			var rerr *Error
			if !errors.As(err, &rerr) || len(rerr.Problems) == 0 {
				t.Fatalf("error %v is not an *Error with problems", err)
			}
			lines := strings.Count(string(data), "\n") + 1
			for _, p := range rerr.Problems {
				if p.Line < 0 || p.Line > lines || p.Column < 0 || p.Message == "" {
					t.Fatalf("problem %+v outside a %d-line file", p, lines)
				}
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed recipe does not validate: %v", err)
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse("marshalled.yaml", b)
		if err != nil || !reflect.DeepEqual(semantic(back), semantic(r)) {
			t.Fatalf("round trip: %v\n%s", err, b)
		}
	})
}
