package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// The JSON layout of tokenizer.json. Components are kept raw and parsed by type, so that an
// unknown type can be reported by name.
type rawTokenizer struct {
	Truncation    json.RawMessage `json:"truncation"`
	Padding       json.RawMessage `json:"padding"`
	AddedTokens   []rawAddedToken `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         json.RawMessage `json:"model"`
}

type rawAddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	Lstrip     bool   `json:"lstrip"`
	Rstrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

type rawPattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// rawComponent holds the fields of every supported normalizer, pre-tokenizer,
// post-processor and decoder; each type reads the ones it has.
type rawComponent struct {
	Type string `json:"type"`

	Normalizers   []json.RawMessage `json:"normalizers"`
	Pretokenizers []json.RawMessage `json:"pretokenizers"`
	Processors    []json.RawMessage `json:"processors"`
	Decoders      []json.RawMessage `json:"decoders"`

	Prepend string      `json:"prepend"`
	Pattern *rawPattern `json:"pattern"`
	Content *string     `json:"content"`
	Left    *bool       `json:"left"`
	Right   *bool       `json:"right"`

	AddPrefixSpace *bool  `json:"add_prefix_space"`
	UseRegex       *bool  `json:"use_regex"`
	Behavior       string `json:"behavior"`
	Invert         bool   `json:"invert"`
	Replacement    string `json:"replacement"`
	PrependScheme  string `json:"prepend_scheme"`
	Split          *bool  `json:"split"`

	Single        []json.RawMessage             `json:"single"`
	SpecialTokens map[string]rawTemplateSpecial `json:"special_tokens"`
	Cls           []json.RawMessage             `json:"cls"`
	Sep           []json.RawMessage             `json:"sep"`

	Start *int `json:"start"`
	Stop  *int `json:"stop"`
}

type rawTemplateSpecial struct {
	ID  string `json:"id"`
	IDs []int  `json:"ids"`
}

type rawBPE struct {
	Type                    string   `json:"type"`
	Dropout                 *float64 `json:"dropout"`
	UnkToken                *string  `json:"unk_token"`
	ContinuingSubwordPrefix *string  `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string  `json:"end_of_word_suffix"`
	FuseUnk                 bool     `json:"fuse_unk"`
	ByteFallback            bool     `json:"byte_fallback"`
	IgnoreMerges            bool     `json:"ignore_merges"`
}

func isNull(m json.RawMessage) bool {
	m = bytes.TrimSpace(m)
	return len(m) == 0 || string(m) == "null"
}

// Parse builds a Tokenizer from the contents of a tokenizer.json.
func Parse(data []byte) (*Tokenizer, error) {
	t, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return t, nil
}

func parse(data []byte) (*Tokenizer, error) {
	fields, err := objectFields(data)
	if err != nil {
		return nil, fmt.Errorf("parsing tokenizer.json: %w", err)
	}
	raw := rawTokenizer{
		Truncation:    fields["truncation"],
		Padding:       fields["padding"],
		Normalizer:    fields["normalizer"],
		PreTokenizer:  fields["pre_tokenizer"],
		PostProcessor: fields["post_processor"],
		Decoder:       fields["decoder"],
		Model:         fields["model"],
	}
	if v := fields["added_tokens"]; !isNull(v) {
		if err := json.Unmarshal(v, &raw.AddedTokens); err != nil {
			return nil, fmt.Errorf("added_tokens: %w", err)
		}
	}
	if !isNull(raw.Truncation) {
		return nil, errors.New("truncation is set; truncating encodings is not supported")
	}
	if !isNull(raw.Padding) {
		var p struct {
			Strategy json.RawMessage `json:"strategy"`
		}
		if err := json.Unmarshal(raw.Padding, &p); err != nil || !strings.Contains(string(p.Strategy), "BatchLongest") {
			return nil, errors.New("padding with a fixed length is set; padding encodings is not supported")
		}
	}
	if isNull(raw.Model) {
		return nil, errors.New("no model")
	}
	model, err := parseBPE(raw.Model)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{model: model}

	if !isNull(raw.Normalizer) {
		if t.normalizer, err = parseNormalizer(raw.Normalizer); err != nil {
			return nil, fmt.Errorf("normalizer: %w", err)
		}
	}
	if !isNull(raw.PreTokenizer) {
		pre, byteLevel, err := parsePreTokenizer(raw.PreTokenizer, true)
		if err != nil {
			return nil, fmt.Errorf("pre_tokenizer: %w", err)
		}
		t.pre, t.byteLevel = simplifyPre(pre), byteLevel
	}
	if !isNull(raw.Decoder) {
		if t.decoder, err = parseDecoder(raw.Decoder); err != nil {
			return nil, fmt.Errorf("decoder: %w", err)
		}
	}

	if err := t.setAddedTokens(raw.AddedTokens); err != nil {
		return nil, err
	}
	if !isNull(raw.PostProcessor) {
		if t.post, err = t.parsePost(raw.PostProcessor); err != nil {
			return nil, fmt.Errorf("post_processor: %w", err)
		}
	}
	t.vocabSize = len(model.idTok)
	t.addedLo, t.addedHi = 0, -1
	for i, a := range t.added {
		t.vocabSize = max(t.vocabSize, a.id+1)
		if i == 0 {
			t.addedLo, t.addedHi = a.id, a.id
		}
		t.addedLo, t.addedHi = min(t.addedLo, a.id), max(t.addedHi, a.id)
	}
	return t, nil
}

