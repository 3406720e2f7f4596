package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/ptq"
	"github.com/odyssey-llm/odyssey/quantizejob"
	"github.com/odyssey-llm/odyssey/recipes"
)

// The library job, run without cobra on options built by hand, writes an artifact that opens
// and is byte-identical to what `odyssey quantize` writes for the same model and recipe.
func TestQuantizeJobLibraryMatchesCLI(t *testing.T) {
	base := t.TempDir()
	cliOut := filepath.Join(base, "cli")
	if code, _, errOut := quantize(t, "--model", tiny, "--out", cliOut, "--recipe", "w4a8-rtn"); code != 0 {
		t.Fatalf("odyssey quantize: exit %d: %s", code, errOut)
	}

	hm, err := hf.Load(tiny)
	if err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	r, err := recipes.Load("w4a8-rtn")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := r.ValidateForModel(hm.Config)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := ptqOptions(r, plan, "")
	if err != nil {
		t.Fatal(err)
	}
	if opt.NeedsCalibration() {
		t.Fatal("w4a8-rtn needs calibration statistics")
	}
	libOut := filepath.Join(base, "lib")
	ver := currentVersion()
	var notes []string
	layers := 0
	res, err := quantizejob.Run(context.Background(), &quantizejob.Options{
		Model: hm, Recipe: r, PTQ: opt, Output: outputFormat(r, ""),
		Calibration: artifact.Calibration{Source: artifact.CalibrationNone},
		Notes:       recipeNotes(plan), Out: libOut, SourcePath: tiny,
		Tool:    artifact.Tool{Name: "odyssey", Version: ver.Version, Revision: ver.Revision, Modified: ver.Modified, GoVersion: ver.GoVersion},
		Scheme:  schemeOf(r),
		Publish: func() error { return os.Rename(libOut+".partial", libOut) },
	}, quantizejob.Callbacks{
		Note:    func(msg string) { notes = append(notes, msg) },
		OnLayer: func(ev ptq.ProgressEvent, interrupt func()) { layers++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if layers != hm.Config.NumLayers || res.ResumedLayers != 0 || res.Provenance == nil || len(notes) != 0 {
		t.Errorf("layers reported %d of %d, resumed %d, provenance %v, notes %q", layers, hm.Config.NumLayers, res.ResumedLayers, res.Provenance != nil, notes)
	}
	a, err := artifact.Open(libOut)
	if err != nil {
		t.Fatalf("the library's artifact does not open: %v", err)
	}
	if _, err := a.Layer(0); err != nil {
		t.Errorf("layer 0 of the library's artifact: %v", err)
	}
	a.Close()

	want, got := filesOf(t, cliOut), filesOf(t, libOut)
	var names []string
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(got) != len(want) {
		t.Errorf("library wrote %d files, the CLI %d", len(got), len(want))
	}
	for _, name := range names {
		if !bytes.Equal(want[name], got[name]) {
			t.Errorf("%s differs between the library and the CLI", name)
		}
	}
}
