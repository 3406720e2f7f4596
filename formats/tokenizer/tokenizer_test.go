package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/odyssey-llm/odyssey/internal/sharedtest"
)

func concat(parts ...[]int) []int {
	var out []int
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestTinyLlamaBasics(t *testing.T) {
	tk := tinyLlama(t)
	if got := tk.VocabSize(); got != 4096 {
		t.Errorf("VocabSize = %d, want 4096", got)
	}
	if id, ok := tk.BOS(); !ok || id != 0 || !tk.AddsBOS() {
		t.Errorf("BOS() = %d, %v; AddsBOS %v; want 0, true, true", id, ok, tk.AddsBOS())
	}
	if id, ok := tk.TokenToID("<|bos|>"); !ok || id != 0 {
		t.Errorf("TokenToID(<|bos|>) = %d, %v", id, ok)
	}
	if s, ok := tk.IDToToken(1); !ok || s != "<|eos|>" {
		t.Errorf("IDToToken(1) = %q, %v", s, ok)
	}
	if _, ok := tk.IDToToken(4096); ok {
		t.Error("IDToToken(4096) found a token")
	}
	if _, ok := tk.IDToToken(-1); ok {
		t.Error("IDToToken(-1) found a token")
	}
	// A leading space is spelled Ġ in a byte-level vocabulary.
	id, ok := tk.TokenToID("Ġthe")
	if !ok {
		t.Fatal(`TokenToID("Ġthe") not found`)
	}
	if got := tk.Encode(" the", false); !reflect.DeepEqual(got, []int{id}) {
		t.Errorf(`Encode(" the") = %v, want [%d]`, got, id)
	}

	plain := tk.Encode("Hello world", false)
	if got := tk.Encode("Hello world", true); !reflect.DeepEqual(got, concat([]int{0}, plain)) {
		t.Errorf("Encode with BOS = %v, want [0] + %v", got, plain)
	}
	if got := tk.Encode("", true); !reflect.DeepEqual(got, []int{0}) {
		t.Errorf(`Encode("", true) = %v, want [0]`, got)
	}
	if got := tk.Encode("", false); len(got) != 0 {
		t.Errorf(`Encode("", false) = %v, want []`, got)
	}
}

// TestAddedTokens checks that added tokens written in the text are recognized in the raw
// text and that the text around them is encoded on its own, as HF does.
func TestAddedTokens(t *testing.T) {
	tk := tinyLlama(t)
	enc := func(s string) []int { return tk.Encode(s, false) }
	cases := []struct {
		in   string
		want []int
	}{
		{"<|bos|>Hello<|eos|>", concat([]int{0}, enc("Hello"), []int{1})},
		{"a <|pad|> b", concat(enc("a "), []int{2}, enc(" b"))},
		{"<|bos|><|bos|>", []int{0, 0}},
	}
	for _, c := range cases {
		if got := enc(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	// A near miss is plain text.
	if got := enc("<|bos|"); len(got) < 2 || got[0] == 0 || tk.Decode(got, false) != "<|bos|" {
		t.Errorf("near miss <|bos| encoded as %v", got)
	}
	ids := concat([]int{0}, enc("Hi there"), []int{1})
	if got := tk.Decode(ids, false); got != "<|bos|>Hi there<|eos|>" {
		t.Errorf("Decode(skipSpecial=false) = %q", got)
	}
	if got := tk.Decode(ids, true); got != "Hi there" {
		t.Errorf("Decode(skipSpecial=true) = %q", got)
	}
	if !tk.IsSpecial(0) || tk.IsSpecial(100) {
		t.Error("IsSpecial wrong")
	}
	// Unknown ids are skipped, as in HF.
	if got := tk.Decode([]int{-5, 1 << 30}, false); got != "" {
		t.Errorf("Decode(unknown ids) = %q", got)
	}
}

func TestQwen3AddedTokens(t *testing.T) {
	g := loadGolden(t)
	tk := sharedTokenizer(t, g, "qwen3")
	if got := tk.VocabSize(); got != 151669 {
		t.Errorf("VocabSize = %d, want 151669", got)
	}
	if _, ok := tk.BOS(); ok || tk.AddsBOS() {
		t.Error("qwen3 should add no BOS (ByteLevel post-processor)")
	}
	enc := func(s string) []int { return tk.Encode(s, false) }
	text := "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHi"
	want := concat([]int{151644}, enc("user\nHello"), []int{151645}, enc("\n"), []int{151644},
		enc("assistant\n"), []int{151667}, enc("\n\n"), []int{151668}, enc("\n\nHi"))
	if got := enc(text); !reflect.DeepEqual(got, want) {
		t.Errorf("Encode(chat) =\n %v\nwant\n %v", got, want)
	}
	if got := tk.Encode(text, true); !reflect.DeepEqual(got, want) {
		t.Errorf("Encode(chat, addSpecial) added tokens: %v", got)
	}
	if got := tk.Decode(want, false); got != text {
		t.Errorf("Decode = %q", got)
	}
	// <think> is an added token but not special: skipSpecial keeps it.
	if got, w := tk.Decode(want, true), "user\nHello\nassistant\n<think>\n\n</think>\n\nHi"; got != w {
		t.Errorf("Decode(skipSpecial) = %q, want %q", got, w)
	}
}

func TestMistralBOS(t *testing.T) {
	g := loadGolden(t)
	tk := sharedTokenizer(t, g, "mistral")
	if id, ok := tk.BOS(); !ok || id != 1 {
		t.Errorf("BOS() = %d, %v; want 1, true", id, ok)
	}
	plain := tk.Encode("Hello world", false)
	if got := tk.Encode("Hello world", true); !reflect.DeepEqual(got, concat([]int{1}, plain)) {
		t.Errorf("Encode with BOS = %v", got)
	}
	// Each text segment between added tokens gets its own ▁ prefix (HF's Prepend runs per
	// segment).
	if got, want := tk.Encode("<s>Hello</s>", false), concat([]int{1}, tk.Encode("Hello", false), []int{2}); !reflect.DeepEqual(got, want) {
		t.Errorf("Encode(<s>Hello</s>) = %v, want %v", got, want)
	}
	// Characters outside the vocabulary fall back to bytes, and decode back.
	s := "a\U0001F999z" // no token for this emoji
	ids := tk.Encode(s, false)
	if got := tk.Decode(ids, false); got != s {
		t.Errorf("byte fallback round trip: %q → %v → %q", s, ids, got)
	}
	// A lone continuation byte token decodes to U+FFFD.
	b80, ok := tk.TokenToID("<0x80>")
	if !ok {
		t.Fatal("<0x80> missing")
	}
	if got := tk.Decode(concat(tk.Encode("a", false), []int{b80, b80}), false); got != "a\uFFFD\uFFFD" {
		t.Errorf("Decode(invalid bytes) = %q", got)
	}
	if got := tk.VocabSize(); got != 32000 {
		t.Errorf("VocabSize = %d", got)
	}
}

// TestMetaspaceForms encodes the golden strings with the mistral vocabulary expressed
// through the older Metaspace pre-tokenizer and decoder instead of Prepend + Replace. With
// prepend_scheme first and split false the two agree except on text that starts with a
// space (Metaspace does not prepend a second ▁ there); with split true the words are cut
// at each ▁, which may change ids but must still round-trip.
func TestMetaspaceForms(t *testing.T) {
	g := loadGolden(t)
	ref := sharedTokenizer(t, g, "mistral")
	data, err := os.ReadFile(sharedFile(t, "tokenizers/mistral/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	variant := func(pre, dec string) *Tokenizer {
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		doc["normalizer"] = json.RawMessage("null")
		doc["pre_tokenizer"] = json.RawMessage(pre)
		doc["decoder"] = json.RawMessage(dec)
		b, _ := json.Marshal(doc)
		tk, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	first := variant(`{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}`,
		`{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}`)
	split := variant(`{"type":"Metaspace","replacement":"▁","add_prefix_space":true}`,
		`{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Metaspace","replacement":"▁","add_prefix_space":true}]}`)
	for i, s := range g.Strings {
		if strings.HasPrefix(s, " ") || s == "" {
			continue
		}
		if got, want := first.Encode(s, false), ref.Encode(s, false); !equalInts(got, want) {
			t.Errorf("string %d %q: Metaspace(first) %v, Prepend+Replace %v", i, clip(s, 80), clipInts(got), clipInts(want))
		}
		if got := split.Decode(split.Encode(s, false), false); got != s {
			t.Errorf("string %d: Metaspace(split) round trip %q → %q", i, clip(s, 80), clip(got, 80))
		}
	}
	// prepend_scheme first: no ▁ for a segment that does not start the text.
	a := first.Encode("<s>Hi", false)
	b := concat([]int{1}, ref.Encode("Hi", false))
	if reflect.DeepEqual(a, b) {
		t.Errorf("Metaspace(first) prepended ▁ after a leading added token: %v", a)
	}
}

// mini builds a tokenizer.json around a small character vocabulary.
func mini(t *testing.T, model string, extra string) *Tokenizer {
	t.Helper()
	doc := `{"version":"1.0","truncation":null,"padding":null,"model":` + model + extra + `}`
	tk, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, doc)
	}
	return tk
}

const miniVocab = `{"<unk>":0,"a":1,"b":2,"c":3,"ab":4,"abc":5,"bc":6," ":7,"<0x78>":8,"<0xC3>":9,"<0xA9>":10}`

func TestBPEOptions(t *testing.T) {
	// Merges as "a b" strings and as pairs give the same model.
	for _, merges := range []string{`["a b","ab c","#version: 0.2"]`, `[["a","b"],["ab","c"]]`} {
		tk := mini(t, `{"type":"BPE","vocab":`+miniVocab+`,"merges":`+merges+`,"unk_token":"<unk>"}`, "")
		if got := tk.Encode("abcab", false); !reflect.DeepEqual(got, []int{5, 4}) {
			t.Errorf("merges %s: Encode(abcab) = %v, want [5 4]", merges, got)
		}
	}
	// Rank decides, not position: with "b c" ranked first, "abc" becomes a + bc.
	tk := mini(t, `{"type":"BPE","vocab":`+miniVocab+`,"merges":["b c","a b","ab c"]}`, "")
	if got := tk.Encode("abc", false); !reflect.DeepEqual(got, []int{1, 6}) {
		t.Errorf("Encode(abc) with b+c first = %v, want [1 6]", got)
	}
	// Unknown characters: fused or not, or dropped when there is no unk token.
	fused := mini(t, `{"type":"BPE","vocab":`+miniVocab+`,"merges":["a b"],"unk_token":"<unk>","fuse_unk":true}`, "")
	if got := fused.Encode("azzb", false); !reflect.DeepEqual(got, []int{1, 0, 2}) {
		t.Errorf("fuse_unk: %v", got)
	}
	unfused := mini(t, `{"type":"BPE","vocab":`+miniVocab+`,"merges":["a b"],"unk_token":"<unk>"}`, "")
	if got := unfused.Encode("azzb", false); !reflect.DeepEqual(got, []int{1, 0, 0, 2}) {
		t.Errorf("no fuse_unk: %v", got)
	}
	// Without an unk token the character is dropped, and its neighbours can then merge.
	none := mini(t, `{"type":"BPE","vocab":`+miniVocab+`,"merges":["a b"]}`, "")
	if got := none.Encode("azzb", false); !reflect.DeepEqual(got, []int{4}) {
		t.Errorf("no unk token: %v", got)
	}
	// Byte fallback: x has <0x78>; é has both of its bytes; z has none and becomes unk.
	fb := mini(t, `{"type":"BPE","vocab":`+miniVocab+`,"merges":[],"unk_token":"<unk>","byte_fallback":true}`,
		`,"decoder":{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Fuse"}]}`)
	if got := fb.Encode("xéz", false); !reflect.DeepEqual(got, []int{8, 9, 10, 0}) {
		t.Errorf("byte_fallback: %v", got)
	}
	if got := fb.Decode([]int{8, 9, 10, 0}, false); got != "xé<unk>" {
		t.Errorf("byte_fallback decode: %q", got)
	}
	if got := fb.Decode([]int{1, 9, 2}, false); got != "a\uFFFDb" {
		t.Errorf("byte_fallback decode of a broken sequence: %q", got)
	}
	// ignore_merges: a word in the vocabulary is taken whole.
	const v2 = `{"a":0,"b":1,"c":2,"bc":3,"abc":4,"ab":5}`
	im := mini(t, `{"type":"BPE","vocab":`+v2+`,"merges":["b c","a bc","a b"],"ignore_merges":true}`,
		`,"pre_tokenizer":{"type":"Split","pattern":{"String":" "},"behavior":"Removed","invert":false}`)
	if got := im.Encode("ab abc", false); !reflect.DeepEqual(got, []int{5, 4}) {
		t.Errorf("ignore_merges: %v", got)
	}
	// continuing_subword_prefix and end_of_word_suffix: non-initial characters are looked
	// up with the prefix, the last one with the suffix, and a merge drops the prefix of its
	// right part ("a" + "##b" makes "ab").
	const v3 = `{"a":0,"##b":1,"##c</w>":2,"ab":3,"abc</w>":5,"c</w>":6}`
	cs := mini(t, `{"type":"BPE","vocab":`+v3+`,"merges":[["a","##b"],["ab","##c</w>"]],"continuing_subword_prefix":"##","end_of_word_suffix":"</w>"}`, "")
	if got := cs.Encode("abc", false); !reflect.DeepEqual(got, []int{5}) {
		t.Errorf("prefix/suffix: %v", got)
	}
}

func TestAddedTokenFlags(t *testing.T) {
	model := `{"type":"BPE","vocab":` + miniVocab + `,"merges":["a b","ab c"],"unk_token":"<unk>"}`
	added := func(flags string) string {
		return `,"added_tokens":[{"id":100,"content":"<m>","special":true,"normalized":false` + flags + `},` +
			`{"id":101,"content":"ca","special":false,"normalized":false,"single_word":true},` +
			`{"id":102,"content":"ab","special":true,"normalized":false}]`
	}
	cases := []struct {
		flags, in string
		want      []int
	}{
		{``, "a <m> b", []int{1, 7, 100, 7, 2}},
		{`,"lstrip":true`, "a <m> b", []int{1, 100, 7, 2}},
		{`,"rstrip":true`, "a <m> b", []int{1, 7, 100, 2}},
		{`,"lstrip":true,"rstrip":true`, "a  <m>\t b", []int{1, 100, 2}},
		// single_word: "ca" alone is the added token, next to a word character it is not.
		{``, "ca cab", []int{101, 7, 3, 4}},
		{``, "bca", []int{2, 3, 1}},
		// An added token already in the model vocabulary keeps the model's id (HF).
		{``, "ab", []int{4}},
	}
	for _, c := range cases {
		tk := mini(t, model, added(c.flags))
		if got := tk.Encode(c.in, false); !reflect.DeepEqual(got, c.want) {
			t.Errorf("flags %q: Encode(%q) = %v, want %v", c.flags, c.in, got, c.want)
		}
	}
	// Leftmost-longest: the longer of two overlapping tokens wins.
	tk := mini(t, model, `,"added_tokens":[{"id":100,"content":"<m","special":true},{"id":101,"content":"<m>","special":true}]`)
	if got := tk.Encode("a<m>", false); !reflect.DeepEqual(got, []int{1, 101}) {
		t.Errorf("leftmost-longest: %v", got)
	}
}

// TestErrors checks that unsupported or malformed files fail to load with an error naming
// the problem, rather than encoding differently from HF.
func TestErrors(t *testing.T) {
	bpe := `{"type":"BPE","vocab":{"a":0},"merges":[]}`
	cases := []struct{ doc, want string }{
		{`{"model":{"type":"Unigram","vocab":[["a",0.0]]}}`, `"Unigram"`},
		{`{"model":{"type":"WordPiece","vocab":{"a":0}}}`, `"WordPiece"`},
		{`{"model":` + bpe + `,"normalizer":{"type":"BertNormalizer"}}`, `normalizer type "BertNormalizer"`},
		{`{"model":` + bpe + `,"normalizer":{"type":"Precompiled","precompiled_charsmap":""}}`, `"Precompiled"`},
		{`{"model":` + bpe + `,"pre_tokenizer":{"type":"Whitespace"}}`, `pre-tokenizer type "Whitespace"`},
		{`{"model":` + bpe + `,"pre_tokenizer":{"type":"Split","pattern":{"Regex":"\\w+(?=x)"},"behavior":"Isolated","invert":false}}`, `look-around`},
		{`{"model":` + bpe + `,"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"ByteLevel"},{"type":"Split","pattern":{"String":"x"},"behavior":"Isolated"}]}}`, `ByteLevel followed`},
		{`{"model":` + bpe + `,"decoder":{"type":"WordPiece"}}`, `decoder type "WordPiece"`},
		{`{"model":` + bpe + `,"post_processor":{"type":"Mystery"}}`, `post-processor type "Mystery"`},
		{`{"model":` + bpe + `,"truncation":{"max_length":512}}`, `truncation`},
		{`{"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}}`, `"b" is not in the vocabulary`},
		{`{"model":{"type":"BPE","vocab":{"a":0},"merges":[],"dropout":0.1}}`, `dropout`},
		{`{"model":{"type":"BPE","vocab":{"a":0},"merges":[["a"]]}}`, `merge`},
		{`{"model":` + bpe, `invalid JSON`},
		{`{"model":{"type":"BPE","vocab":{"a":"x"},"merges":[]}}`, `integer`},
		{``, `invalid JSON`},
		{`{}`, `no model`},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%s): error %v, want one containing %s", clip(c.doc, 120), err, c.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("Load of a missing file: no error")
	}
}

func TestLoadGzip(t *testing.T) {
	src := sharedtest.Testdata("tiny-llama/tokenizer.json")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	p := filepath.Join(t.TempDir(), "tokenizer.json.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tz, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	s := "Gzip'd tokenizers work the same, 123!"
	if a, b := tz.Encode(s, true), tinyLlama(t).Encode(s, true); !reflect.DeepEqual(a, b) {
		t.Errorf("gzip %v vs plain %v", a, b)
	}
	// A truncated gzip file is an error, not a panic.
	if err := os.WriteFile(p, buf.Bytes()[:len(buf.Bytes())/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil {
		t.Error("truncated gzip: no error")
	}
	if err := os.WriteFile(p, []byte{0x1f, 0x8b}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil {
		t.Error("2-byte gzip: no error")
	}
}

// TestInvalidUTF8 checks that invalid input encodes (each bad byte as U+FFFD) and decodes
// without error.
func TestInvalidUTF8(t *testing.T) {
	tk := tinyLlama(t)
	for _, s := range []string{"\xff", "a\xffb", "\xe2\x82", "ok \xc3", "\xed\xa0\x80"} {
		ids := tk.Encode(s, false)
		if got, want := tk.Decode(ids, false), sanitizeUTF8(s); got != want {
			t.Errorf("Decode(Encode(%q)) = %q, want %q", s, got, want)
		}
	}
	// Decoding byte tokens that do not form UTF-8 follows from_utf8_lossy: one U+FFFD per
	// maximal invalid subsequence.
	id := func(b byte) int {
		id, ok := tk.TokenToID(byteToUTF8[b])
		if !ok {
			t.Fatalf("no token for byte %#x", b)
		}
		return id
	}
	cases := []struct {
		in   []byte
		want string
	}{
		{[]byte{0xE2, 0x82}, "\uFFFD"},
		{[]byte{0xE2, 0x82, 'a'}, "\uFFFDa"},
		{[]byte{0xFF, 0xFE}, "\uFFFD\uFFFD"},
		{[]byte{0xF0, 0x9F, 0xA6}, "\uFFFD"},
		{[]byte{0xED, 0xA0, 0x80}, "\uFFFD\uFFFD\uFFFD"},
		{[]byte{0xE2, 0x82, 0xAC}, "€"},
	}
	for _, c := range cases {
		var ids []int
		for _, b := range c.in {
			ids = append(ids, id(b))
		}
		if got := tk.Decode(ids, false); got != c.want {
			t.Errorf("Decode(bytes % x) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestConcurrentEncode runs encoders in parallel (the word cache is shared) and compares
// with serial results; run with -race to check the locking.
func TestConcurrentEncode(t *testing.T) {
	tk := tinyLlama(t)
	texts := []string{"Hello world", "  indented\n\ttabs", "numbers 12345 and 'quotes'", "ünïcödé 中文 🦙", strings.Repeat("repeat ", 50)}
	want := make([][]int, len(texts))
	for i, s := range texts {
		want[i] = tk.Encode(s, true)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 200; k++ {
				i := (k + g) % len(texts)
				if got := tk.Encode(texts[i], true); !equalInts(got, want[i]) {
					t.Errorf("concurrent Encode(%q) = %v, want %v", texts[i], got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestWordCacheBound checks that the cache stays within its table and correct when words
// evict each other.
func TestWordCacheBound(t *testing.T) {
	tk, err := Load(sharedtest.Testdata("tiny-llama/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := tk.Encode("stable words stay stable", false)
	var b strings.Builder
	for i := 0; i < wordCacheSlots+1000; i++ {
		b.WriteString(" w")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(string(rune('a' + (i/26)%26)))
		b.WriteString(string(rune('a' + (i/676)%26)))
		b.WriteString(string(rune('a' + (i/17576)%26)))
	}
	tk.Encode(b.String(), false)
	if n := tk.model.cache.size(); n > wordCacheSlots || n < wordCacheSlots/4 {
		t.Errorf("cache holds %d words, table has %d slots", n, wordCacheSlots)
	}
	if got := tk.Encode("stable words stay stable", false); !equalInts(got, want) {
		t.Errorf("after cache churn: %v, want %v", got, want)
	}
}
