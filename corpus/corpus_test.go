package corpus

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odyssey-llm/odyssey/formats/hf"
)

func TestWindows(t *testing.T) {
	s := []int{1, 2, 3, 4, 5, 6, 7}
	w, err := Windows(s, 3)
	if err != nil || len(w) != 2 || w[1][0] != 4 || cap(w[0]) != 3 {
		t.Fatalf("Windows = %v, %v", w, err)
	}
	if _, err := Windows(s, 1); err == nil {
		t.Error("seqLen 1 accepted")
	}
	if _, err := Windows(s, 8); err == nil {
		t.Error("too few tokens accepted")
	}
}

func TestLoadText(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "a.txt")
	jl := filepath.Join(dir, "a.jsonl")
	os.WriteFile(txt, []byte("hello\n"), 0o644)
	os.WriteFile(jl, []byte("{\"text\":\"a\"}\n\n{\"text\":\"b\"}\n"), 0o644)
	if s, err := LoadText(txt, "text"); err != nil || s != "hello\n" {
		t.Errorf("text: %q, %v", s, err)
	}
	if s, err := LoadText(jl, "jsonl"); err != nil || s != "a\n\nb" {
		t.Errorf("jsonl: %q, %v", s, err)
	}
	if _, err := LoadText(txt, "csv"); err == nil || !strings.Contains(err.Error(), "unknown data format") {
		t.Errorf("unknown format: %v", err)
	}
	if err := CheckTextFile(dir); err == nil || !strings.Contains(err.Error(), "folder") {
		t.Errorf("folder: %v", err)
	}
	if errors.Is(CheckTextFile(txt), ErrTextTooLarge) {
		t.Error("small file too large")
	}
}

func TestBOS(t *testing.T) {
	if id, err := BOS(nil, hf.Config{BOSTokenID: 5}); err != nil || id != 5 {
		t.Errorf("config BOS: %d, %v", id, err)
	}
	if _, err := BOS(nil, hf.Config{BOSTokenID: -1}); err == nil {
		t.Error("no BOS accepted")
	}
}
