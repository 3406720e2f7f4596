package main

import (
	"context"
	"errors"
	"fmt"
)

// Exit codes. Scripts and CI pipelines branch on these, so they are part of the interface and
// documented in the README; never renumber them.
const (
	exitOK          = 0
	exitFailure     = 1   // an unexpected failure (I/O error, bug)
	exitUsage       = 2   // bad flags or arguments
	exitBadInput    = 3   // a model, data, tokenizer or recipe file that is invalid or unsupported
	exitExists      = 4   // the output exists and --force was not given (or may not replace it), or another run holds it
	exitInterrupted = 130 // interrupted (Ctrl-C); nothing half-written is left behind
	exitTerminated  = 143 // stopped by SIGTERM, handled as an interruption (128 + 15)
)

// exitError carries the exit code chosen where the error was understood.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// badInput marks err as caused by the user's input files.
func badInput(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: exitBadInput, err: err}
}

func exitCodeOf(err error) int {
	if err == nil {
		return exitOK
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	if errors.Is(err, context.Canceled) {
		return exitInterrupted
	}
	return exitFailure
}