// setAddedTokens registers the added tokens. As in HF, a token whose content is already in
// the model vocabulary keeps the model's id.
func (t *Tokenizer) setAddedTokens(raws []rawAddedToken) error {
	t.addedByID = map[int]*addedToken{}
	t.addedByTk = map[string]*addedToken{}
	t.special = map[string]bool{}
	var rawToks, normToks []*addedToken
	var rawPats, normPats []string
	for _, r := range raws {
		if r.Content == "" {
			continue
		}
		if !utf8.ValidString(r.Content) {
			return fmt.Errorf("added token %q is not valid UTF-8", r.Content)
		}
		a := &addedToken{
			content: r.Content, id: r.ID, special: r.Special, singleWord: r.SingleWord,
			lstrip: r.Lstrip, rstrip: r.Rstrip,
			// HF's default: special tokens are not normalized, others are.
			normalized: !r.Special,
		}
		if r.Normalized != nil {
			a.normalized = *r.Normalized
		}
		if id, ok := t.model.vocab[r.Content]; ok {
			a.id = int(id)
		}
		if a.id < 0 {
			return fmt.Errorf("added token %q has negative id %d", r.Content, a.id)
		}
		if old, ok := t.addedByTk[a.content]; ok {
			// A repeated content updates the flags of the first entry (HF keeps one).
			*old = *a
			continue
		}
		t.added = append(t.added, a)
		t.addedByID[a.id] = a
		t.addedByTk[a.content] = a
		if a.special {
			t.special[a.content] = true
		}
	}
	// HF orders its matching patterns special tokens first, then the others, each in file
	// order; with LeftmostLongest matching the order only breaks ties of equal patterns.
	for pass := 0; pass < 2; pass++ {
		for _, a := range t.added {
			if a.special != (pass == 0) {
				continue
			}
			if a.normalized {
				pat := a.content
				if t.normalizer != nil {
					pat = t.normalizer.normalize(pat)
				}
				normToks, normPats = append(normToks, a), append(normPats, pat)
			} else {
				rawToks, rawPats = append(rawToks, a), append(rawPats, a.content)
			}
		}
	}
	t.rawMatch = newAddedMatcher(rawToks, rawPats)
	t.normMatch = newAddedMatcher(normToks, normPats)
	return nil
}

