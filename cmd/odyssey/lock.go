package main

import (
	"errors"

	"github.com/odyssey-llm/odyssey/quantizejob"
)

// lockOutput is quantizejob.LockOutput, with a busy output refused with exit code 4.
func lockOutput(out string) (unlock func(), err error) {
	unlock, err = quantizejob.LockOutput(out)
	var busy *quantizejob.BusyError
	if errors.As(err, &busy) {
		return nil, &exitError{code: exitExists, err: busy.Err}
	}
	return unlock, err
}

const lockOutputIsNoop = quantizejob.LockIsNoop
