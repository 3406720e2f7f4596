package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/odyssey-llm/odyssey/formats/bundle"
	"github.com/spf13/cobra"
)

type bundleOptions struct {
	dir    string
	out    string
	force  bool
	asJSON bool
}

func newBundleCmd(g *globalOptions) *cobra.Command {
	o := &bundleOptions{}
	cmd := &cobra.Command{
		Use:   "bundle DIR -o FILE.tar.zst",
		Short: "Pack a model or artifact folder into one verified file",
		Long: `Bundle packs a folder into one zstd-compressed tar file whose manifest holds the SHA-256
of every file. inspect and eval accept the bundle wherever they accept a folder; opening it
verifies every file, so a truncated or corrupted copy is an error, never a silently different model.
Opening one unpacks it into $TMPDIR: at most --max-bundle-size in all (default 64GiB), checked
against the manifest and the free space before anything is written. --force replaces only an
earlier bundle.`,
		Example: "  odyssey bundle /tmp/tiny-w4a8 -o tiny-w4a8.tar.zst\n  odyssey inspect tiny-w4a8.tar.zst",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			if o.out == "" {
				return usageErrorf("bundle needs -o FILE.tar.zst")
			}
			if st, err := os.Stat(o.dir); err != nil || !st.IsDir() {
				return badInput(fmt.Errorf("bundle: %s is not a folder", o.dir))
			}
			if err := checkOutputClear("-o", o.out, []protectedPath{{what: "the folder being bundled", path: o.dir, inside: true}, workingDir()}); err != nil {
				return err
			}
			if _, err := os.Lstat(o.out); err == nil {
				if !o.force {
					return &exitError{code: exitExists, err: fmt.Errorf("%s already exists (add --force to replace it)", o.out)}
				}
				if err := replaceableBundle(o.out); err != nil {
					return err
				}
			}
			if err := bundle.Write(o.dir, o.out); err != nil {
				return err
			}
			st, err := os.Stat(o.out)
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(g.out, map[string]any{"out": o.out, "bytes": st.Size()})
			}
			_, err = fmt.Fprintf(g.out, "wrote %s (%s)\n", o.out, humanBytes(st.Size()))
			return err
		},
	}
	cmd.Flags().StringVarP(&o.out, "output", "o", "", "bundle file to write (FILE.tar.zst)")
	cmd.Flags().BoolVar(&o.force, "force", false, "replace an existing bundle file (only an earlier bundle)")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print machine-readable JSON")
	return cmd
}

// openModelPath returns a folder for path: path itself, or for a bundle file a verified
// extraction into a temporary folder that cleanup removes.
// The extraction is bounded by --max-bundle-size and the free space of $TMPDIR, and is
// removed when interrupted.
func openModelPath(g *globalOptions, path string) (dir string, cleanup func(), err error) {
	if st, err := os.Stat(path); err == nil && !st.IsDir() && (bundle.IsBundle(path) || strings.HasSuffix(path, ".tar.zst")) {
		d, c, err := bundle.OpenWith(path, bundle.Options{MaxBytes: g.maxBundleBytes, Context: g.ctx})
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return "", nil, err
			}
			if errors.Is(err, bundle.ErrTooLarge) {
				err = fmt.Errorf("%w (raise it with --max-bundle-size if you trust %s)", err, path)
			}
			return "", nil, badInput(err)
		}
		unregister := onForcedExit(c)
		return d, func() { unregister(); c() }, nil
	}
	return path, func() {}, nil
}

// parseByteSize reads a size such as 68719476736, 64GiB, 512MiB or 1TiB (binary units; KB,
// MB, GB, TB and the bare K, M, G, T are read as binary too).
func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix []string
		shift  uint
	}{{[]string{"TiB", "TB", "T"}, 40}, {[]string{"GiB", "GB", "G"}, 30}, {[]string{"MiB", "MB", "M"}, 20}, {[]string{"KiB", "KB", "K"}, 10}, {[]string{"B"}, 0}} {
		done := false
		for _, suf := range u.suffix {
			if v, ok := strings.CutSuffix(t, suf); ok {
				t, mult, done = strings.TrimSpace(v), int64(1)<<u.shift, true
				break
			}
		}
		if done {
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a positive size (write e.g. 64GiB)", s)
	}
	return n * mult, nil
}