func parseBPE(data json.RawMessage) (*bpe, error) {
	fields, err := objectFields(data)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	// The vocabulary and merges are read by the fast scanner; the rest is small.
	vocabRaw, mergesRaw := fields["vocab"], fields["merges"]
	delete(fields, "vocab")
	delete(fields, "merges")
	small, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	var r rawBPE
	if err := json.Unmarshal(small, &r); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	switch r.Type {
	case "BPE":
	case "":
		if isNull(mergesRaw) {
			return nil, errors.New("model: no type and no merges; only BPE models are supported")
		}
	default:
		return nil, fmt.Errorf("model type %q is not supported (only BPE)", r.Type)
	}
	if r.Dropout != nil && *r.Dropout != 0 {
		return nil, fmt.Errorf("model: BPE dropout %g is not supported (encoding would be random)", *r.Dropout)
	}
	m := &bpe{
		unk:          -1,
		fuseUnk:      r.FuseUnk,
		byteFallback: r.ByteFallback,
		ignoreMerges: r.IgnoreMerges,
	}
	if r.ContinuingSubwordPrefix != nil {
		m.prefix = *r.ContinuingSubwordPrefix
	}
	if r.EndOfWordSuffix != nil {
		m.suffix = *r.EndOfWordSuffix
	}
	vocab, err := parseVocab(vocabRaw)
	if err != nil {
		return nil, fmt.Errorf("model vocab: %w", err)
	}
	m.vocab = vocab
	maxID := -1
	for _, id := range vocab {
		maxID = max(maxID, int(id))
	}
	m.idTok = make([]string, maxID+1)
	m.idOK = make([]bool, maxID+1)
	for tok, id := range vocab {
		if m.idOK[id] {
			// Two tokens with one id: HF's reverse map keeps one of them arbitrarily;
			// prefer the shorter, then the smaller, so that the choice is at least stable.
			old := m.idTok[id]
			if len(old) < len(tok) || len(old) == len(tok) && old < tok {
				continue
			}
		}
		m.idTok[id] = tok
		m.idOK[id] = true
	}
	if r.UnkToken != nil {
		if id, ok := vocab[*r.UnkToken]; ok {
			m.unk = id
		}
	}
	if err := m.setMerges(mergesRaw); err != nil {
		return nil, fmt.Errorf("model merges: %w", err)
	}
	for b := 0; b < 256; b++ {
		m.fallback[b] = -1
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.fallback[b] = id
		}
		m.byteIDs[b] = -1
		if m.prefix == "" && m.suffix == "" {
			if id, ok := vocab[byteToUTF8[b]]; ok {
				m.byteIDs[b] = id
			}
		}
	}
	m.spSplit = m.prefix == "" && m.suffix == "" && !m.ignoreMerges && canSplitAtMark(vocab)
	return m, nil
}

// parseVocab reads the model vocabulary: an object of token → id. A list (Unigram's
// [token, score] pairs) is reported as the unsupported model it belongs to.
func parseVocab(data json.RawMessage) (map[string]int32, error) {
	d := bytes.TrimSpace(data)
	if len(d) == 0 || d[0] != '{' {
		return nil, errors.New("not an object of token to id")
	}
	vocab, err := parseVocabFast(d)
	if err != nil {
		return nil, err
	}
	return vocab, nil
}

// setMerges reads the merges, in either format: "a b" strings (older files; lines starting
// with "#version" are skipped as HF does) or ["a", "b"] pairs (newer files, which allow
// spaces inside tokens). The rank of a merge is its index; a pair listed twice keeps its
// last rank, as HF's map does.
func (m *bpe) setMerges(data json.RawMessage) error {
	m.merges = newPairMap(0)
	if isNull(data) {
		return nil
	}
	m.merges = newPairMap(len(data) / 16)
	var key []byte
	rank := int32(0)
	return parseMergesFast(data, func(a, b []byte) error {
		ida, ok := m.vocab[string(a)]
		if !ok {
			return fmt.Errorf("merge %d: token %q is not in the vocabulary", rank, a)
		}
		idb, ok := m.vocab[string(b)]
		if !ok {
			return fmt.Errorf("merge %d: token %q is not in the vocabulary", rank, b)
		}
		rest := b
		if len(m.prefix) <= len(rest) {
			rest = rest[len(m.prefix):]
		}
		key = append(append(key[:0], a...), rest...)
		id, ok := m.vocab[string(key)]
		if !ok {
			return fmt.Errorf("merge %d: result %q is not in the vocabulary", rank, key)
		}
		m.rankNew = append(m.rankNew, id)
		m.merges.set(pairKey(ida, idb), rank)
		rank++
		return nil
	})
}

func parseNormalizer(data json.RawMessage) (normalizer, error) {
	var c rawComponent
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	switch c.Type {
	case "NFC":
		return unicodeNorm{norm.NFC}, nil
	case "NFD":
		return unicodeNorm{norm.NFD}, nil
	case "NFKC":
		return unicodeNorm{norm.NFKC}, nil
	case "NFKD":
		return unicodeNorm{norm.NFKD}, nil
	case "Prepend":
		return prependNorm{c.Prepend}, nil
	case "Replace":
		if c.Pattern == nil || c.Content == nil {
			return nil, errors.New("Replace: missing pattern or content")
		}
		if c.Pattern.String != nil {
			return replaceNorm{*c.Pattern.String, *c.Content}, nil
		}
		if c.Pattern.Regex != nil {
			m, err := compileRegex(*c.Pattern.Regex)
			if err != nil {
				return nil, fmt.Errorf("Replace: %w", err)
			}
			return replaceRegexNorm{m, *c.Content}, nil
		}
		return nil, errors.New("Replace: pattern is neither String nor Regex")
	case "Strip":
		return stripNorm{c.Left == nil || *c.Left, c.Right == nil || *c.Right}, nil
	case "Sequence":
		var steps []normalizer
		for _, n := range c.Normalizers {
			if isNull(n) {
				continue
			}
			s, err := parseNormalizer(n)
			if err != nil {
				return nil, err
			}
			steps = append(steps, s)
		}
		return sequenceNorm{steps}, nil
	case "":
		return nil, errors.New("normalizer without a type")
	}
	return nil, fmt.Errorf("normalizer type %q is not supported", c.Type)
}

