package tokenizer

// Hand-written matchers for the split patterns of the supported tokenizer families. Each
// function returns the end of the match that Oniguruma (what the tokenizers crate uses)
// finds at byte offset p, trying the alternatives left to right with backtracking, exactly
// as the regex would. Every character belongs to one alternative of these patterns, so a
// match exists at every position and the matches tile the text: the splitter needs no gaps.
//
// They replace regexp for two reasons: the patterns end in \s+(?!\S), a look-ahead that Go's
// regexp (RE2) cannot express, and a state machine over a class table is several times
// faster than any regex engine on this hot path.

// Pattern strings as they appear in tokenizer.json files.
const (
	// patGPT2 is GPT-2's pattern, implied by ByteLevel(use_regex: true) and sometimes given
	// as an explicit Split.
	patGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	// patLlama3 is LLaMA-3's (tiktoken cl100k-style) pattern: digits in groups of 1-3.
	patLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// patQwen2 is Qwen2/Qwen3's pattern: as LLaMA-3 but single digits.
	patQwen2 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// knownPatterns maps a pattern string to its matcher.
var knownPatterns = map[string]func(s string, p int) int{
	patGPT2:   matchGPT2,
	patLlama3: matchLlama3,
	patQwen2:  matchQwen2,
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d at p (s[p] == '\”), returning the end or -1.
// With fold, letters match case-insensitively as Oniguruma's (?i) does, which includes
// U+017F LATIN SMALL LETTER LONG S (it case-folds to 's').
func contraction(s string, p int, fold bool) int {
	q := p + 1
	if q >= len(s) {
		return -1
	}
	c := s[q]
	if fold {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == 0xC5 && q+1 < len(s) && s[q+1] == 0xBF { // U+017F ſ
			return q + 2
		}
	}
	switch c {
	case 's', 't', 'm', 'd':
		return q + 1
	case 'r', 'v', 'l':
		if q+1 >= len(s) {
			return -1
		}
		c2 := s[q+1]
		if fold && c2 >= 'A' && c2 <= 'Z' {
			c2 += 'a' - 'A'
		}
		if c == 'r' && c2 == 'e' || c == 'v' && c2 == 'e' || c == 'l' && c2 == 'l' {
			return q + 2
		}
	}
	return -1
}

// classAt returns the class and size of the rune at p, or (255, 0) at the end of s.
func classAt(s string, p int) (uint8, int) {
	if p >= len(s) {
		return 255, 0
	}
	c := s[p]
	if c < 0x80 {
		return asciiClass[c], 1
	}
	_, cls, size := runeAt(s, p)
	return cls, size
}

// skipClass advances over runes of class cls from p.
func skipClass(s string, p int, cls uint8) int {
	for p < len(s) {
		c := s[p]
		if c < 0x80 {
			if asciiClass[c] != cls {
				return p
			}
			p++
			continue
		}
		_, k, size := runeAt(s, p)
		if k != cls {
			return p
		}
		p += size
	}
	return p
}

// spaceRun scans the maximal \s run starting at p. It returns its end, the start of its
// last rune, the number of runes, and the offset of its last [\r\n] (or -1).
func spaceRun(s string, p int) (end, last, runes, lastNL int) {
	end, last, lastNL = p, p, -1
	for end < len(s) {
		cls, size := classAt(s, end)
		if cls != clsSpace && cls != clsNewline {
			break
		}
		if cls == clsNewline {
			lastNL = end
		}
		last = end
		end += size
		runes++
	}
	return
}

// whitespaceTail matches \s+(?!\S)|\s+ at p, where s[p] is whitespace: the whole run when it
// ends the text or is a single rune, else the run less its last rune, which is left to
// start the next word.
func whitespaceTail(s string, p int) int {
	end, last, runes, _ := spaceRun(s, p)
	if end == len(s) || runes == 1 {
		return end
	}
	return last
}

// matchGPT2 implements patGPT2.
func matchGPT2(s string, p int) int {
	c := s[p]
	if c == '\'' {
		if e := contraction(s, p, false); e > 0 {
			return e
		}
	}
	cls, size := classAt(s, p)
	// ` ?X+` for X in {\p{L}, \p{N}, [^\s\p{L}\p{N}]}: an optional ASCII space joins a
	// following run of one class.
	if c == ' ' {
		next, _ := classAt(s, p+1)
		if next == clsLetter || next == clsNumber || next == clsOther {
			return skipClass(s, p+1, next)
		}
	}
	switch cls {
	case clsLetter, clsNumber, clsOther:
		return skipClass(s, p+size, cls)
	}
	return whitespaceTail(s, p)
}

// matchLlama3 implements patLlama3.
func matchLlama3(s string, p int) int { return matchLlamaLike(s, p, 3) }

// matchQwen2 implements patQwen2.
func matchQwen2(s string, p int) int { return matchLlamaLike(s, p, 1) }

func matchLlamaLike(s string, p int, maxDigits int) int {
	c := s[p]
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if c == '\'' {
		if e := contraction(s, p, true); e > 0 {
			return e
		}
	}
	cls, size := classAt(s, p)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if cls == clsLetter {
		return skipClass(s, p+size, clsLetter)
	}
	if cls == clsOther || cls == clsSpace {
		if next, _ := classAt(s, p+size); next == clsLetter {
			return skipClass(s, p+size, clsLetter)
		}
	}
	// \p{N}{1,n}
	if cls == clsNumber {
		q := p + size
		for i := 1; i < maxDigits; i++ {
			k, sz := classAt(s, q)
			if k != clsNumber {
				break
			}
			q += sz
		}
		return q
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	start := -1
	if c == ' ' {
		if next, _ := classAt(s, p+1); next == clsOther {
			start = p + 1
		}
	}
	if start < 0 && cls == clsOther {
		start = p
	}
	if start >= 0 {
		q := skipClass(s, start, clsOther)
		for q < len(s) && (s[q] == '\r' || s[q] == '\n') {
			q++
		}
		return q
	}
	// Only whitespace is left. \s*[\r\n]+: the run up to and including its last newline.
	end, last, runes, lastNL := spaceRun(s, p)
	if lastNL >= 0 {
		return lastNL + 1
	}
	// \s+(?!\S)|\s+
	if end == len(s) || runes == 1 {
		return end
	}
	return last
}
