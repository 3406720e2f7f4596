package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// decoder is one step of HF's decode chain: it maps the list of token strings to a new list
// (tokenizers' Decoder::decode_chain). The final text is the concatenation of the last list.
type decoder interface {
	decodeChain(toks []string) []string
}

// byteLevelDec turns byte-level spellings back into bytes and the bytes into text,
// replacing invalid UTF-8 as Rust's from_utf8_lossy does. A token with any rune outside the
// byte-level alphabet is taken as its own UTF-8 bytes, as in HF.
type byteLevelDec struct{}

func (byteLevelDec) decodeChain(toks []string) []string {
	var raw []byte
	for _, t := range toks {
		raw = appendByteLevelRaw(raw, t)
	}
	return []string{string(appendLossy(nil, raw))}
}

// appendByteLevelRaw appends the bytes that a byte-level token stands for, or the token's
// own bytes when it has a rune outside the byte-level alphabet (an added token, say).
func appendByteLevelRaw(raw []byte, t string) []byte {
	n := len(raw)
	for _, r := range t {
		if r >= rune(len(runeToByte)) || runeToByte[r] < 0 {
			return append(raw[:n], t...)
		}
		raw = append(raw, byte(runeToByte[r]))
	}
	return raw
}

// replaceDec is HF's Replace decoder with a literal pattern, applied to each token.
type replaceDec struct{ old, new string }

func (d replaceDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = strings.ReplaceAll(t, d.old, d.new)
	}
	return out
}

// byteFallbackDec turns runs of <0xNN> tokens back into text. A run that is not valid
// UTF-8 becomes one U+FFFD per byte (HF's behaviour, not from_utf8_lossy's).
type byteFallbackDec struct{}

func parseByteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	// Rust's u8::from_str_radix, which HF uses, also accepts a leading '+'.
	h := t[3:5]
	v := 0
	for i := 0; i < 2; i++ {
		c := h[i]
		var d int
		switch {
		case c >= '0' && c <= '9':
			d = int(c - '0')
		case c >= 'a' && c <= 'f':
			d = int(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = int(c-'A') + 10
		case c == '+' && i == 0:
			continue
		default:
			return 0, false
		}
		v = v*16 + d
	}
	return byte(v), true
}

func (byteFallbackDec) decodeChain(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if b, ok := parseByteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// fuseDec joins all tokens into one.
type fuseDec struct{}

func (fuseDec) decodeChain(toks []string) []string {
	return []string{strings.Join(toks, "")}
}

// stripDec removes up to start leading and stop trailing occurrences of a rune from each
// token.
type stripDec struct {
	content     rune
	start, stop int
}

func (d stripDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		for k := 0; k < d.start; k++ {
			r, size := utf8.DecodeRuneInString(t)
			if size == 0 || r != d.content {
				break
			}
			t = t[size:]
		}
		for k := 0; k < d.stop; k++ {
			r, size := utf8.DecodeLastRuneInString(t)
			if size == 0 || r != d.content {
				break
			}
			t = t[:len(t)-size]
		}
		out[i] = t
	}
	return out
}

// metaspaceDec is HF's Metaspace decoder: the replacement rune becomes a space, except in
// the first token (when a prefix space was prepended), where every replacement is dropped.
type metaspaceDec struct {
	repl    rune
	prepend prependScheme
}

func (d metaspaceDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		var b strings.Builder
		for _, r := range t {
			if r == d.repl {
				if i == 0 && d.prepend != prependNever {
					continue
				}
				r = ' '
			}
			b.WriteRune(r)
		}
		out[i] = b.String()
	}
	return out
}

// sequenceDec chains decoders.
type sequenceDec struct{ steps []decoder }

func (d sequenceDec) decodeChain(toks []string) []string {
	for _, s := range d.steps {
		toks = s.decodeChain(toks)
	}
	return toks
}