// parsePreTokenizer parses a pre-tokenizer; last says whether it is the last step of the
// chain, the only place where ByteLevel is supported (see byteLevelPre). It also reports
// whether the model input is byte-level.
func parsePreTokenizer(data json.RawMessage, last bool) (preTokenizer, bool, error) {
	var c rawComponent
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, false, err
	}
	switch c.Type {
	case "ByteLevel":
		if !last {
			return nil, false, errors.New("ByteLevel followed by another pre-tokenizer is not supported")
		}
		return &byteLevelPre{
			addPrefixSpace: c.AddPrefixSpace == nil || *c.AddPrefixSpace,
			useRegex:       c.UseRegex == nil || *c.UseRegex,
		}, true, nil
	case "Split":
		if c.Pattern == nil {
			return nil, false, errors.New("Split: missing pattern")
		}
		beh, err := parseBehavior(c.Behavior)
		if err != nil {
			return nil, false, fmt.Errorf("Split: %w", err)
		}
		var m matcher
		switch {
		case c.Pattern.String != nil:
			m = stringMatcher{*c.Pattern.String}
		case c.Pattern.Regex != nil:
			if m, err = compileRegex(*c.Pattern.Regex); err != nil {
				return nil, false, fmt.Errorf("Split: %w", err)
			}
		default:
			return nil, false, errors.New("Split: pattern is neither String nor Regex")
		}
		return &splitPre{m: m, beh: beh, invert: c.Invert}, false, nil
	case "Metaspace":
		repl := c.Replacement
		r, size := utf8.DecodeRuneInString(repl)
		if size == 0 || size != len(repl) {
			return nil, false, fmt.Errorf("Metaspace: replacement %q must be one character", repl)
		}
		scheme, err := parsePrependScheme(c)
		if err != nil {
			return nil, false, fmt.Errorf("Metaspace: %w", err)
		}
		return &metaspacePre{repl: repl, replR: r, prepend: scheme, split_: c.Split == nil || *c.Split}, false, nil
	case "Sequence":
		var steps []preTokenizer
		byteLevel := false
		for i, p := range c.Pretokenizers {
			s, bl, err := parsePreTokenizer(p, last && i == len(c.Pretokenizers)-1)
			if err != nil {
				return nil, false, err
			}
			steps = append(steps, s)
			byteLevel = byteLevel || bl
		}
		return &sequencePre{steps}, byteLevel, nil
	case "":
		return nil, false, errors.New("pre-tokenizer without a type")
	}
	return nil, false, fmt.Errorf("pre-tokenizer type %q is not supported", c.Type)
}

// simplifyPre drops steps that do nothing (a ByteLevel without regex or prefix space only
// maps bytes, which the model does) and unwraps one-step sequences, so that the common
// Split + ByteLevel chain runs without a per-piece closure.
func simplifyPre(p preTokenizer) preTokenizer {
	switch q := p.(type) {
	case *byteLevelPre:
		if !q.useRegex && !q.addPrefixSpace {
			return nil
		}
	case *sequencePre:
		var steps []preTokenizer
		for _, s := range q.steps {
			if s = simplifyPre(s); s != nil {
				steps = append(steps, s)
			}
		}
		switch len(steps) {
		case 0:
			return nil
		case 1:
			return steps[0]
		}
		return &sequencePre{steps}
	}
	return p
}

func parsePrependScheme(c rawComponent) (prependScheme, error) {
	// As HF's deserializer: an explicit add_prefix_space false (the pre-prepend_scheme
	// spelling) means never; otherwise prepend_scheme, by default always.
	if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
		return prependNever, nil
	}
	switch c.PrependScheme {
	case "always", "":
		return prependAlways, nil
	case "never":
		return prependNever, nil
	case "first":
		return prependFirst, nil
	}
	return 0, fmt.Errorf("unknown prepend_scheme %q", c.PrependScheme)
}

