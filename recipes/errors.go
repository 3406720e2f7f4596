package recipes

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a recipe, at a place in its file.
type Problem struct {
	File string `json:"file"`
	// Line and Column are 1-based; 0 when the problem has no single place (a required key
	// that is missing, a conflict between values that all came from the defaults).
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

// String formats the problem as compilers do, file:line:column: message, so that editors
// and CI annotators can jump to it.
func (p Problem) String() string {
	switch {
	case p.Line > 0 && p.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Message)
	case p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Message)
}

// Error is every problem found in a recipe, in file order. Parse, Validate and
// ValidateForModel return one, so that a user fixes a file in one round rather than one
// problem per run.
type Error struct {
	// Problems are the first MaxProblems problems, in file order.
	Problems []Problem
	// More counts the problems found beyond those.
	More int
}

// MaxProblems bounds the problems an Error reports: past the first few dozen, a file is not
// a recipe with typos but something else, and listing every line helps no one.
const MaxProblems = 20

// Total is the number of problems found, reported or not.
func (e *Error) Total() int { return len(e.Problems) + e.More }

// MoreLine is the line that ends a truncated list ("and 3 more problems"), "" when none was
// left out.
func (e *Error) MoreLine() string {
	switch e.More {
	case 0:
		return ""
	case 1:
		return "and 1 more problem"
	}
	return fmt.Sprintf("and %d more problems", e.More)
}

// Error prints one problem per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems), len(e.Problems)+1)
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	if m := e.MoreLine(); m != "" {
		lines = append(lines, m)
	}
	return strings.Join(lines, "\n")
}

type pos struct{ line, col int }

// source remembers where a file set each value, so that checks made after parsing (and
// ValidateForModel, much later) can still point at the line to change.
type source struct {
	file string
	dir  string // the file's folder, for relative calibration paths; "" when unknown
	base string // the base preset, "" for the defaults
	key  map[string]pos
	val  map[string]pos
}

func (s *source) explicit(path string) bool {
	if s == nil {
		return false
	}
	_, ok := s.val[path]
	return ok
}

// diag collects problems. bad marks values already reported as malformed, so that checks
// depending on them stay quiet instead of piling consequences onto one typo.
type diag struct {
	file  string
	src   *source
	probs []Problem
	bad   map[string]bool
}

func newDiag(file string, src *source) *diag {
	return &diag{file: file, src: src, bad: map[string]bool{}}
}

func (d *diag) addAt(p pos, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: p.line, Column: p.col, Message: fmt.Sprintf(format, args...)})
}

// at places a problem about the given keys at the value of the first one the file set,
// or nowhere when the file set none of them.
func (d *diag) at(paths []string, format string, args ...any) {
	var p pos
	if d.src != nil {
		for _, path := range paths {
			if v, ok := d.src.val[path]; ok {
				p = v
				break
			}
		}
	}
	d.addAt(p, format, args...)
}

// atKey is at for problems about a key's presence rather than its value.
func (d *diag) atKey(path string, format string, args ...any) {
	var p pos
	if d.src != nil {
		p = d.src.key[path]
	}
	d.addAt(p, format, args...)
}

func (d *diag) markBad(path string) { d.bad[path] = true }

// isBad reports whether any of paths, or a section containing one, was malformed.
func (d *diag) isBad(paths ...string) bool {
	for _, p := range paths {
		for {
			if d.bad[p] {
				return true
			}
			i := strings.LastIndexAny(p, ".[")
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	return false
}

// is describes a value for a message: "equalization.method is none", with where it came
// from when the file did not say it.
func (d *diag) is(path, value string) string {
	s := path + " is " + value
	switch {
	case d.src.explicit(path):
	case d.src != nil && d.src.base != "":
		s += " (from base " + d.src.base + ")"
	default:
		s += " (the default)"
	}
	return s
}

func (d *diag) err() error {
	if len(d.probs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.probs, func(a, b Problem) int {
		// Problems without a place go last, after those a reader can jump to.
		al, bl := a.Line, b.Line
		if al == 0 {
			al = 1 << 30
		}
		if bl == 0 {
			bl = 1 << 30
		}
		return cmp.Or(cmp.Compare(al, bl), cmp.Compare(a.Column, b.Column))
	})
	e := &Error{Problems: d.probs}
	if len(e.Problems) > MaxProblems {
		e.Problems, e.More = e.Problems[:MaxProblems:MaxProblems], len(e.Problems)-MaxProblems
	}
	return e
}

// closest returns the candidate nearest to s in edit distance (with transpositions, and
// '-' and '_' treated alike), or "" when none is close enough to be a plausible typo.
func closest(s string, candidates []string) string {
	norm := func(x string) string { return strings.ReplaceAll(strings.ToLower(x), "-", "_") }
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := editDistance(norm(s), norm(c)); d < bestD {
			best, bestD = c, d
		}
	}
	limit := max(1, min(3, len(s)/3))
	if bestD > limit {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions, deletions,
// substitutions and adjacent transpositions ("smaples" is one step from "samples").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// quoteList formats values for a message: "a", "b" or "c".
func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return orList(q)
}

func orList(xs []string) string {
	switch len(xs) {
	case 0:
		return ""
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}
