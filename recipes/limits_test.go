package recipes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A recipe file is bounded (1 MiB), and so is the list of problems reported (the first
// MaxProblems, then a count).
func TestRecipeLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\n")
	for i := range 100 {
		fmt.Fprintf(&b, "bogus_key_%d: 1\n", i)
	}
	_, err := Parse("many.yaml", []byte(b.String()))
	var rerr *Error
	if !errors.As(err, &rerr) {
		t.Fatalf("want *Error, got %v", err)
	}
	if len(rerr.Problems) != MaxProblems || rerr.More != 100-MaxProblems || rerr.Total() != 100 {
		t.Errorf("%d problems listed, %d more, want %d and %d", len(rerr.Problems), rerr.More, MaxProblems, 100-MaxProblems)
	}
	if msg := err.Error(); !strings.HasSuffix(msg, "and 80 more problems") || strings.Count(msg, "\n") != MaxProblems {
		t.Errorf("message:\n%s", msg)
	}

	big := make([]byte, MaxFileSize+1)
	for i := range big {
		big[i] = '#'
	}
	if _, err := Parse("big.yaml", big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Parse of %d bytes: %v", len(big), err)
	}
	p := filepath.Join(t.TempDir(), "big.yaml")
	os.WriteFile(p, big, 0o644)
	if _, err := Load(p); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), p) {
		t.Errorf("Load of %d bytes: %v", len(big), err)
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Load(/dev/zero): %v", err)
		}
	}
}
