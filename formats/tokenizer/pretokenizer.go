package tokenizer

import (
	"fmt"
	"regexp"
	"strings"
)

// emitFunc receives one piece of pre-tokenized text. first reports whether the piece starts
// at offset 0 of the original input, which Metaspace's prepend_scheme "first" needs.
type emitFunc func(piece string, first bool)

// preTokenizer splits normalized text into the pieces (words) that the model encodes
// independently. Pieces are never empty (HF drops empty splits).
type preTokenizer interface {
	split(s string, first bool, emit emitFunc)
}

// splitBehavior is HF's SplitDelimiterBehavior: what happens to the matched delimiters.
type splitBehavior int

const (
	behIsolated splitBehavior = iota
	behRemoved
	behMergedWithPrevious
	behMergedWithNext
	behContiguous
)

func parseBehavior(s string) (splitBehavior, error) {
	switch s {
	case "Isolated", "isolated":
		return behIsolated, nil
	case "Removed", "removed":
		return behRemoved, nil
	case "MergedWithPrevious", "merged_with_previous":
		return behMergedWithPrevious, nil
	case "MergedWithNext", "merged_with_next":
		return behMergedWithNext, nil
	case "Contiguous", "contiguous":
		return behContiguous, nil
	}
	return 0, fmt.Errorf("unknown split behavior %q", s)
}

// matcher finds the delimiter matches of a split pattern: it calls fn for each match, in
// order, with non-overlapping offsets.
type matcher interface {
	matches(s string, fn func(start, end int))
}

// tileMatcher runs one of the hand-written pattern matchers (patterns.go).
type tileMatcher struct{ next func(s string, p int) int }

func (m tileMatcher) matches(s string, fn func(start, end int)) {
	for p := 0; p < len(s); {
		e := m.next(s, p)
		fn(p, e)
		p = e
	}
}

// regexpMatcher runs a pattern through Go's regexp after translating it (see translateRegex).
type regexpMatcher struct{ re *regexp.Regexp }

func (m regexpMatcher) matches(s string, fn func(start, end int)) {
	for _, loc := range m.re.FindAllStringIndex(s, -1) {
		fn(loc[0], loc[1])
	}
}

// stringMatcher matches a literal string (HF's Split with {"String": ...}).
type stringMatcher struct{ lit string }

func (m stringMatcher) matches(s string, fn func(start, end int)) {
	if m.lit == "" {
		return
	}
	for p := 0; ; {
		i := strings.Index(s[p:], m.lit)
		if i < 0 {
			return
		}
		fn(p+i, p+i+len(m.lit))
		p += i + len(m.lit)
	}
}

// span is a piece of the input with whether it is a pattern match.
type span struct {
	start, end int
	match      bool
}

// splitByPattern cuts s by the matches of m and applies the behavior, following HF's
// NormalizedString::split: the text is first tiled into matches and the gaps between them,
// then the behavior decides what is kept and what is glued together.
func splitByPattern(s string, first bool, m matcher, beh splitBehavior, invert bool, emit emitFunc) {
	if s == "" {
		return
	}
	if tm, ok := m.(tileMatcher); ok && beh == behIsolated && !invert {
		// Hot path: the known patterns tile the text and Isolated keeps every match.
		for p := 0; p < len(s); {
			e := tm.next(s, p)
			emit(s[p:e], first && p == 0)
			p = e
		}
		return
	}
	var spans []span
	prev := 0
	m.matches(s, func(start, end int) {
		if start > prev {
			spans = append(spans, span{prev, start, false})
		}
		if end > start {
			spans = append(spans, span{start, end, true})
		}
		prev = end
	})
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	if invert {
		for i := range spans {
			spans[i].match = !spans[i].match
		}
	}
	var out []span // kept pieces; match here means "remove"
	switch beh {
	case behIsolated:
		for _, sp := range spans {
			out = append(out, span{sp.start, sp.end, false})
		}
	case behRemoved:
		out = spans
	case behContiguous:
		prevMatch := false
		for i, sp := range spans {
			if i > 0 && sp.match == prevMatch {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, span{sp.start, sp.end, false})
			}
			prevMatch = sp.match
		}
	case behMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, span{sp.start, sp.end, false})
			}
			prevMatch = sp.match
		}
	case behMergedWithNext:
		// HF folds from the end: a delimiter joins the piece after it unless that piece
		// is a delimiter too ("a--b" gives "a", "-", "-b").
		nextMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && !nextMatch && len(out) > 0 {
				out[len(out)-1].start = sp.start
			} else {
				out = append(out, span{sp.start, sp.end, false})
			}
			nextMatch = sp.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	for _, sp := range out {
		if !sp.match && sp.end > sp.start {
			emit(s[sp.start:sp.end], first && sp.start == 0)
		}
	}
}

// splitPre is HF's Split pre-tokenizer.
type splitPre struct {
	m      matcher
	beh    splitBehavior
	invert bool
}

func (p *splitPre) split(s string, first bool, emit emitFunc) {
	splitByPattern(s, first, p.m, p.beh, p.invert, emit)
}

// byteLevelPre is HF's ByteLevel pre-tokenizer. It only splits (with GPT-2's pattern when
// useRegex is set): mapping the bytes to the byte-level alphabet is left to the model,
// which then works on raw bytes and can cache words by their raw spelling. Load makes sure
// that ByteLevel is the last pre-tokenizer, so that nothing after it would see the mapping.
type byteLevelPre struct {
	addPrefixSpace bool
	useRegex       bool
}

func (p *byteLevelPre) split(s string, first bool, emit emitFunc) {
	if p.addPrefixSpace && s != "" && s[0] != ' ' {
		s = " " + s
	}
	if !p.useRegex {
		if s != "" {
			emit(s, first)
		}
		return
	}
	for q := 0; q < len(s); {
		e := matchGPT2(s, q)
		emit(s[q:e], first && q == 0)
		q = e
	}
}

