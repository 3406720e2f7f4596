package tokenizer

import (
	"testing"
	"unicode/utf8"
)

// FuzzEncodeDecode checks on the committed tiny-llama tokenizer (byte-level) that encoding
// never panics, yields ids inside the vocabulary, and is lossless: decoding gives back the
// text, with invalid UTF-8 replaced byte by byte as Encode documents.
func FuzzEncodeDecode(f *testing.F) {
	tk := tinyLlama(f)
	for _, s := range []string{
		"", " ", "Hello world", "  leading spaces", "trailing   ", "\n\n\t\r\n", "I'm you'LL 'S",
		"1234567 3.14", "中文 日本語 한국어", "🦙🚀😶\u200d🌫️", "e\u0301\u0301", "<|bos|>x<|eos|>",
		"<|bos|", "\xff\xfe", "a\xe2\x82", "\u00a0\u3000\u2028", "ſ's", "\x00\x01\x7f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids := tk.Encode(s, false)
		for _, id := range ids {
			if id < 0 || id >= tk.VocabSize() {
				t.Fatalf("Encode(%q): id %d outside [0, %d)", s, id, tk.VocabSize())
			}
		}
		want := s
		if !utf8.ValidString(s) {
			want = sanitizeUTF8(s)
		}
		if got := tk.Decode(ids, false); got != want {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
		withBOS := tk.Encode(s, true)
		if len(withBOS) != len(ids)+1 || withBOS[0] != 0 {
			t.Fatalf("Encode(%q, true) = %v, want [0] + %v", s, withBOS, ids)
		}
	})
}
