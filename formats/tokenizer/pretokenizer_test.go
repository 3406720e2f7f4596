package tokenizer

import (
	"reflect"
	"strings"
	"testing"
)

// splitWith runs a hand-written pattern matcher over s.
func splitWith(f func(string, int) int, s string) []string {
	var out []string
	tileMatcher{f}.matches(s, func(a, b int) { out = append(out, s[a:b]) })
	return out
}

// TestPatternMatchers checks the hand-written GPT-2, LLaMA-3 and Qwen2 matchers on cases
// chosen for the rules that are easy to get wrong: contractions (case-folded, including
// U+017F, for LLaMA-3/Qwen2 only), digit grouping, whitespace runs that give their last
// space to the next word (\s+(?!\S)), newline runs, the optional non-letter before a word
// (LLaMA-3's [^\r\n\p{L}\p{N}]?), combining marks (not letters), emoji and ZWJ sequences,
// CJK, Unicode spaces (U+3000) and numbers (Nl). The expectations were produced by a
// backtracking regex engine on the same patterns with \s spelled as Unicode White_Space.
func TestPatternMatchers(t *testing.T) {
	cases := []struct {
		in                  string
		gpt2, llama3, qwen2 []string
	}{
		{"I'm can't WE'LL they'RE it'ſ",
			[]string{"I", "'m", " can", "'t", " WE", "'", "LL", " they", "'", "RE", " it", "'", "ſ"},
			[]string{"I", "'m", " can", "'t", " WE", "'LL", " they", "'RE", " it", "'ſ"},
			[]string{"I", "'m", " can", "'t", " WE", "'LL", " they", "'RE", " it", "'ſ"},
		},
		{"1234567",
			[]string{"1234567"},
			[]string{"123", "456", "7"},
			[]string{"1", "2", "3", "4", "5", "6", "7"},
		},
		{"  hello",
			[]string{" ", " hello"},
			[]string{" ", " hello"},
			[]string{" ", " hello"},
		},
		{"hello   world",
			[]string{"hello", "  ", " world"},
			[]string{"hello", "  ", " world"},
			[]string{"hello", "  ", " world"},
		},
		{"a\n\nb",
			[]string{"a", "\n", "\n", "b"},
			[]string{"a", "\n\n", "b"},
			[]string{"a", "\n\n", "b"},
		},
		{"hello \n world",
			[]string{"hello", " \n", " world"},
			[]string{"hello", " \n", " world"},
			[]string{"hello", " \n", " world"},
		},
		{"!!!\n\nabc",
			[]string{"!!!", "\n", "\n", "abc"},
			[]string{"!!!\n\n", "abc"},
			[]string{"!!!\n\n", "abc"},
		},
		{"(hello",
			[]string{"(", "hello"},
			[]string{"(hello"},
			[]string{"(hello"},
		},
		{"\thello",
			[]string{"\t", "hello"},
			[]string{"\thello"},
			[]string{"\thello"},
		},
		{"我想在apple工作1314151天～",
			[]string{"我想在apple工作", "1314151", "天", "～"},
			[]string{"我想在apple工作", "131", "415", "1", "天", "～"},
			[]string{"我想在apple工作", "1", "3", "1", "4", "1", "5", "1", "天", "～"},
		},
		{"e\u0301té",
			[]string{"e", "\u0301", "té"},
			[]string{"e", "\u0301té"},
			[]string{"e", "\u0301té"},
		},
		{"🦙.cpp",
			[]string{"🦙.", "cpp"},
			[]string{"🦙.", "cpp"},
			[]string{"🦙.", "cpp"},
		},
		{"x  \n",
			[]string{"x", "  \n"},
			[]string{"x", "  \n"},
			[]string{"x", "  \n"},
		},
		{"end   ",
			[]string{"end", "   "},
			[]string{"end", "   "},
			[]string{"end", "   "},
		},
		{"a b",
			[]string{"a", " ", "b"},
			[]string{"a", " b"},
			[]string{"a", " b"},
		},
		{"ⅫⅫⅫⅫ",
			[]string{"ⅫⅫⅫⅫ"},
			[]string{"ⅫⅫⅫ", "Ⅻ"},
			[]string{"Ⅻ", "Ⅻ", "Ⅻ", "Ⅻ"},
		},
		{"\r\n\r\nx",
			[]string{"\r\n\r", "\n", "x"},
			[]string{"\r\n\r\n", "x"},
			[]string{"\r\n\r\n", "x"},
		},
		{"'s'S'",
			[]string{"'s", "'", "S", "'"},
			[]string{"'s", "'S", "'"},
			[]string{"'s", "'S", "'"},
		},
		{" 'll",
			[]string{" '", "ll"},
			[]string{" '", "ll"},
			[]string{" '", "ll"},
		},
		{"a , b",
			[]string{"a", " ,", " b"},
			[]string{"a", " ,", " b"},
			[]string{"a", " ,", " b"},
		},
		{"3.14159",
			[]string{"3", ".", "14159"},
			[]string{"3", ".", "141", "59"},
			[]string{"3", ".", "1", "4", "1", "5", "9"},
		},
		{"x\u3000\u3000y",
			[]string{"x", "\u3000", "\u3000", "y"},
			[]string{"x", "\u3000", "\u3000y"},
			[]string{"x", "\u3000", "\u3000y"},
		},
		{"😶\u200d🌫\ufe0f ok",
			[]string{"😶\u200d🌫\ufe0f", " ok"},
			[]string{"😶\u200d🌫\ufe0f", " ok"},
			[]string{"😶\u200d🌫\ufe0f", " ok"},
		},
	}
	for _, c := range cases {
		for _, m := range []struct {
			name string
			f    func(string, int) int
			want []string
		}{{"gpt2", matchGPT2, c.gpt2}, {"llama3", matchLlama3, c.llama3}, {"qwen2", matchQwen2, c.qwen2}} {
			if got := splitWith(m.f, c.in); !reflect.DeepEqual(got, m.want) {
				t.Errorf("%s(%q):\n got %q\nwant %q", m.name, c.in, got, m.want)
			}
		}
	}
}

