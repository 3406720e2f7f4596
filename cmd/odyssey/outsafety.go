package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/odyssey-llm/odyssey/artifact"
	"github.com/odyssey-llm/odyssey/formats/bundle"
)

// resolvePath returns path as an absolute, clean path with the symbolic links of its
// longest existing prefix evaluated, so that two spellings of one folder compare equal
// even when the folder (or its tail) does not exist yet.
func resolvePath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	rest := ""
	p := abs
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest), nil
		}
		parent := filepath.Dir(p)
		if parent == p {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// within reports whether path is dir or lies inside it (both resolved).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// protectedPath is a path an output must keep clear of.
type protectedPath struct {
	what   string // "the model folder", ...
	path   string
	inside bool // also refuse an output inside path (not only path itself or an ancestor)
}

// checkOutputClear refuses, before anything is touched, an output that is, contains or (for
// protected folders with inside set) lies inside one of the protected paths: replacing or
// cleaning it up would delete the input (or the working directory) with it. It is a usage
// error: the command line names the wrong folder.
func checkOutputClear(flag, out string, protected []protectedPath) error {
	o, err := resolvePath(out)
	if err != nil {
		return usageErrorf("%s %s: %v", flag, out, err)
	}
	resolved := make([]string, len(protected))
	for i, p := range protected {
		if p.path == "" {
			continue
		}
		if r, err := resolvePath(p.path); err == nil {
			resolved[i] = r
		}
		if o == resolved[i] {
			return usageErrorf("%s %s is %s (%s); choose another output folder", flag, out, p.what, p.path)
		}
	}
	for i, p := range protected {
		r := resolved[i]
		if r == "" {
			continue
		}
		switch {
		case within(r, o):
			return usageErrorf("%s %s contains %s (%s), which replacing or cleaning up the output would delete; choose another output folder", flag, out, p.what, p.path)
		case p.inside && within(o, r):
			return usageErrorf("%s %s is inside %s (%s); choose an output folder outside it", flag, out, p.what, p.path)
		}
	}
	return nil
}

// workingDir is the current directory as a protected path ("" when unknown).
func workingDir() protectedPath {
	wd, _ := os.Getwd()
	return protectedPath{what: "the working directory", path: wd}
}

// replaceableDir decides whether --force may replace the existing path dir: only an empty
// folder, or one that is recognisably an earlier output of this command (isOurs), is
// replaced; anything else is left for the user to remove (exit 4).
func replaceableDir(dir string, isOurs func(string) bool, kind string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return &exitError{code: exitExists, err: fmt.Errorf("%s exists and is not a folder; --force replaces only an earlier %s or an empty folder: remove it yourself or choose another output", dir, kind)}
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
		return nil
	}
	if isOurs(dir) {
		return nil
	}
	return &exitError{code: exitExists, err: fmt.Errorf("%s exists and is not an earlier %s (nor empty); --force replaces only those: remove it yourself or choose another output", dir, kind)}
}

// isOdysseyArtifact recognises a finished quantize output: odyssey.json beside a config.json
// whose quantization_config this tool writes.
func isOdysseyArtifact(dir string) bool {
	if st, err := os.Stat(filepath.Join(dir, artifact.ProvenanceFile)); err != nil || !st.Mode().IsRegular() {
		return false
	}
	return artifact.IsArtifact(dir)
}

// isSynthCheckpoint recognises a `testdata synth` output: its config.json carries
// odyssey_synthetic.
func isSynthCheckpoint(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil || len(b) > 1<<20 {
		return false
	}
	var cfg struct {
		Synthetic string `json:"odyssey_synthetic"`
	}
	return json.Unmarshal(b, &cfg) == nil && cfg.Synthetic != ""
}

// replaceableBundle decides whether `bundle --force` may replace the file out: only an
// earlier bundle (by its magic number) is replaced.
func replaceableBundle(out string) error {
	st, err := os.Lstat(out)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode().IsRegular() && bundle.IsBundle(out) {
		return nil
	}
	return &exitError{code: exitExists, err: fmt.Errorf("%s exists and is not a bundle; --force replaces only an earlier bundle: remove it yourself or choose another output", out)}
}
