package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/gpu"
)

func TestTestdataCodecCases(t *testing.T) {
	out := filepath.Join(t.TempDir(), "cases")
	code, stdout, errOut := runCLI(t, "", "testdata", "codec-cases", "--out", out, "--seed", "3", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Cases int
		Bytes int64
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Cases != 58 || rep.Bytes < 1<<20 {
		t.Errorf("report %s", stdout)
	}
	if !gpu.IsCodecCases(out) {
		t.Fatal("the output is not a set of codec cases")
	}
	if code, _, errOut := runCLI(t, "", "testdata", "codec-cases", "--out", out); code != exitExists || !strings.Contains(errOut, "--force") {
		t.Errorf("existing output: exit %d: %s", code, errOut)
	}
	code, stdout, _ = runCLI(t, "", "testdata", "codec-cases", "--out", out, "--force")
	if code != 0 || !strings.Contains(stdout, "codec test cases") {
		t.Errorf("--force: exit %d %s", code, stdout)
	}
	// --force does not replace a set of GEMM cases.
	gemm := filepath.Join(t.TempDir(), "gemm")
	if code, _, errOut := runCLI(t, "", "testdata", "gemm-cases", "--out", gemm); code != 0 {
		t.Fatalf("gemm-cases: exit %d: %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "", "testdata", "codec-cases", "--out", gemm, "--force"); code == 0 {
		t.Error("--force replaced a set of GEMM cases")
	}
	if code, _, errOut := runCLI(t, "", "testdata", "codec-cases"); code != exitUsage {
		t.Errorf("no --out: exit %d: %s", code, errOut)
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	if len(ents) != 1 {
		t.Errorf("leftovers beside the output: %v", ents)
	}
}
