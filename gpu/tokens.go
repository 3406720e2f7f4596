package gpu

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// The token windows file hands the runtime the perplexity windows Go tokenized, so that
// `odyssey verify ppl` scores exactly the windows `odyssey eval ppl` scores
// (docs/executor.md, "Token windows file"). Little-endian: the magic, L and W as u32, then
// W·L int32 ids, window after window.

// TokensMagic opens every token windows file.
const TokensMagic = "ODYTOK01"

// Bounds of the token windows file, the runtime's as well: a window of more than 2^20
// tokens or more than 2^24 windows is not a perplexity run but a corrupt header.
const (
	MaxTokensSeqLen  = 1 << 20
	MaxTokensWindows = 1 << 24
)

const tokensHeader = 16

// TokensFileSize is the exact size of a file of w windows of l tokens.
func TokensFileSize(l, w int) int64 { return tokensHeader + 4*int64(l)*int64(w) }

// WriteTokenWindows writes windows (all of one length) in the token windows format. When
// vocab > 0 every id must lie in [0, vocab): the runtime refuses others anyway, and the
// error here names the window and position before a model is loaded on the GPU.
func WriteTokenWindows(w io.Writer, windows [][]int, vocab int) error {
	if len(windows) == 0 {
		return errors.New("token windows: no windows to write")
	}
	l := len(windows[0])
	if l < 2 || l > MaxTokensSeqLen {
		return fmt.Errorf("token windows: window length %d outside [2, %d]", l, MaxTokensSeqLen)
	}
	if len(windows) > MaxTokensWindows {
		return fmt.Errorf("token windows: %d windows, more than the format's %d (lower --max-windows)", len(windows), MaxTokensWindows)
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var hdr [tokensHeader]byte
	copy(hdr[:8], TokensMagic)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(l))
	binary.LittleEndian.PutUint32(hdr[12:], uint32(len(windows)))
	if _, err := bw.Write(hdr[:]); err != nil {
		return err
	}
	var b [4]byte
	for wi, win := range windows {
		if len(win) != l {
			return fmt.Errorf("token windows: window %d has %d tokens, window 0 has %d", wi, len(win), l)
		}
		for p, id := range win {
			if id < 0 || id > math.MaxInt32 || (vocab > 0 && id >= vocab) {
				return fmt.Errorf("token windows: window %d position %d: id %d outside [0, %d)", wi, p, id, max(vocab, 0))
			}
			binary.LittleEndian.PutUint32(b[:], uint32(int32(id)))
			if _, err := bw.Write(b[:]); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// ReadTokenWindows reads a token windows file: the windows and their length. It checks
// what the runtime checks: the magic, the bounds of L and W, a size of exactly 16 + 4·W·L
// bytes (reading no more than that, whatever the header claims), and ids that are not
// negative. It allocates as data arrives, so a header that claims gigabytes cannot exhaust
// memory on a short file.
func ReadTokenWindows(r io.Reader) (seqLen int, windows [][]int, err error) {
	var hdr [tokensHeader]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("token windows: header: %d of %d bytes (%v)", n, tokensHeader, err)
	}
	if !bytes.Equal(hdr[:8], []byte(TokensMagic)) {
		return 0, nil, fmt.Errorf("token windows: magic %q, want %q", hdr[:8], TokensMagic)
	}
	l := binary.LittleEndian.Uint32(hdr[8:])
	w := binary.LittleEndian.Uint32(hdr[12:])
	if l < 2 || l > MaxTokensSeqLen {
		return 0, nil, fmt.Errorf("token windows: window length %d outside [2, %d]", l, MaxTokensSeqLen)
	}
	if w < 1 || w > MaxTokensWindows {
		return 0, nil, fmt.Errorf("token windows: %d windows, outside [1, %d]", w, MaxTokensWindows)
	}
	want := 4 * int64(l) * int64(w)
	// One byte more than the payload, to tell an exact file from a longer one.
	body, err := io.ReadAll(io.LimitReader(r, want+1))
	if err != nil {
		return 0, nil, fmt.Errorf("token windows: %w", err)
	}
	if int64(len(body)) != want {
		got := fmt.Sprintf("%d", tokensHeader+int64(len(body)))
		if int64(len(body)) > want {
			got = "more than that"
		}
		return 0, nil, fmt.Errorf("token windows: %d windows of %d need %d bytes; the file has %s", w, l, TokensFileSize(int(l), int(w)), got)
	}
	windows = make([][]int, w)
	ids := make([]int, int64(l)*int64(w))
	for i := range ids {
		v := int32(binary.LittleEndian.Uint32(body[4*i:]))
		if v < 0 {
			return 0, nil, fmt.Errorf("token windows: window %d position %d: negative id %d", i/int(l), i%int(l), v)
		}
		ids[i] = int(v)
	}
	for i := range windows {
		windows[i] = ids[i*int(l) : (i+1)*int(l) : (i+1)*int(l)]
	}
	return int(l), windows, nil
}
