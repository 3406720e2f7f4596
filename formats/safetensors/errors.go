package safetensors

import (
	"errors"
	"strconv"
	"strings"
)

// FormatError reports a checkpoint that breaks the safetensors format or disagrees with its
// index. Every problem Open finds in a file's contents is a *FormatError, so callers can tell
// "this checkpoint is broken" (errors.As) from "the disk failed" (an I/O error, which Open
// returns wrapped as it came from the os package).
//
// The message is one line and names the file and, where the problem concerns one, the tensor:
//
//	safetensors: /m/model.safetensors: tensor "model.x.weight": data_offsets [10, 5]: begin is after end
type FormatError struct {
	// File is the path of the offending file: a .safetensors shard or an index.
	File string
	// Tensor is the tensor concerned, or "" when the problem is not about one tensor.
	Tensor string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying cause (a JSON syntax error, a missing shard's *fs.PathError), or nil.
	Err error
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("safetensors: ")
	b.WriteString(oneLine(e.File))
	if e.Tensor != "" {
		b.WriteString(": tensor ")
		b.WriteString(strconv.Quote(e.Tensor))
	}
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(e.Msg))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(oneLine(e.Err.Error()))
	}
	return b.String()
}

func (e *FormatError) Unwrap() error { return e.Err }

// ErrNotFound is wrapped by the errors of Checkpoint methods asked for a tensor the checkpoint
// does not hold.
var ErrNotFound = errors.New("no such tensor")

// ErrClosed is wrapped by the errors of Checkpoint methods called after Close.
var ErrClosed = errors.New("checkpoint is closed")

// usageError is an error about how a caller used a valid checkpoint or writer (wrong dtype,
// wrong destination length, unknown tensor). It shares FormatError's one-line layout but is a
// different type, so that errors.As(err, *FormatError) stays a test for broken files.
type usageError struct {
	file, tensor, msg string
	err               error
}

func (e *usageError) Error() string {
	return (&FormatError{File: e.file, Tensor: e.tensor, Msg: e.msg, Err: e.err}).Error()
}

func (e *usageError) Unwrap() error { return e.err }

// oneLine keeps error messages on one line whatever a hostile file put in its names: text
// with control characters is quoted Go-style, other text is left as it is.
func oneLine(s string) string {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0x2028 || r == 0x2029 {
			return strconv.Quote(s)
		}
	}
	return s
}
