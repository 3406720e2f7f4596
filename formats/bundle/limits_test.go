package bundle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// bomb is a small bundle whose manifest declares a file of size bytes (all zeros, which
// compress to almost nothing).
func bomb(t *testing.T, size int64) string {
	t.Helper()
	body := strings.Repeat("\x00", int(min(size, 1<<20)))
	man := `{"format":1,"files":[{"path":"model.safetensors","size":` + strconv.FormatInt(size, 10) + `,"sha256":"` + strings.Repeat("0", 64) + `"}]}`
	p := filepath.Join(t.TempDir(), "bomb.tar.zst")
	if err := os.WriteFile(p, rawBundle(t, []struct{ name, body string }{{ManifestName, man}, {"model.safetensors", body}}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A decompression bomb is refused from its manifest, before a byte is written: the total is
// bounded (64 GiB by default, Options.MaxBytes) and must fit in the free space.
func TestExtractBounded(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "x")
	if _, err := ExtractWith(bomb(t, 4<<30), dst, Options{MaxBytes: 1 << 30}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("4 GiB declared, 1 GiB allowed: %v", err)
	}
	if _, err := Extract(bomb(t, 100<<30), dst); !errors.Is(err, ErrTooLarge) {
		t.Errorf("100 GiB declared, default limit: %v", err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("a refused bundle left its folder behind")
	}

	freeBytesFn = func(string) (int64, bool) { return 1 << 20, true }
	defer func() { freeBytesFn = freeBytes }()
	if _, err := Extract(bomb(t, 2<<20), dst); !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "free") {
		t.Errorf("2 MiB declared, 1 MiB free: %v", err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("a refused bundle left its folder behind")
	}
}

// An interrupted extraction stops and removes what it wrote.
func TestExtractCancelled(t *testing.T) {
	src := writeTree(t, map[string]string{"a.txt": strings.Repeat("a", 1<<20)})
	b := filepath.Join(t.TempDir(), "b.tar.zst")
	if err := Write(src, b); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := filepath.Join(t.TempDir(), "x")
	if _, err := ExtractWith(b, dst, Options{Context: ctx}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("an interrupted extraction left its folder behind")
	}
	dir, cleanup, err := OpenWith(b, Options{Context: ctx})
	if err == nil {
		cleanup()
		t.Fatal("OpenWith ignored the cancelled context")
	}
	if dir != "" {
		t.Errorf("dir %q", dir)
	}
}