func parseDecoder(data json.RawMessage) (decoder, error) {
	var c rawComponent
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	switch c.Type {
	case "ByteLevel":
		return byteLevelDec{}, nil
	case "ByteFallback":
		return byteFallbackDec{}, nil
	case "Fuse":
		return fuseDec{}, nil
	case "Replace":
		if c.Pattern == nil || c.Pattern.String == nil || c.Content == nil {
			return nil, errors.New("Replace: only a String pattern with content is supported")
		}
		return replaceDec{*c.Pattern.String, *c.Content}, nil
	case "Strip":
		d := stripDec{content: ' '}
		if c.Content != nil {
			r, size := utf8.DecodeRuneInString(*c.Content)
			if size == 0 || size != len(*c.Content) {
				return nil, fmt.Errorf("Strip: content %q must be one character", *c.Content)
			}
			d.content = r
		}
		if c.Start != nil {
			d.start = *c.Start
		}
		if c.Stop != nil {
			d.stop = *c.Stop
		}
		return d, nil
	case "Metaspace":
		r, size := utf8.DecodeRuneInString(c.Replacement)
		if size == 0 || size != len(c.Replacement) {
			return nil, fmt.Errorf("Metaspace: replacement %q must be one character", c.Replacement)
		}
		scheme, err := parsePrependScheme(c)
		if err != nil {
			return nil, fmt.Errorf("Metaspace: %w", err)
		}
		return metaspaceDec{repl: r, prepend: scheme}, nil
	case "Sequence":
		var steps []decoder
		for _, d := range c.Decoders {
			s, err := parseDecoder(d)
			if err != nil {
				return nil, err
			}
			steps = append(steps, s)
		}
		return sequenceDec{steps}, nil
	case "":
		return nil, errors.New("decoder without a type")
	}
	return nil, fmt.Errorf("decoder type %q is not supported", c.Type)
}

func (t *Tokenizer) parsePost(data json.RawMessage) ([]postStep, error) {
	var c rawComponent
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	switch c.Type {
	case "ByteLevel":
		return nil, nil // it only adjusts offsets
	case "TemplateProcessing":
		p := &templatePost{}
		for _, raw := range c.Single {
			var pc struct {
				SpecialToken *struct {
					ID string `json:"id"`
				} `json:"SpecialToken"`
				Sequence *struct {
					ID string `json:"id"`
				} `json:"Sequence"`
			}
			if err := json.Unmarshal(raw, &pc); err != nil {
				return nil, fmt.Errorf("TemplateProcessing: %w", err)
			}
			switch {
			case pc.Sequence != nil:
				if pc.Sequence.ID != "A" {
					return nil, fmt.Errorf("TemplateProcessing: sequence $%s in the single template", pc.Sequence.ID)
				}
				p.pieces = append(p.pieces, templatePiece{seq: true})
			case pc.SpecialToken != nil:
				st, ok := c.SpecialTokens[pc.SpecialToken.ID]
				if !ok {
					return nil, fmt.Errorf("TemplateProcessing: special token %q is not in special_tokens", pc.SpecialToken.ID)
				}
				p.pieces = append(p.pieces, templatePiece{ids: st.IDs})
			default:
				return nil, errors.New("TemplateProcessing: template piece is neither SpecialToken nor Sequence")
			}
		}
		return []postStep{p}, nil
	case "BertProcessing", "RobertaProcessing":
		var cls, sep struct {
			tok string
			id  int
		}
		if len(c.Cls) != 2 || len(c.Sep) != 2 ||
			json.Unmarshal(c.Cls[0], &cls.tok) != nil || json.Unmarshal(c.Cls[1], &cls.id) != nil ||
			json.Unmarshal(c.Sep[0], &sep.tok) != nil || json.Unmarshal(c.Sep[1], &sep.id) != nil {
			return nil, fmt.Errorf("%s: cls and sep must be [token, id]", c.Type)
		}
		return []postStep{&wrapPost{cls: cls.id, sep: sep.id}}, nil
	case "Sequence":
		var steps []postStep
		for _, p := range c.Processors {
			s, err := t.parsePost(p)
			if err != nil {
				return nil, err
			}
			steps = append(steps, s...)
		}
		return steps, nil
	case "":
		return nil, errors.New("post-processor without a type")
	}
	return nil, fmt.Errorf("post-processor type %q is not supported", c.Type)
}
