// Package sharedtest locates the project's shared reference folder (../shared beside the
// checkout) for tests. The folder holds third-party models and data that may not be committed,
// so tests that need it skip, saying why, when it is absent.
package sharedtest

import (
	"os"
	"path/filepath"
	"runtime"
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
