package tokenizer

import (
	"sync"
	"unicode"
	"unicode/utf8"
)

// Character classes used by the hand-written pre-tokenizers. They are exactly the classes
// that the supported split patterns distinguish: \p{L}, \p{N}, \s (split into the two
// newline characters and the rest, because the LLaMA-3 pattern treats [\r\n] apart) and
// "anything else". The tokenizers crate runs these patterns with Oniguruma in Unicode
// mode, where \s is the Unicode White_Space property (U+0009–U+000D, U+0020, U+0085,
// U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000), not the ASCII
// set that Go's regexp uses; that difference alone would change the ids of any text with
// a no-break space, so the classes are computed from Go's unicode tables, not regexp.
const (
	clsOther   uint8 = iota // [^\s\p{L}\p{N}]
	clsLetter               // \p{L}
	clsNumber               // \p{N}
	clsSpace                // \s minus [\r\n]
	clsNewline              // [\r\n]
)

var (
	bmpOnce  sync.Once
	bmpClass []uint8 // class of every rune of the Basic Multilingual Plane
)

// asciiClass is the class of each ASCII byte; it is what the hot loops use for English
// text, without touching the larger table.
var asciiClass = func() (t [128]uint8) {
	for b := 0; b < 128; b++ {
		t[b] = classifySlow(rune(b))
	}
	return t
}()

func classifySlow(r rune) uint8 {
	switch {
	case r == '\r' || r == '\n':
		return clsNewline
	case unicode.Is(unicode.White_Space, r):
		return clsSpace
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	}
	return clsOther
}

// classOf returns the class of r. The BMP table (64 KiB) is built on first use: a table
// lookup is several times cheaper than the binary searches in unicode.Is, and non-Latin
// text (CJK, Cyrillic) is almost entirely in the BMP.
func classOf(r rune) uint8 {
	if r < 128 {
		return asciiClass[r]
	}
	if r < 0x10000 {
		bmpOnce.Do(buildBMP)
		return bmpClass[r]
	}
	return classifySlow(r)
}

func buildBMP() {
	t := make([]uint8, 0x10000)
	for r := 0; r < 0x10000; r++ {
		t[r] = classifySlow(rune(r))
	}
	bmpClass = t
}

// runeAt decodes the rune at byte offset p of s with its class and size. The input is
// valid UTF-8 by the time it gets here (Encode replaces invalid bytes first).
func runeAt(s string, p int) (r rune, cls uint8, size int) {
	c := s[p]
	if c < utf8.RuneSelf {
		return rune(c), asciiClass[c], 1
	}
	r, size = utf8.DecodeRuneInString(s[p:])
	return r, classOf(r), size
}

// isSpaceRune reports \s membership (Unicode White_Space).
func isSpaceRune(r rune) bool {
	if r < 128 {
		c := asciiClass[r]
		return c == clsSpace || c == clsNewline
	}
	return unicode.Is(unicode.White_Space, r)
}

// isWordRune approximates \w of Rust's regex crate (Alphabetic, marks, decimal digits,
// connector punctuation, join controls), used only for the single_word flag of added tokens.
func isWordRune(r rune) bool {
	if r < 128 {
		return r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
	}
	return unicode.IsLetter(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Nl, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		r == 0x200C || r == 0x200D
}

// Byte-level alphabet (GPT-2's bytes_to_unicode): every byte is shown as a printable rune so
// that BPE vocabularies can be stored as text. Printable Latin-1 bytes map to themselves,
// the others to U+0100 onwards, in byte order.
var (
	byteToRune  [256]rune
	byteToUTF8  [256]string
	runeToByte  [0x144]int16 // -1 where the rune is not in the alphabet
	byteLevelOK = initByteLevel()
)

func initByteLevel() bool {
	for i := range runeToByte {
		runeToByte[i] = -1
	}
	n := 0
	for b := 0; b < 256; b++ {
		printable := b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF
		if printable {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = int16(b)
		byteToUTF8[b] = string(byteToRune[b])
	}
	return true
}

// appendByteLevel appends the byte-level spelling of the bytes of s to dst.
func appendByteLevel(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		dst = append(dst, byteToUTF8[s[i]]...)
	}
	return dst
}

// appendLossy appends b to dst as text the way Rust's String::from_utf8_lossy does: each
// maximal ill-formed subsequence becomes one U+FFFD. (Go's range loop would emit one U+FFFD
// per byte of a truncated sequence, which differs from what HF returns.)
func appendLossy(dst []byte, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		if c < 0x80 {
			dst = append(dst, c)
			i++
			continue
		}
		n, lo, hi := 0, byte(0x80), byte(0xBF)
		switch {
		case c >= 0xC2 && c <= 0xDF:
			n = 2
		case c == 0xE0:
			n, lo = 3, 0xA0
		case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
			n = 3
		case c == 0xED:
			n, hi = 3, 0x9F
		case c == 0xF0:
			n, lo = 4, 0x90
		case c >= 0xF1 && c <= 0xF3:
			n = 4
		case c == 0xF4:
			n, hi = 4, 0x8F
		}
		if n == 0 {
			dst = append(dst, "\uFFFD"...)
			i++
			continue
		}
		j := i + 1
		for k := 1; k < n; k++ {
			if j >= len(b) {
				break
			}
			if k == 1 {
				if b[j] < lo || b[j] > hi {
					break
				}
			} else if b[j] < 0x80 || b[j] > 0xBF {
				break
			}
			j++
		}
		if j-i == n {
			dst = append(dst, b[i:j]...)
		} else {
			dst = append(dst, "\uFFFD"...)
		}
		i = j
	}
	return dst
}

// sanitizeUTF8 replaces each invalid byte of s with U+FFFD. Text handed to HF tokenizers
// is always valid (a Python str, a Rust &str), so any choice here is an extension; one
// replacement per byte is what ranging over a Go string gives, so it is the least
// surprising one for Go callers.
func sanitizeUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out := make([]byte, 0, len(s)+8)
	for _, r := range s {
		out = utf8.AppendRune(out, r)
	}
	return string(out)
}
