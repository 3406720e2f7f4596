// Package sharedtest locates the project's shared reference folder (../shared beside the
// checkout) for tests. The folder holds third-party models and data that may not be committed,
// so tests that need it skip, saying why, when it is absent.
package sharedtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Root returns the repository root, found from this source file's location so that it works
// from any package's test binary.
func Root() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("sharedtest: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Dir returns the shared folder: $ODYSSEY_SHARED if set, else ../shared beside the repository.
// It returns "" when the folder does not exist.
func Dir() string {
	d := os.Getenv("ODYSSEY_SHARED")
	if d == "" {
		d = filepath.Join(Root(), "..", "shared")
	}
	if st, err := os.Stat(d); err != nil || !st.IsDir() {
		return ""
	}
	return d
}

// Path returns the absolute path of rel inside the shared folder, or skips the test with a
// clear message when the folder or the file is absent.
func Path(t testing.TB, rel string) string {
	t.Helper()
	d := Dir()
	if d == "" {
		announceAbsent()
		t.Skipf("skipping: shared reference folder ../shared is absent (set ODYSSEY_SHARED to use another); needed for %s", rel)
	}
	p := filepath.Join(d, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: %s not found in shared folder %s", rel, d)
	}
	return p
}

// Testdata returns the absolute path of rel inside the repository's testdata folder.
func Testdata(rel string) string {
	return filepath.Join(Root(), "testdata", rel)
}

// AbsentNotice is the one line `go test ./...` prints when the shared folder is absent.
const AbsentNotice = "odyssey: shared reference folder ../shared is absent (set ODYSSEY_SHARED to use another): the tests that need it are skipped; tests against the committed references in testdata/golden still ran"

var announceOnce sync.Once

// announceAbsent says once, visibly, that the shared folder is absent. A t.Log or t.Skip
// message shows only with -v: `go test ./...` (package list mode) keeps a passing test
// binary's output to itself. So the line goes to the stderr of the go command that runs the
// binary (/proc/PPID/fd/2, on Linux), once per `go test` run: the first binary to get here
// creates a marker in the go command's work directory ($WORK, which holds the test binaries
// and is removed when go test ends), and the others see it. Run any other way (a test binary
// run by hand, another OS), the line goes to the binary's own stderr.
func announceAbsent() {
	announceOnce.Do(func() {
		line := AbsentNotice + "\n"
		if w := goCommandStderr(); w != nil {
			defer w.Close()
			if exe, err := os.Executable(); err == nil {
				work := filepath.Dir(filepath.Dir(exe))
				if strings.HasPrefix(filepath.Base(work), "go-build") {
					f, err := os.OpenFile(filepath.Join(work, "odyssey-shared-absent"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
					if err != nil {
						return // another test binary of this run has said it
					}
					f.Close()
				}
			}
			if _, err := w.WriteString(line); err == nil {
				return
			}
		}
		fmt.Fprint(os.Stderr, line)
	})
}

// goCommandStderr opens the stderr of the parent process when that is the go command, or
// returns nil.
func goCommandStderr() *os.File {
	if runtime.GOOS != "linux" {
		return nil
	}
	ppid := os.Getppid()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ppid))
	if err != nil || strings.TrimSuffix(filepath.Base(exe), " (deleted)") != "go" {
		return nil
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/2", ppid), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil
	}
	return f
}
