package gpu

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// TestTokenWindowsGolden pins the bytes of a small file, written out by hand from the table
// of docs/executor.md, so that the writer cannot drift from the runtime's reader unnoticed.
func TestTokenWindowsGolden(t *testing.T) {
	windows := [][]int{{1, 2, 3}, {258, 0x01020304, 7}}
	golden := "4f4459544f4b3031" + // "ODYTOK01"
		"03000000" + // L = 3
		"02000000" + // W = 2
		"01000000" + "02000000" + "03000000" +
		"02010000" + "04030201" + "07000000"
	var buf bytes.Buffer
	if err := WriteTokenWindows(&buf, windows, 0); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(buf.Bytes()); got != golden {
		t.Fatalf("bytes\n got %s\nwant %s", got, golden)
	}
	if int64(buf.Len()) != TokensFileSize(3, 2) {
		t.Errorf("size %d, TokensFileSize says %d", buf.Len(), TokensFileSize(3, 2))
	}
	l, got, err := ReadTokenWindows(bytes.NewReader(buf.Bytes()))
	if err != nil || l != 3 || len(got) != 2 {
		t.Fatalf("read back: L %d, %d windows, %v", l, len(got), err)
	}
	for i := range windows {
		for j := range windows[i] {
			if got[i][j] != windows[i][j] {
				t.Errorf("window %d position %d: %d, want %d", i, j, got[i][j], windows[i][j])
			}
		}
	}
}

func TestWriteTokenWindowsRefuses(t *testing.T) {
	cases := []struct {
		name    string
		windows [][]int
		vocab   int
		want    string
	}{
		{"none", nil, 0, "no windows"},
		{"too short", [][]int{{1}}, 0, "window length 1"},
		{"ragged", [][]int{{1, 2}, {1, 2, 3}}, 0, "window 1 has 3 tokens"},
		{"negative", [][]int{{1, 2}, {3, -4}}, 0, "window 1 position 1: id -4"},
		{"beyond vocab", [][]int{{1, 2}, {3, 4}}, 4, "window 1 position 1: id 4 outside [0, 4)"},
		{"beyond int32", [][]int{{1, 1 << 31}}, 0, "window 0 position 1"},
	}
	for _, c := range cases {
		err := WriteTokenWindows(&bytes.Buffer{}, c.windows, c.vocab)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestReadTokenWindowsRefuses(t *testing.T) {
	var good bytes.Buffer
	if err := WriteTokenWindows(&good, [][]int{{5, 6}, {7, 8}}, 0); err != nil {
		t.Fatal(err)
	}
	g := good.Bytes()
	with := func(off int, b ...byte) []byte {
		c := append([]byte(nil), g...)
		copy(c[off:], b)
		return c
	}
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "header: 0 of 16"},
		{"magic", with(0, 'X'), "magic"},
		{"L 1", with(8, 1, 0, 0, 0), "window length 1"},
		{"L huge", with(8, 1, 0, 0x10, 0), "window length 1048577 outside [2, 1048576]"},
		{"W 0", with(12, 0, 0, 0, 0), "0 windows"},
		{"W huge", with(12, 1, 0, 0, 1), "16777217 windows, outside [1, 16777216]"},
		{"short", g[:len(g)-1], "need 32 bytes; the file has 31"},
		{"long", append(append([]byte(nil), g...), 0), "more than that"},
		// The header claims 2^24 windows of 2^20 tokens (64 TiB): refused by size, without
		// allocating what it claims.
		{"claims a lot", with(8, 0, 0, 0x10, 0, 0, 0, 0, 1), "need 70368744177680 bytes; the file has 32"},
		{"negative id", with(16+12, 0xff, 0xff, 0xff, 0xff), "window 1 position 1: negative id -1"},
	}
	for _, c := range cases {
		_, _, err := ReadTokenWindows(bytes.NewReader(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// FuzzReadTokenWindows: the reader never panics, and whatever it accepts is exactly what the
// writer would produce from the windows it returned.
func FuzzReadTokenWindows(f *testing.F) {
	var seed bytes.Buffer
	_ = WriteTokenWindows(&seed, [][]int{{1, 2, 3}, {4, 5, 6}}, 0)
	f.Add(seed.Bytes())
	f.Add([]byte(TokensMagic))
	f.Add(append([]byte(TokensMagic), 2, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, windows, err := ReadTokenWindows(bytes.NewReader(b))
		if err != nil {
			return
		}
		if int64(len(b)) != TokensFileSize(l, len(windows)) {
			t.Fatalf("accepted %d bytes for %d windows of %d", len(b), len(windows), l)
		}
		var again bytes.Buffer
		if err := WriteTokenWindows(&again, windows, 0); err != nil {
			t.Fatalf("accepted windows the writer refuses: %v", err)
		}
		if !bytes.Equal(again.Bytes(), b) {
			t.Fatalf("round trip differs")
		}
	})
}
