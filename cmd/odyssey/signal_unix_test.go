//go:build unix

package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/odyssey-llm/odyssey/artifact"
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

// TestHelperProcess is the CLI run as a child process by the tests below (it does nothing
// in a normal test run).
func TestHelperProcess(t *testing.T) {
	if os.Getenv("ODYSSEY_TEST_HELPER") != "1" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr))
}

// A second SIGTERM ends a command that is slow to stop at once, with exit 143 and a
// message, and removes its temporary output.
func TestSecondSignalExits(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "synth")
	cmd := exec.Command(exe, "-test.run=^TestHelperProcess$", "--", "testdata", "synth", "--shape", "llama2-7b", "--layers", "8", "--out", out)
	cmd.Env = append(os.Environ(), "ODYSSEY_TEST_HELPER=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // harmless once it has exited
	// Wait until the staging folder exists: the command is writing.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m, _ := filepath.Glob(filepath.Join(dir, ".synth.partial-*")); len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the child never started writing")
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	code := -1
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	if code != exitTerminated || !strings.Contains(stderr.String(), "second signal") {
		t.Fatalf("child: %v (exit code %d), stderr %q", err, code, stderr.String())
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Errorf("left behind: %v", m)
	}
}

// Ctrl-C during verify ppl kills the runtime, exits 130 and removes the tokens file.
func TestVerifyPPLInterrupted(t *testing.T) {
	rt, argsFile, _ := fakeRT(t, "hang")
	go func() {
		// The fake writes its arguments once started; then it hangs.
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(argsFile); err == nil {
				syscall.Kill(os.Getpid(), syscall.SIGINT)
				return
			}
		}
	}()
	start := time.Now()
	code, _, errOut := runCLI(t, "", "verify", "ppl", "--model", tiny, "--data", sample, "--seq-len", "64", "--runtime", rt)
	if code != exitInterrupted || !strings.Contains(errOut, "stopped by SIGINT") || time.Since(start) > 20*time.Second {
		t.Errorf("exit %d after %v: %s", code, time.Since(start), errOut)
	}
	if left := tmpLeft(t); len(left) != 0 {
		t.Errorf("left in $TMPDIR: %v", left)
	}
}
