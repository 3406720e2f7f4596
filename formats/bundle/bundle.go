// Package bundle packs a model or artifact folder into one file, FILE.tar.zst, for
// distribution: a tar archive compressed with zstd whose first entry is a manifest holding the
// size and SHA-256 of every other file. Opening a bundle extracts it and verifies every file
// against the manifest, so a truncated download or a flipped bit is an error naming the file,
// never a model that silently computes something else.
//
// Bundles are read as hostile input: entry names must be plain relative paths inside the
// bundle (no "..", no absolute paths, no links or devices), each file must appear exactly once
// and be listed in the manifest, sizes are bounded by the manifest's, and the manifest itself
// is bounded in size. The total a bundle may unpack to is bounded too (Options.MaxBytes, 64 GiB
// by default), and checked against the free space before anything is written, so a small file
// whose manifest declares terabytes (a decompression bomb) is refused up front; the bytes
// written never exceed what the manifest declares.
package bundle

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ManifestName is the first entry of every bundle.
const ManifestName = "odyssey-bundle.json"

// maxManifestSize bounds the manifest read before anything is verified.
const maxManifestSize = 16 << 20

// Manifest lists a bundle's files.
type Manifest struct {
	Format int            `json:"format"` // 1
	Files  []ManifestFile `json:"files"`
}

// ManifestFile is one file's expected size and SHA-256 (hex).
type ManifestFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Write bundles the regular files of folder dir (recursively) into out, atomically (a
// temporary file renamed when complete). Entries are sorted and carry fixed timestamps and
// owners, so the same folder gives the same bytes.
func Write(dir, out string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("bundle: %s is not a regular file (links and devices are not bundled)", p)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if len(files) == 0 {
		return fmt.Errorf("bundle: %s holds no files", dir)
	}
	sort.Strings(files)
	man := Manifest{Format: 1}
	for _, f := range files {
		sum, size, err := hashFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return err
		}
		man.Files = append(man.Files, ManifestFile{Path: f, Size: size, SHA256: sum})
	}
	manBytes, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return err
	}

	tmp, err := createPartial(out)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	zw, err := zstd.NewWriter(tmp, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	epoch := time.Unix(0, 0).UTC()
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(ManifestName, int64(len(manBytes)))); err != nil {
		return err
	}
	if _, err := tw.Write(manBytes); err != nil {
		return err
	}
	for _, mf := range man.Files {
		if err := tw.WriteHeader(hdr(mf.Path, mf.Size)); err != nil {
			return err
		}
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(mf.Path)))
		if err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		n, err := io.Copy(tw, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("bundle: %s: %w", mf.Path, err)
		}
		if n != mf.Size {
			return fmt.Errorf("bundle: %s changed size while being bundled", mf.Path)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	ok = true
	return nil
}

