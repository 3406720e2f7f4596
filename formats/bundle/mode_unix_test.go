//go:build unix

package bundle

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A bundle gets the permissions os.Create would give it (0666 less the umask), not
// os.CreateTemp's 0600.
func TestWriteRespectsUmask(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	src := writeTree(t, map[string]string{"a.txt": "a"})
	out := filepath.Join(t.TempDir(), "a.tar.zst")
	if err := Write(src, out); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o644 {
		t.Errorf("mode %o, want 644", m)
	}
}