// TestPatternMatchersTile checks that the matchers cover any input with non-empty pieces,
// on every position of a text mixing all classes (a matcher that returned p would loop).
func TestPatternMatchersTile(t *testing.T) {
	s := "Hi 'there' \u00a0\t\n\r\n  42 1234 ½ \u0301x 🦙🦙 中文 'S  \n\n x ,,, \u2028end \u3000 "
	for _, f := range []func(string, int) int{matchGPT2, matchLlama3, matchQwen2} {
		for start := 0; start < len(s); start++ {
			if !strings.HasPrefix(s[start:], string([]rune(s[start:])[0])) {
				continue
			}
			sub := s[start:]
			pieces := splitWith(f, sub)
			if strings.Join(pieces, "") != sub {
				t.Fatalf("pieces of %q do not tile it: %q", sub, pieces)
			}
			for _, p := range pieces {
				if p == "" {
					t.Fatalf("empty piece in %q", sub)
				}
			}
		}
	}
}

func TestTranslateRegex(t *testing.T) {
	ok := []struct{ in, want string }{
		{`\s+`, `[\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+`},
		{`[^\s\p{L}]`, `[^\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\p{L}]`},
		{`\d{1,3}`, `[\p{Nd}]{1,3}`},
		{`[]a]`, `[\]a]`},
		{`\p{N}+|\.`, `\p{N}+|\.`},
	}
	for _, c := range ok {
		got, err := translateRegex(c.in)
		if err != nil || got != c.want {
			t.Errorf("translateRegex(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{`\s+(?!\S)`, `(?=a)`, `(?<=a)b`, `(?>ab)`, `a++`, `(a)\1`, `[\S]`} {
		if _, err := translateRegex(bad); err == nil {
			t.Errorf("translateRegex(%q): no error", bad)
		}
	}
	// An unknown pattern without look-around runs through regexp with Unicode \s.
	m, err := compileRegex(`\s+|\w+|[^\s\w]+`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	s := "a\u00a0\u00a0b, c"
	m.matches(s, func(a, b int) { got = append(got, s[a:b]) })
	if want := []string{"a", "\u00a0\u00a0", "b", ",", " ", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("fallback regex: got %q, want %q", got, want)
	}
}

// TestSplitBehaviors follows HF's NormalizedString::split examples for each behavior.
func TestSplitBehaviors(t *testing.T) {
	m := stringMatcher{"-"}
	s := "the-final--countdown"
	cases := []struct {
		beh    splitBehavior
		invert bool
		want   []string
	}{
		{behRemoved, false, []string{"the", "final", "countdown"}},
		{behIsolated, false, []string{"the", "-", "final", "-", "-", "countdown"}},
		{behMergedWithPrevious, false, []string{"the-", "final-", "-", "countdown"}},
		{behMergedWithNext, false, []string{"the", "-final", "-", "-countdown"}},
		{behContiguous, false, []string{"the", "-", "final", "--", "countdown"}},
		{behRemoved, true, []string{"-", "-", "-"}},
	}
	for _, c := range cases {
		var got []string
		splitByPattern(s, true, m, c.beh, c.invert, func(p string, _ bool) { got = append(got, p) })
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("behavior %d invert %v: got %q, want %q", c.beh, c.invert, got, c.want)
		}
	}
}
