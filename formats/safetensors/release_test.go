package safetensors

import (
	"bytes"
	"path/filepath"
	"testing"
)

// ReleasePages keeps the data readable: pages dropped from the resident set come back from
// the file on the next read.
func TestReleasePagesKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.safetensors")
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := WriteFile(path, []Tensor{{Name: "x", DType: U8, Shape: []int64{int64(len(data))}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := c.Bytes("x")
	if !bytes.Equal(b, data) {
		t.Fatal("data differs before release")
	}
	c.ReleasePages()
	if b2, _ := c.Bytes("x"); !bytes.Equal(b2, data) || !bytes.Equal(b, data) {
		t.Fatal("data differs after release")
	}
}
