package sharedtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// With the shared folder absent, tests that need it skip and the notice is printed once per
// test binary on its stderr when it is not run by the go command (under `go test ./...` the
// line goes to the go command's stderr instead, so that it shows without -v). The test runs
// this binary again with ODYSSEY_SHARED pointing nowhere and two skipping subtests.
func TestAbsentNotice(t *testing.T) {
	if os.Getenv("SHAREDTEST_CHILD") == "1" {
		for _, rel := range []string{"golden/a", "golden/b"} {
			t.Run(rel, func(t *testing.T) { Path(t, rel) })
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestAbsentNotice$")
	cmd.Env = append(os.Environ(), "SHAREDTEST_CHILD=1", "ODYSSEY_SHARED="+t.TempDir()+"/nonexistent")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), AbsentNotice); n != 1 {
		t.Errorf("notice printed %d times, want once:\n%s", n, out)
	}
}