// prependScheme is Metaspace's prepend_scheme.
type prependScheme int

const (
	prependAlways prependScheme = iota
	prependNever
	prependFirst
)

// metaspacePre is HF's Metaspace pre-tokenizer (the pre-2024 SentencePiece emulation):
// spaces become the replacement rune, one is prepended per the scheme, and with split the
// text is cut before each run of replacements (MergedWithNext).
type metaspacePre struct {
	repl    string
	replR   rune
	prepend prependScheme
	split_  bool
}

func (p *metaspacePre) split(s string, first bool, emit emitFunc) {
	if s == "" {
		return
	}
	s = strings.ReplaceAll(s, " ", p.repl)
	switch p.prepend {
	case prependAlways:
		if !strings.HasPrefix(s, p.repl) {
			s = p.repl + s
		}
	case prependFirst:
		if first && !strings.HasPrefix(s, p.repl) {
			s = p.repl + s
		}
	}
	if !p.split_ {
		emit(s, first)
		return
	}
	splitByPattern(s, first, stringMatcher{p.repl}, behMergedWithNext, false, emit)
}

// sequencePre applies pre-tokenizers in turn, each to every piece of the previous one.
type sequencePre struct{ steps []preTokenizer }

func (p *sequencePre) split(s string, first bool, emit emitFunc) {
	p.run(0, s, first, emit)
}

func (p *sequencePre) run(i int, s string, first bool, emit emitFunc) {
	if i == len(p.steps) {
		emit(s, first)
		return
	}
	p.steps[i].split(s, first, func(piece string, f bool) { p.run(i+1, piece, f, emit) })
}

// translateRegex rewrites an Oniguruma pattern from a tokenizer.json into Go regexp syntax
// where the two agree, and refuses what Go cannot do. Go's \s, \d and \w are ASCII-only
// while Oniguruma's are Unicode, so they are spelled out as Unicode classes; look-around,
// atomic groups, possessive quantifiers and backreferences have no RE2 equivalent and are an
// error (silently ignoring them would give wrong splits). Both engines choose among
// alternatives leftmost-first, so what is accepted matches the same text.
func translateRegex(pat string) (string, error) {
	for _, bad := range []string{"(?=", "(?!", "(?<=", "(?<!", "(?>"} {
		if strings.Contains(pat, bad) {
			return "", fmt.Errorf("regex %q uses look-around or atomic group %q, which only the built-in GPT-2, LLaMA-3 and Qwen2 patterns support", pat, bad)
		}
	}
	const (
		spaceSet = `\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`
		digitSet = `\p{Nd}`
		wordSet  = `\p{L}\p{M}\p{Nd}\p{Nl}\p{Pc}\x{200C}\x{200D}`
	)
	var b strings.Builder
	inClass := false
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		if c == '\\' && i+1 < len(pat) {
			n := pat[i+1]
			i++
			var set string
			neg := false
			switch n {
			case 's', 'S':
				set, neg = spaceSet, n == 'S'
			case 'd', 'D':
				set, neg = digitSet, n == 'D'
			case 'w', 'W':
				set, neg = wordSet, n == 'W'
			case '1', '2', '3', '4', '5', '6', '7', '8', '9', 'k', 'g':
				return "", fmt.Errorf("regex %q uses a backreference or subexpression call, unsupported", pat)
			case 'h', 'H', 'R', 'X', 'K', 'G':
				return "", fmt.Errorf("regex %q uses \\%c, an Oniguruma escape with no Go equivalent", pat, n)
			case 'p', 'P':
				// A Unicode class \p{..} is copied whole, so that its braces are not
				// taken for a quantifier.
				b.WriteByte('\\')
				b.WriteByte(n)
				if i+1 < len(pat) && pat[i+1] == '{' {
					j := strings.IndexByte(pat[i+1:], '}')
					if j < 0 {
						return "", fmt.Errorf("regex %q: unterminated \\%c{", pat, n)
					}
					b.WriteString(pat[i+1 : i+2+j])
					i += 1 + j
				}
				continue
			default:
				b.WriteByte('\\')
				b.WriteByte(n)
				continue
			}
			switch {
			case inClass && neg:
				return "", fmt.Errorf("regex %q uses \\%c inside a character class, unsupported", pat, n)
			case inClass:
				b.WriteString(set)
			case neg:
				b.WriteString("[^" + set + "]")
			default:
				b.WriteString("[" + set + "]")
			}
			continue
		}
		switch {
		case c == '[' && !inClass:
			inClass = true
			b.WriteByte(c)
			// A ']' or '^]' right after the opening bracket is a literal, not the end.
			if i+1 < len(pat) && pat[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(pat) && pat[i+1] == ']' {
				b.WriteString(`\]`)
				i++
			}
		case c == ']' && inClass:
			inClass = false
			b.WriteByte(c)
		case c == '[' && inClass:
			return "", fmt.Errorf("regex %q uses a nested character class, unsupported", pat)
		case !inClass && (c == '+' || c == '*' || c == '?' || c == '}') && i+1 < len(pat) && pat[i+1] == '+':
			return "", fmt.Errorf("regex %q uses a possessive quantifier, unsupported", pat)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// compileRegex returns a matcher for an Oniguruma pattern: a hand-written one for the known
// patterns, else Go's regexp on the translated pattern.
func compileRegex(pat string) (matcher, error) {
	if f, ok := knownPatterns[pat]; ok {
		return tileMatcher{f}, nil
	}
	goPat, err := translateRegex(pat)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(goPat)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %v", pat, err)
	}
	return regexpMatcher{re}, nil
}
