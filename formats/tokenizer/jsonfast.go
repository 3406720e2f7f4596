package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// A minimal JSON scanner for the two large parts of tokenizer.json, the vocabulary and the
// merges (151k entries each for Qwen), and for walking the top-level objects without the
// three full validation passes that encoding/json would make over the whole document. The
// small components still go through encoding/json. Loading Qwen3's tokenizer drops from
// about half a second to well under that.
//
// The scanner validates what it reads: malformed input is an error, never a panic.

type jsonScanner struct {
	d   []byte
	i   int
	buf []byte // scratch for unescaped strings
}

func (s *jsonScanner) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at byte %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *jsonScanner) ws() {
	for s.i < len(s.d) {
		switch s.d[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.i >= len(s.d) {
		return 0
	}
	return s.d[s.i]
}

func (s *jsonScanner) expect(c byte) error {
	if s.peek() != c {
		return s.errorf("expected %q", c)
	}
	s.i++
	return nil
}

// str reads a string and returns its contents. The result aliases the input when the
// string has no escapes, else the scratch buffer: it is valid until the next call.
func (s *jsonScanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.errorf("expected a string")
	}
	s.i++
	start := s.i
	for s.i < len(s.d) {
		c := s.d[s.i]
		switch {
		case c == '"':
			v := s.d[start:s.i]
			if !utf8.Valid(v) {
				// Let encoding/json apply its replacement rules.
				return s.strSlow(start)
			}
			s.i++
			return v, nil
		case c == '\\':
			return s.strSlow(start)
		case c < 0x20:
			return nil, s.errorf("control character in string")
		}
		s.i++
	}
	return nil, s.errorf("unterminated string")
}

// strSlow handles a string with escapes by handing its exact span to encoding/json.
func (s *jsonScanner) strSlow(start int) ([]byte, error) {
	for s.i < len(s.d) {
		c := s.d[s.i]
		if c == '\\' {
			s.i += 2
			continue
		}
		if c == '"' {
			break
		}
		s.i++
	}
	if s.i >= len(s.d) {
		return nil, s.errorf("unterminated string")
	}
	s.i++
	var v string
	if err := json.Unmarshal(s.d[start-1:s.i], &v); err != nil {
		return nil, s.errorf("%v", err)
	}
	s.buf = append(s.buf[:0], v...)
	return s.buf, nil
}

// integer reads an integer that fits in int32 (token ids).
func (s *jsonScanner) integer() (int32, error) {
	s.ws()
	start := s.i
	if s.i < len(s.d) && s.d[s.i] == '-' {
		s.i++
	}
	for s.i < len(s.d) && s.d[s.i] >= '0' && s.d[s.i] <= '9' {
		s.i++
	}
	n, err := strconv.ParseInt(string(s.d[start:s.i]), 10, 32)
	if err != nil {
		return 0, s.errorf("expected an integer id")
	}
	return int32(n), nil
}

// skip passes over one value of any kind and returns its span.
func (s *jsonScanner) skip() ([]byte, error) {
	return s.skipDepth(0)
}

func (s *jsonScanner) skipDepth(depth int) ([]byte, error) {
	if depth > 1000 {
		return nil, s.errorf("nesting too deep")
	}
	c := s.peek()
	start := s.i
	switch {
	case c == '"':
		if _, err := s.str(); err != nil {
			return nil, err
		}
	case c == '{' || c == '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		s.i++
		if s.peek() == close {
			s.i++
			break
		}
		for {
			if c == '{' {
				if _, err := s.str(); err != nil {
					return nil, err
				}
				if err := s.expect(':'); err != nil {
					return nil, err
				}
			}
			if _, err := s.skipDepth(depth + 1); err != nil {
				return nil, err
			}
			switch s.peek() {
			case ',':
				s.i++
				continue
			case close:
				s.i++
			default:
				return nil, s.errorf("expected ',' or %q", close)
			}
			break
		}
	case c == '-' || c >= '0' && c <= '9':
		if !s.number() {
			return nil, s.errorf("bad number")
		}
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.d[s.i:], []byte(lit)) {
				s.i += len(lit)
				return s.d[start:s.i], nil
			}
		}
		return nil, s.errorf("bad literal")
	default:
		return nil, s.errorf("expected a value")
	}
	return s.d[start:s.i], nil
}

