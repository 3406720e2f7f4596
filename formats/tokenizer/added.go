package tokenizer

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens.
type addedToken struct {
	content    string
	id         int
	special    bool
	singleWord bool
	lstrip     bool
	rstrip     bool
	normalized bool
}

// addedMatcher finds added tokens in text the way tokenizers' AddedVocabulary does: an
// Aho-Corasick search in LeftmostLongest mode (the earliest match, the longest one at that
// position), then the single_word, lstrip and rstrip rules applied to each match. A match
// rejected by single_word still consumes its text, as in HF, where the rejection happens
// after the automaton has moved past it.
type addedMatcher struct {
	// byFirst lists, per first byte, the patterns starting with it, longest first.
	byFirst [256][]int
	pats    []string
	toks    []*addedToken
	// only is the single first byte shared by all patterns, or -1; it lets the scan use
	// strings.IndexByte (the usual case: all special tokens start with '<').
	only int
	any  bool
}

func newAddedMatcher(toks []*addedToken, pats []string) *addedMatcher {
	m := &addedMatcher{only: -1}
	for i, p := range pats {
		if p == "" {
			continue
		}
		m.pats = append(m.pats, p)
		m.toks = append(m.toks, toks[i])
	}
	firsts := map[byte]bool{}
	for i, p := range m.pats {
		m.byFirst[p[0]] = append(m.byFirst[p[0]], i)
		firsts[p[0]] = true
		m.any = true
	}
	for b := range m.byFirst {
		l := m.byFirst[b]
		sort.SliceStable(l, func(i, j int) bool { return len(m.pats[l[i]]) > len(m.pats[l[j]]) })
	}
	if len(firsts) == 1 {
		for b := range firsts {
			m.only = int(b)
		}
	}
	return m
}

// next returns the leftmost-longest match at or after p: its pattern index and start, or
// -1 when there is none.
func (m *addedMatcher) next(s string, p int) (idx, start int) {
	for p < len(s) {
		if m.only >= 0 {
			i := strings.IndexByte(s[p:], byte(m.only))
			if i < 0 {
				return -1, -1
			}
			p += i
		} else if len(m.byFirst[s[p]]) == 0 {
			p++
			continue
		}
		for _, k := range m.byFirst[s[p]] {
			if strings.HasPrefix(s[p:], m.pats[k]) {
				return k, p
			}
		}
		p++
	}
	return -1, -1
}

// split cuts s into text segments and added tokens, calling fn in order: tok is nil for a
// text segment (never empty), else the token matched.
func (m *addedMatcher) split(s string, fn func(seg string, offset int, tok *addedToken)) {
	if !m.any {
		if s != "" {
			fn(s, 0, nil)
		}
		return
	}
	startOffset := 0
	for p := 0; p < len(s); {
		k, start := m.next(s, p)
		if k < 0 {
			break
		}
		stop := start + len(m.pats[k])
		p = stop
		tok := m.toks[k]
		if tok.singleWord {
			startOK := start == 0 || !endsWithWord(s[:start])
			stopOK := stop == len(s) || !startsWithWord(s[stop:])
			if !startOK || !stopOK {
				continue
			}
		}
		if tok.lstrip {
			start = max(leftmostSpaceAtEnd(s[:start]), startOffset)
		}
		if tok.rstrip {
			stop += rightmostSpaceAtStart(s[stop:])
			p = stop
		}
		if startOffset < start {
			fn(s[startOffset:start], startOffset, nil)
		}
		fn(s[start:stop], start, tok)
		startOffset = stop
	}
	if startOffset < len(s) {
		fn(s[startOffset:], startOffset, nil)
	}
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return s != "" && isWordRune(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && isWordRune(r)
}

// leftmostSpaceAtEnd returns where the trailing whitespace of s starts.
func leftmostSpaceAtEnd(s string) int {
	i := len(s)
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:i])
		if !isSpaceRune(r) {
			break
		}
		i -= size
	}
	return i
}

// rightmostSpaceAtStart returns the length of the leading whitespace of s.
func rightmostSpaceAtStart(s string) int {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !isSpaceRune(r) {
			break
		}
		i += size
	}
	return i
}
