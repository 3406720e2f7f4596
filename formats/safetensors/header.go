package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header accepted, in bytes. It is the limit of the
// reference implementation (Hugging Face safetensors: 100,000,000 bytes): a larger length
// prefix is far more likely a corrupt or hostile file than a real checkpoint, and honouring it
// would let eight bytes make the reader allocate gigabytes. Index files are held to the same
// bound.
const MaxHeaderSize = 100_000_000

// metadataKey is the header key holding free-form string metadata instead of a tensor.
const metadataKey = "__metadata__"

// header is a parsed, validated safetensors header.
type header struct {
	tensors  []TensorInfo // in data order (sorted by offsets); File is set
	metadata map[string]string
}

// parseHeader parses and validates the JSON header of file, whose data section (what follows
// the header) is dataLen bytes long. It enforces everything the reference implementation does
// (UTF-8, JSON, known dtypes, shape × dtype size = byte length without overflow, tensors
// tiling the data section exactly) and more: duplicate keys, which encoding/json and serde
// both resolve silently by keeping the last one, are errors here, because two different
// tensors claiming one name means the file is not what its writer meant.
func parseHeader(file string, buf []byte, dataLen int64) (*header, error) {
	ferr := func(tensor, format string, args ...any) error {
		return &FormatError{File: file, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
	}
	if !utf8.Valid(buf) {
		return nil, ferr("", "header is not valid UTF-8")
	}
	h := &header{}
	d := newJSONWalker(file, buf)
	err := d.object("header", func(key string) error {
		if key == metadataKey {
			m, err := d.stringMap(metadataKey)
			h.metadata = m
			return err
		}
		t, err := d.tensorEntry(key)
		if err != nil {
			return err
		}
		h.tensors = append(h.tensors, t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := d.end("header"); err != nil {
		return nil, err
	}

	for i := range h.tensors {
		t := &h.tensors[i]
		if !t.DType.Valid() {
			return nil, ferr(t.Name, "unknown dtype %q", string(t.DType))
		}
		if t.Begin > t.End {
			return nil, ferr(t.Name, "data_offsets [%d, %d]: begin is after end", t.Begin, t.End)
		}
		if t.End > dataLen {
			return nil, ferr(t.Name, "data_offsets [%d, %d] run past the end of the %d-byte data section (truncated file?)", t.Begin, t.End, dataLen)
		}
		n, ok := byteSize(t.DType, t.Shape)
		if !ok {
			return nil, ferr(t.Name, "shape %v of %s overflows 63 bits of bytes", t.Shape, t.DType)
		}
		if n != t.End-t.Begin {
			return nil, ferr(t.Name, "data_offsets [%d, %d] hold %d bytes but shape %v of %s needs %d", t.Begin, t.End, t.End-t.Begin, t.Shape, t.DType, n)
		}
	}

	// The tensors must tile the data section: sorted by offsets, each begins where the
	// previous one ended, the first at 0 and the last ending at the end of the file. Gaps
	// could hide data; overlaps would make two tensors alias; trailing bytes mean a
	// truncated header or an appended payload. The reference implementation rejects all
	// three (InvalidOffset, MetadataIncompleteBuffer), and so do we.
	slices.SortStableFunc(h.tensors, func(a, b TensorInfo) int {
		if a.Begin != b.Begin {
			return cmpInt64(a.Begin, b.Begin)
		}
		if a.End != b.End {
			return cmpInt64(a.End, b.End)
		}
		return strings.Compare(a.Name, b.Name)
	})
	var pos int64
	for i, t := range h.tensors {
		switch {
		case t.Begin > pos && i == 0:
			return nil, ferr(t.Name, "data_offsets [%d, %d]: the first tensor must begin at 0 (%d unused bytes)", t.Begin, t.End, t.Begin)
		case t.Begin > pos:
			return nil, ferr(t.Name, "data_offsets [%d, %d]: gap of %d bytes after tensor %q, which ends at %d", t.Begin, t.End, t.Begin-pos, h.tensors[i-1].Name, pos)
		case t.Begin < pos:
			return nil, ferr(t.Name, "data_offsets [%d, %d] overlap tensor %q, which ends at %d", t.Begin, t.End, h.tensors[i-1].Name, pos)
		}
		pos = t.End
	}
	if pos != dataLen {
		if len(h.tensors) == 0 {
			return nil, ferr("", "header declares no tensors but %d bytes of data follow it", dataLen)
		}
		return nil, ferr("", "tensors cover %d bytes of the %d-byte data section: %d trailing bytes (last tensor %q)", pos, dataLen, dataLen-pos, h.tensors[len(h.tensors)-1].Name)
	}
	return h, nil
}

// byteSize returns the byte length of a tensor of dtype d and shape, and false when the
// product overflows int64 or a dimension is negative.
func byteSize(d DType, shape []int64) (int64, bool) {
	n := int64(d.Size())
	if n == 0 {
		return 0, false
	}
	// A zero dimension makes the tensor empty however large the others are, but the product
	// of the others must still not overflow for the header to make sense; check in order.
	var zero bool
	for _, s := range shape {
		if s < 0 {
			return 0, false
		}
		if s == 0 {
			zero = true
			continue
		}
		if n > math.MaxInt64/s {
			return 0, false
		}
		n *= s
	}
	if zero {
		return 0, true
	}
	return n, true
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// jsonWalker reads a JSON document token by token. encoding/json's Unmarshal would be
// shorter but silently keeps the last of duplicate keys and accepts 1.0 for an integer; the
// walker sees every key and every number as written.
type jsonWalker struct {
	file string
	dec  *json.Decoder
}

func newJSONWalker(file string, buf []byte) *jsonWalker {
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.UseNumber()
	return &jsonWalker{file: file, dec: dec}
}

func (w *jsonWalker) fail(tensor, format string, args ...any) error {
	return &FormatError{File: w.file, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}

// token returns the next token; what names the value being read, for the error message.
func (w *jsonWalker) token(tensor, what string) (json.Token, error) {
	tok, err := w.dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		msg := "invalid JSON in " + what
		var se *json.SyntaxError
		if errors.As(err, &se) {
			msg += fmt.Sprintf(" (byte %d of the JSON)", se.Offset)
		}
		return nil, &FormatError{File: w.file, Tensor: tensor, Msg: msg, Err: err}
	}
	return tok, nil
}

// object reads a JSON object, calling fn for each key with the decoder positioned on its
// value; fn must consume the value. Duplicate keys are errors.
func (w *jsonWalker) object(what string, fn func(key string) error) error {
	return w.objectIn("", what, fn)
}

func (w *jsonWalker) objectIn(tensor, what string, fn func(key string) error) error {
	tok, err := w.token(tensor, what)
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return w.fail(tensor, "%s is %s, want a JSON object", what, describe(tok))
	}
	return w.objectBody(tensor, what, fn)
}

// objectBody reads the members of an object whose '{' has been consumed, and its '}'.
func (w *jsonWalker) objectBody(tensor, what string, fn func(key string) error) error {
	seen := make(map[string]struct{})
	for w.dec.More() {
		tok, err := w.token(tensor, what)
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok { // unreachable: the decoder only returns strings in key position
			return w.fail(tensor, "%s has a non-string key", what)
		}
		if _, dup := seen[key]; dup {
			if tensor == "" && what == "header" {
				return w.fail(key, "duplicate key in header (two entries share this name)")
			}
			return w.fail(tensor, "duplicate key %q in %s", key, what)
		}
		seen[key] = struct{}{}
		if err := fn(key); err != nil {
			return err
		}
	}
	_, err := w.token(tensor, what) // the closing '}', checked by the decoder
	return err
}

// end checks that nothing but white space follows the top-level value.
func (w *jsonWalker) end(what string) error {
	tok, err := w.dec.Token()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return &FormatError{File: w.file, Msg: "invalid JSON after the " + what + " object", Err: err}
	}
	return w.fail("", "unexpected %s after the %s object", describe(tok), what)
}

// stringMap reads an object of string values, or null (which the reference implementation
// also accepts for __metadata__, as "no metadata").
func (w *jsonWalker) stringMap(what string) (map[string]string, error) {
	tok, err := w.token("", what)
	if err != nil || tok == nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, w.fail("", "%s is %s, want a JSON object of strings", what, describe(tok))
	}
	m := make(map[string]string)
	err = w.objectBody("", what, func(key string) error {
		tok, err := w.token("", what)
		if err != nil {
			return err
		}
		s, ok := tok.(string)
		if !ok {
			return w.fail("", "%s value for key %q is %s, want a string", what, key, describe(tok))
		}
		m[key] = s
		return nil
	})
	return m, err
}

// tensorEntry reads {"dtype": ..., "shape": [...], "data_offsets": [b, e]}. Other keys are
// skipped, as the reference implementation does, so that files from newer writers that add
// fields stay readable.
func (w *jsonWalker) tensorEntry(name string) (TensorInfo, error) {
	t := TensorInfo{Name: name, File: w.file}
	var haveDType, haveShape, haveOffsets bool
	err := w.objectIn(name, "tensor entry", func(key string) error {
		switch key {
		case "dtype":
			tok, err := w.token(name, "dtype")
			if err != nil {
				return err
			}
			s, ok := tok.(string)
			if !ok {
				return w.fail(name, "dtype is %s, want a string", describe(tok))
			}
			t.DType, haveDType = DType(s), true
		case "shape":
			shape, err := w.intArray(name, "shape", -1)
			if err != nil {
				return err
			}
			t.Shape, haveShape = shape, true
		case "data_offsets":
			offs, err := w.intArray(name, "data_offsets", 2)
			if err != nil {
				return err
			}
			t.Begin, t.End, haveOffsets = offs[0], offs[1], true
		default:
			return w.skip(name, key)
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	switch {
	case !haveDType:
		return t, w.fail(name, "entry has no \"dtype\"")
	case !haveShape:
		return t, w.fail(name, "entry has no \"shape\"")
	case !haveOffsets:
		return t, w.fail(name, "entry has no \"data_offsets\"")
	}
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	return t, nil
}

// intArray reads an array of non-negative integers; want is the required length, or -1.
func (w *jsonWalker) intArray(tensor, what string, want int) ([]int64, error) {
	tok, err := w.token(tensor, what)
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('[') {
		return nil, w.fail(tensor, "%s is %s, want an array of integers", what, describe(tok))
	}
	var out []int64
	for w.dec.More() {
		tok, err := w.token(tensor, what)
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, w.fail(tensor, "%s holds %s, want integers", what, describe(tok))
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		switch {
		case err == nil && v < 0 && what == "shape":
			return nil, w.fail(tensor, "shape has negative dimension %d", v)
		case err == nil && v < 0:
			return nil, w.fail(tensor, "%s holds negative value %d", what, v)
		case errors.Is(err, strconv.ErrRange):
			return nil, w.fail(tensor, "%s value %s is out of range", what, num)
		case err != nil:
			return nil, w.fail(tensor, "%s value %s is not an integer", what, num)
		}
		out = append(out, v)
	}
	if _, err := w.token(tensor, what); err != nil {
		return nil, err
	}
	if want >= 0 && len(out) != want {
		return nil, w.fail(tensor, "%s has %d values, want %d", what, len(out), want)
	}
	return out, nil
}

// maxSkipDepth bounds the nesting of values skipped as unknown fields. json.Decoder.Token
// keeps a stack entry per open bracket without limit, so a header of 100 MB of '[' would
// otherwise cost 800 MB of stack; real headers nest two or three levels.
const maxSkipDepth = 64

// skip consumes one value of any shape.
func (w *jsonWalker) skip(tensor, key string) error {
	depth := 0
	for {
		tok, err := w.token(tensor, "field "+strconv.Quote(key))
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			if depth > maxSkipDepth {
				return w.fail(tensor, "field %q nests deeper than %d levels", key, maxSkipDepth)
			}
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// describe names a token's JSON type for error messages.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return "a stray " + strconv.Quote(string(v))
	case string:
		return "a string"
	case json.Number:
		return "the number " + string(v)
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}