// createPartial creates the temporary file a bundle is written to, beside out. Unlike
// os.CreateTemp (always 0600), it is created 0666 less the umask, as os.Create would create
// out, so the published bundle has the permissions the user expects.
func createPartial(out string) (*os.File, error) {
	for range 100 {
		var b [6]byte
		rand.Read(b[:])
		name := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".partial-"+hex.EncodeToString(b[:]))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("cannot create a temporary file beside %s", out)
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("bundle: %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// IsBundle reports whether path names a bundle file (by its zstd magic number), so commands
// can accept a bundle wherever they accept a folder.
func IsBundle(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return false
	}
	return magic == [4]byte{0x28, 0xB5, 0x2F, 0xFD}
}

// Extract unpacks bundle file src into folder dst (which must not exist or be empty),
// verifying every file's size and SHA-256 against the manifest. On any error, what was
// extracted is removed.
func Extract(src, dst string) (*Manifest, error) { return ExtractWith(src, dst, Options{}) }

// DefaultMaxBytes is the default bound on what a bundle may unpack to: 64 GiB, a 30B-parameter
// fp16 checkpoint. Larger models need Options.MaxBytes raised.
const DefaultMaxBytes = 64 << 30

// ErrTooLarge is returned for a bundle whose manifest declares more than Options.MaxBytes.
var ErrTooLarge = errors.New("the bundle unpacks to more than the limit")

// ErrNoSpace is returned for a bundle whose manifest declares more than the free space.
var ErrNoSpace = errors.New("not enough free space to unpack the bundle")

// Options bound an extraction.
type Options struct {
	// MaxBytes bounds the total of the files' sizes the manifest declares; 0 means
	// DefaultMaxBytes.
	MaxBytes int64
	// Context, when set, stops the extraction when done (Ctrl-C); what was extracted is
	// removed.
	Context context.Context
}

// ExtractWith is Extract with limits.
func ExtractWith(src, dst string, o Options) (*Manifest, error) {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	man, err := extract(f, dst, o)
	if err != nil {
		os.RemoveAll(dst)
		if cerr := o.Context.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("bundle: %s: %w", src, err)
	}
	return man, nil
}

// freeBytesFn is freeBytes, replaced by tests.
var freeBytesFn = freeBytes

// ctxReader fails reads once ctx is done, so a long extraction stops promptly.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func extract(r io.Reader, dst string, o Options) (*Manifest, error) {
	zr, err := zstd.NewReader(ctxReader{o.Context, r}, zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("not a bundle: %v", err)
	}
	if hdr.Name != ManifestName || hdr.Typeflag != tar.TypeReg || hdr.Size > maxManifestSize || hdr.Size < 0 {
		return nil, fmt.Errorf("not a bundle: first entry is %q, want the manifest %s", hdr.Name, ManifestName)
	}
	manBytes, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var man Manifest
	dec := json.NewDecoder(strings.NewReader(string(manBytes)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&man); err != nil {
		return nil, fmt.Errorf("manifest: %v", err)
	}
	if man.Format != 1 {
		return nil, fmt.Errorf("manifest: format %d is not supported (this odyssey reads format 1)", man.Format)
	}
	want := map[string]ManifestFile{}
	for _, mf := range man.Files {
		if err := checkName(mf.Path); err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		if _, dup := want[mf.Path]; dup {
			return nil, fmt.Errorf("manifest: %q listed twice", mf.Path)
		}
		if mf.Size < 0 || len(mf.SHA256) != 64 {
			return nil, fmt.Errorf("manifest: %q has a bad size or sha256", mf.Path)
		}
		want[mf.Path] = mf
	}
	// The declared total is what will be written (each file is written up to its declared
	// size and no further): bound it, and check it fits, before writing anything.
	var total int64
	for _, mf := range man.Files {
		if mf.Size > o.MaxBytes-total {
			return nil, fmt.Errorf("%w: its manifest declares more than %d bytes (%d files); the limit can be raised", ErrTooLarge, o.MaxBytes, len(man.Files))
		}
		total += mf.Size
	}
	if free, ok := freeBytesFn(dst); ok && total > free {
		return nil, fmt.Errorf("%w: it unpacks to %d bytes, and %s has %d bytes free", ErrNoSpace, total, dst, free)
	}
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading archive: %w (truncated file?)", err)
		}
		if err := checkName(hdr.Name); err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%q is not a regular file", hdr.Name)
		}
		mf, ok := want[hdr.Name]
		if !ok {
			return nil, fmt.Errorf("%q is not in the manifest", hdr.Name)
		}
		if seen[hdr.Name] {
			return nil, fmt.Errorf("%q appears twice", hdr.Name)
		}
		seen[hdr.Name] = true
		if hdr.Size != mf.Size {
			return nil, fmt.Errorf("%q: %d bytes, the manifest says %d", hdr.Name, hdr.Size, mf.Size)
		}
		if err := writeVerified(filepath.Join(dst, filepath.FromSlash(hdr.Name)), ctxReader{o.Context, io.LimitReader(tr, mf.Size)}, mf); err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, o.Context.Err()
			}
			return nil, err
		}
	}
	for _, mf := range man.Files {
		if !seen[mf.Path] {
			return nil, fmt.Errorf("%q is in the manifest but not in the archive (truncated file?)", mf.Path)
		}
	}
	return &man, nil
}

func writeVerified(p string, r io.Reader, mf ManifestFile) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%q: %w (truncated file?)", mf.Path, err)
	}
	if n != mf.Size {
		return fmt.Errorf("%q: %d bytes, the manifest says %d (truncated file?)", mf.Path, n, mf.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != mf.SHA256 {
		return fmt.Errorf("%q: sha256 %s does not match the manifest's %s (corrupted file)", mf.Path, got, mf.SHA256)
	}
	return nil
}

// checkName accepts only plain relative slash paths that stay inside the bundle.
func checkName(name string) error {
	if name == "" || name == ManifestName || strings.HasPrefix(name, "/") || strings.Contains(name, `\`) ||
		path.Clean(name) != name || name == "." || name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("entry name %q is not a plain relative path", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return fmt.Errorf("entry name %q leaves the bundle", name)
		}
	}
	return nil
}

// Open extracts a bundle into a new temporary folder and returns it with a cleanup function,
// for commands that take a model folder.
func Open(src string) (dir string, cleanup func(), err error) { return OpenWith(src, Options{}) }

// OpenWith is Open with limits. The temporary folder is under os.TempDir ($TMPDIR).
func OpenWith(src string, o Options) (dir string, cleanup func(), err error) {
	tmp, err := os.MkdirTemp("", "odyssey-bundle-")
	if err != nil {
		return "", nil, err
	}
	if _, err := ExtractWith(src, tmp, o); err != nil {
		os.RemoveAll(tmp)
		return "", nil, err
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// ErrNotBundle is returned by callers that expected a bundle file.
var ErrNotBundle = errors.New("bundle: not a bundle file")
