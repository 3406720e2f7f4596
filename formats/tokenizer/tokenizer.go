// Package tokenizer loads a Hugging Face tokenizer.json and encodes and decodes text exactly
// as the HF tokenizers library does, in pure Go.
//
// Supported: BPE models, byte-level (GPT-2, LLaMA-3, Qwen2/3) and SentencePiece-style with
// byte fallback (LLaMA-2, Mistral); added and special tokens; the NFC/NFD/NFKC/NFKD,
// Prepend, Replace, Strip and Sequence normalizers; the ByteLevel, Split, Metaspace and
// Sequence pre-tokenizers; the TemplateProcessing, ByteLevel, Bert, Roberta and Sequence
// post-processors; the ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip and
// Sequence decoders. Anything else makes Load fail with an error naming the component,
// rather than encode differently from HF.
//
// Perplexity and calibration numbers are only comparable with published ones when the
// token ids are identical, which is why exactness, including Unicode corner cases, is the
// first requirement here, and speed (the corpora are megabytes) the second.
package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"unicode/utf8"
)

// Tokenizer encodes and decodes text. It is safe for concurrent use.
type Tokenizer struct {
	model     *bpe
	added     []*addedToken
	addedByID map[int]*addedToken
	addedByTk map[string]*addedToken
	special   map[string]bool // contents of special added tokens, skipped by Decode(…, true)

	rawMatch  *addedMatcher // tokens matched in the raw text (normalized: false)
	normMatch *addedMatcher // tokens matched in the normalized text (normalized: true)

	normalizer normalizer   // nil: none
	pre        preTokenizer // nil: none
	byteLevel  bool         // the model sees byte-level spellings (ByteLevel pre-tokenizer)
	post       []postStep
	decoder    decoder // nil: tokens joined with spaces, as HF does without a decoder

	vocabSize int
	// addedLo..addedHi bound the added ids, so that decoding most ids skips the map.
	addedLo, addedHi int

	emitPool sync.Pool

	// rawOnce/rawBytes: for a plain ByteLevel decoder, the bytes each id decodes to,
	// built on first use (see decodeByteLevel).
	rawOnce  sync.Once
	rawBytes []string
}

// Load reads a tokenizer.json file, or a gzip-compressed one (detected by its magic bytes,
// so the name does not matter).
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
		}
		// The gzip trailer holds the uncompressed size (mod 4 GiB): read into a buffer of
		// that size rather than growing one. The hint is capped, since a damaged or hostile
		// file could claim anything.
		var buf bytes.Buffer
		if len(data) >= 18 {
			n := int(binary.LittleEndian.Uint32(data[len(data)-4:]))
			buf.Grow(min(n, 32*len(data)) + bytes.MinRead)
		}
		_, err = io.Copy(&buf, zr)
		data = buf.Bytes()
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: gunzip: %w", path, err)
		}
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return t, nil
}

// Encode returns the token ids of text. With addSpecial the post-processor's tokens (BOS
// and the like) are added, as HF's encode(text, add_special_tokens=True). Added tokens
// written in the text (e.g. "<|im_start|>") are always recognized. Invalid UTF-8 is
// replaced, byte by byte, with U+FFFD first; any other text is encoded without error.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	text = sanitizeUTF8(text)
	// About one token per four bytes in English; sizing up front saves the copying of a
	// growing slice, which on megabyte inputs costs as much as the encoding itself.
	ids := make([]int, 0, len(text)/4+4)
	t.rawMatch.split(text, func(seg string, off int, tok *addedToken) {
		if tok != nil {
			ids = append(ids, tok.id)
			return
		}
		first := off == 0
		if t.normalizer != nil {
			seg = t.normalizer.normalize(seg)
		}
		t.normMatch.split(seg, func(seg2 string, off2 int, tok2 *addedToken) {
			if tok2 != nil {
				ids = append(ids, tok2.id)
				return
			}
			ids = t.encodeSegment(seg2, first && off2 == 0, ids)
		})
	})
	if addSpecial {
		ids = t.postProcess(ids)
	}
	return ids
}

// encodeSegment pre-tokenizes and encodes text that holds no added token.
func (t *Tokenizer) encodeSegment(s string, first bool, ids []int) []int {
	if s == "" {
		return ids
	}
	if t.pre == nil {
		return t.model.encodeWord(s, t.byteLevel, ids)
	}
	// The emit closure captures ids by reference; it lives in a pooled struct so that
	// encoding a segment does not allocate a closure each time.
	e, _ := t.emitPool.Get().(*emitter)
	if e == nil {
		e = &emitter{}
		e.fn = func(piece string, _ bool) { e.ids = e.t.model.encodeWord(piece, e.t.byteLevel, e.ids) }
	}
	e.t, e.ids = t, ids
	t.pre.split(s, first, e.fn)
	ids = e.ids
	e.t, e.ids = nil, nil
	t.emitPool.Put(e)
	return ids
}

type emitter struct {
	t   *Tokenizer
	ids []int
	fn  emitFunc
}

