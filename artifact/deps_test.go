package artifact

import (
	"go/build"
	"slices"
	"testing"
)

// The artifact format depends on the result types (ptq/qresult), not on the quantization
// pipeline: artifact must not import ptq (its tests may, to produce results).
func TestNoPipelineImport(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(pkg.Imports, "github.com/odyssey-llm/odyssey/ptq") {
		t.Errorf("artifact imports ptq: %v", pkg.Imports)
	}
	if !slices.Contains(pkg.Imports, "github.com/odyssey-llm/odyssey/ptq/qresult") {
		t.Errorf("artifact does not import ptq/qresult: %v", pkg.Imports)
	}
}