// number passes over a number, checking JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScanner) number() bool {
	d := s.d
	digits := func() int {
		n := 0
		for s.i < len(d) && d[s.i] >= '0' && d[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(d) && d[s.i] == '-' {
		s.i++
	}
	if s.i < len(d) && d[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return false
	}
	if s.i < len(d) && d[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return false
		}
	}
	if s.i < len(d) && (d[s.i] == 'e' || d[s.i] == 'E') {
		s.i++
		if s.i < len(d) && (d[s.i] == '+' || d[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

// objectFields splits a JSON object into its keys and raw values.
func objectFields(d []byte) (map[string]json.RawMessage, error) {
	s := &jsonScanner{d: d}
	if err := s.expect('{'); err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	if s.peek() == '}' {
		s.i++
		return out, s.end()
	}
	for {
		k, err := s.str()
		if err != nil {
			return nil, err
		}
		key := string(k)
		if err := s.expect(':'); err != nil {
			return nil, err
		}
		v, err := s.skip()
		if err != nil {
			return nil, err
		}
		out[key] = v
		switch s.peek() {
		case ',':
			s.i++
			continue
		case '}':
			s.i++
			return out, s.end()
		}
		return nil, s.errorf("expected ',' or '}'")
	}
}

func (s *jsonScanner) end() error {
	if s.peek() != 0 {
		return s.errorf("trailing data")
	}
	return nil
}

// parseVocabFast reads {"token": id, ...}.
func parseVocabFast(d []byte) (map[string]int32, error) {
	s := &jsonScanner{d: d}
	if err := s.expect('{'); err != nil {
		return nil, err
	}
	// Roughly one entry per 12 bytes in real files; sizing the map up front avoids
	// rehashing 150k entries several times.
	vocab := make(map[string]int32, len(d)/12)
	if s.peek() == '}' {
		s.i++
		return vocab, s.end()
	}
	for {
		k, err := s.str()
		if err != nil {
			return nil, err
		}
		if err := s.expect(':'); err != nil {
			return nil, err
		}
		id, err := s.integer()
		if err != nil {
			return nil, err
		}
		if id < 0 {
			return nil, fmt.Errorf("token %q has negative id %d", k, id)
		}
		vocab[string(k)] = id
		switch s.peek() {
		case ',':
			s.i++
			continue
		case '}':
			s.i++
			return vocab, s.end()
		}
		return nil, s.errorf("expected ',' or '}'")
	}
}

// parseMergesFast reads merges in either format, ["a b", ...] or [["a", "b"], ...], and
// calls fn for each with the two tokens (valid only during the call). Legacy lines
// starting with "#version" are skipped as in HF.
func parseMergesFast(d []byte, fn func(a, b []byte) error) error {
	s := &jsonScanner{d: d}
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return s.end()
	}
	var a []byte
	n := 0
	for {
		switch s.peek() {
		case '"':
			line, err := s.str()
			if err != nil {
				return err
			}
			if bytes.HasPrefix(line, []byte("#version")) {
				break
			}
			sp := bytes.IndexByte(line, ' ')
			if sp < 0 || bytes.IndexByte(line[sp+1:], ' ') >= 0 {
				return fmt.Errorf("merge %d %q is not two tokens separated by one space", n, line)
			}
			if err := fn(line[:sp], line[sp+1:]); err != nil {
				return err
			}
		case '[':
			s.i++
			x, err := s.str()
			if err != nil {
				return err
			}
			a = append(a[:0], x...) // x may live in the scratch buffer that the next str reuses
			if err := s.expect(','); err != nil {
				return err
			}
			b, err := s.str()
			if err != nil {
				return err
			}
			if err := s.expect(']'); err != nil {
				return errors.New("a merge pair must have exactly two tokens")
			}
			if err := fn(a, b); err != nil {
				return err
			}
		default:
			return s.errorf("expected a merge")
		}
		n++
		switch s.peek() {
		case ',':
			s.i++
			continue
		case ']':
			s.i++
			return s.end()
		}
		return s.errorf("expected ',' or ']'")
	}
}
