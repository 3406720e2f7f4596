package main

import (
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A write that fails for lack of space midway through the artifact leaves nothing behind:
// no OUT, no OUT.partial, and an error that says what failed. The full disk is simulated with
// RLIMIT_FSIZE (writes past 1 MiB in one file fail with EFBIG, as they would with ENOSPC), so
// that the test needs no special file system; the layer checkpoints of tiny-llama fit under
// the limit, the assembled weights (6 MiB) do not.
func TestQuantizeDiskFull(t *testing.T) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	// Without this the kernel kills the process (SIGXFSZ) instead of failing the write.
	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	lim := syscall.Rlimit{Cur: 1 << 20, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	code, _, errOut := quantize(t, "--model", tiny, "--out", out, "--recipe", "w4a8-rtn")
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if code != exitFailure || !strings.Contains(errOut, "file too large") || !strings.Contains(errOut, "removed the unfinished output") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, p := range []string{out, out + ".partial"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was left behind", p)
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	if len(ents) != 0 {
		t.Errorf("left in the output's folder: %v", ents)
	}
}