// Decode turns ids back into text as HF's decode does: unknown ids are skipped, special
// added tokens too when skipSpecial, and the token strings go through the decoder chain.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	if _, ok := t.decoder.(byteLevelDec); ok {
		return t.decodeByteLevel(ids, skipSpecial)
	}
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if tok, ok := t.decodeToken(id, skipSpecial); ok {
			toks = append(toks, tok)
		}
	}
	if t.decoder == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.decoder.decodeChain(toks), "")
}

// decodeToken returns the string of id for decoding: added tokens first, then the model;
// false for an unknown id or, with skipSpecial, a special token.
func (t *Tokenizer) decodeToken(id int, skipSpecial bool) (string, bool) {
	if id >= t.addedLo && id <= t.addedHi {
		if a, ok := t.addedByID[id]; ok {
			if skipSpecial && t.special[a.content] {
				return "", false
			}
			return a.content, true
		}
	}
	tok, ok := t.model.idToToken(id)
	if !ok || skipSpecial && len(t.special) > 0 && t.special[tok] {
		return "", false
	}
	return tok, true
}

// decodeByteLevel is Decode for a tokenizer whose decoder is ByteLevel alone: the bytes of
// every id are computed once, so decoding is a concatenation and one UTF-8 check.
func (t *Tokenizer) decodeByteLevel(ids []int, skipSpecial bool) string {
	t.rawOnce.Do(func() {
		t.rawBytes = make([]string, len(t.model.idTok))
		for id, tok := range t.model.idTok {
			if t.model.idOK[id] {
				t.rawBytes[id] = string(appendByteLevelRaw(nil, tok))
			}
		}
	})
	raw := make([]byte, 0, 4*len(ids))
	for _, id := range ids {
		tok, ok := t.decodeToken(id, skipSpecial)
		if !ok {
			continue
		}
		if id >= 0 && id < len(t.rawBytes) && t.model.idOK[id] && tok == t.model.idTok[id] {
			raw = append(raw, t.rawBytes[id]...)
		} else {
			raw = appendByteLevelRaw(raw, tok)
		}
	}
	if utf8.Valid(raw) {
		return string(raw)
	}
	return string(appendLossy(nil, raw))
}

// BOS returns the token that the post-processor puts before the text (the special token
// right before $A in a TemplateProcessing, the CLS token of Bert/Roberta processing).
func (t *Tokenizer) BOS() (id int, ok bool) {
	for _, p := range t.post {
		if id, ok := p.bos(); ok {
			return id, true
		}
	}
	return 0, false
}

// AddsBOS reports whether Encode(…, true) puts a token before the text.
func (t *Tokenizer) AddsBOS() bool {
	_, ok := t.BOS()
	return ok
}

// VocabSize is the number of ids in use: the largest id of the model vocabulary and the
// added tokens, plus one. It is what an embedding matrix must cover.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// TokenToID returns the id of a token, given as the vocabulary spells it (byte-level
// vocabularies spell a leading space "Ġ"). Added tokens take precedence, as in HF.
func (t *Tokenizer) TokenToID(tok string) (int, bool) {
	if a, ok := t.addedByTk[tok]; ok {
		return a.id, true
	}
	id, ok := t.model.vocab[tok]
	return int(id), ok
}

// IDToToken returns the token of an id, as the vocabulary spells it.
func (t *Tokenizer) IDToToken(id int) (string, bool) {
	if a, ok := t.addedByID[id]; ok {
		return a.content, true
	}
	return t.model.idToToken(id)
}

// IsSpecial reports whether id is an added token marked special (what Decode skips).
func (t *Tokenizer) IsSpecial(id int) bool {
	a, ok := t.addedByID[id]
	return ok && t.special[a.content]
}

func (m *bpe) idToToken(id int) (string, bool) {
	if id < 0 || id >= len(m.idTok) || !m.idOK[id] {
		return "", false
	}
	return m.idTok[id], true
}

// postStep is one post-processor.
type postStep interface {
	apply(ids []int) []int
	bos() (int, bool)
}

func (t *Tokenizer) postProcess(ids []int) []int {
	for _, p := range t.post {
		ids = p.apply(ids)
	}
	return ids
}

// templatePost is TemplateProcessing's single-sequence template.
type templatePost struct {
	pieces []templatePiece
}

type templatePiece struct {
	seq bool  // the $A sequence
	ids []int // the special token's ids otherwise
}

func (p *templatePost) apply(ids []int) []int {
	var out []int
	for _, pc := range p.pieces {
		if pc.seq {
			out = append(out, ids...)
		} else {
			out = append(out, pc.ids...)
		}
	}
	return out
}

func (p *templatePost) bos() (int, bool) {
	for i, pc := range p.pieces {
		if pc.seq {
			if i > 0 && !p.pieces[i-1].seq && len(p.pieces[i-1].ids) == 1 {
				return p.pieces[i-1].ids[0], true
			}
			return 0, false
		}
	}
	return 0, false
}

// wrapPost is Bert/Roberta processing for a single sequence: cls $A sep.
type wrapPost struct{ cls, sep int }

func (p *wrapPost) apply(ids []int) []int {
	out := make([]int, 0, len(ids)+2)
	out = append(out, p.cls)
	out = append(out, ids...)
	return append(out, p.sep)
}

func (p *wrapPost) bos() (int, bool) { return p.cls, true }
