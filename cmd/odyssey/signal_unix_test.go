//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/odyssey-llm/odyssey/formats/artifact"
)

// SIGTERM is handled like Ctrl-C: a message, the finished layers kept for --resume, and the
// documented exit code 143 (it used to kill the process silently with 143).
func TestQuantizeSIGTERM(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	rec := writeRecipe(t, smallFPTQ)
	args := []string{"--model", tiny, "--out", out, "--recipe", rec, "--calib", sample}
	afterLayerHook = func(layer int, interrupt func()) {
		if layer != 1 {
			return
		}
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if lastSignal.Load() != nil {
				return
			}
		}
		t.Error("SIGTERM was not caught")
	}
	code, _, errOut := quantize(t, args...)
	afterLayerHook = nil
	if code != exitTerminated || !strings.Contains(errOut, "SIGTERM") || !strings.Contains(errOut, "--resume") {
		t.Fatalf("exit %d, want %d with a message: %s", code, exitTerminated, errOut)
	}
	layers, _ := filepath.Glob(filepath.Join(out+".partial", artifact.LayersDir, "*.safetensors"))
	if len(layers) < 2 {
		t.Fatalf("%d layer checkpoints kept, want at least 2", len(layers))
	}
	if code, _, errOut := quantize(t, append(args, "--resume")...); code != 0 || !strings.Contains(errOut, "layers done") {
		t.Fatalf("resume: exit %d: %s", code, errOut)
	}
}
