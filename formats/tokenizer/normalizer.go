package tokenizer

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites a piece of raw text (the text between added tokens) before
// pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

// unicodeNorm is one of HF's NFC, NFD, NFKC, NFKD normalizers.
type unicodeNorm struct{ form norm.Form }

func (n unicodeNorm) normalize(s string) string {
	// The quick check makes already-normalized text (nearly all of it) cost one scan and
	// no allocation.
	if n.form.IsNormalString(s) {
		return s
	}
	return n.form.String(s)
}

// prependNorm is HF's Prepend: it adds a prefix to non-empty text.
type prependNorm struct{ prefix string }

func (n prependNorm) normalize(s string) string {
	if s == "" {
		return s
	}
	return n.prefix + s
}

// replaceNorm is HF's Replace with a literal pattern.
type replaceNorm struct{ old, new string }

func (n replaceNorm) normalize(s string) string {
	if n.old == "" {
		return s
	}
	return strings.ReplaceAll(s, n.old, n.new)
}

// replaceRegexNorm is HF's Replace with a regex pattern.
type replaceRegexNorm struct {
	m   matcher
	new string
}

func (n replaceRegexNorm) normalize(s string) string {
	var b strings.Builder
	prev := 0
	n.m.matches(s, func(start, end int) {
		b.WriteString(s[prev:start])
		b.WriteString(n.new)
		prev = end
	})
	if prev == 0 && b.Len() == 0 {
		return s
	}
	b.WriteString(s[prev:])
	return b.String()
}

// stripNorm is HF's Strip normalizer: it trims whitespace on either side.
type stripNorm struct{ left, right bool }

func (n stripNorm) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

// sequenceNorm applies normalizers in turn.
type sequenceNorm struct{ steps []normalizer }

func (n sequenceNorm) normalize(s string) string {
	for _, st := range n.steps {
		s = st.normalize(s)
	}
	return s
}
