package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// stagedDir is an output folder built under a temporary name beside its destination and
// renamed into place only when complete, so an interrupted or failed run never leaves a
// half-written artifact where a user (or a CI job) would take it for a finished one.
type stagedDir struct {
	final string
	tmp   string
	force bool
	// replaceable, when set, decides whether force may replace an existing destination
	// (replaceableDir); nil allows it.
	replaceable func(string) error
}

// stageOutput refuses an existing destination unless force (and, with force, one that
// replaceable refuses), and creates the temporary folder in the destination's parent (same
// file system, so the final rename is atomic).
func stageOutput(final string, force bool, replaceable func(string) error) (*stagedDir, error) {
	final = filepath.Clean(final)
	if _, err := os.Lstat(final); err == nil {
		if !force {
			return nil, &exitError{code: exitExists, err: fmt.Errorf("%s already exists (add --force to replace it)", final)}
		}
		if replaceable != nil {
			if err := replaceable(final); err != nil {
				return nil, err
			}
		}
	}
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o777); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(final)+".partial-")
	if err != nil {
		return nil, err
	}
	// MkdirTemp creates the folder private (0700); an artifact is meant to be shared.
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &stagedDir{final: final, tmp: tmp, force: force, replaceable: replaceable}, nil
}

// Commit publishes the folder, replacing an existing destination only when forced.
func (s *stagedDir) Commit() error {
	if s.force {
		if _, err := os.Lstat(s.final); err == nil {
			if s.replaceable != nil {
				if err := s.replaceable(s.final); err != nil {
					return err
				}
			}
			old := s.tmp + ".old"
			if err := os.Rename(s.final, old); err != nil {
				return err
			}
			defer os.RemoveAll(old)
		}
	}
	if err := os.Rename(s.tmp, s.final); err != nil {
		return fmt.Errorf("publishing %s: %w", s.final, err)
	}
	return nil
}

// Abort removes the temporary folder; safe after Commit.
func (s *stagedDir) Abort() {
	if s != nil {
		os.RemoveAll(s.tmp)
	}
}

func parentDir(p string) string { return filepath.Dir(filepath.Clean(p)) }
