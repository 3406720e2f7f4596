package artifact

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"

	"github.com/odyssey-llm/odyssey/formats/safetensors"
)

// Layer checkpoints are written without fsync: flushing each one to the disk would bound a
// quantization run by the disk's write speed twice over (once for the checkpoints, once for
// the artifact assembled from them), and a checkpoint is deleted seconds later, usually
// before the kernel has written it back at all. What fsync would guarantee, that a file
// which survived a crash holds what was written, a checksum checks instead: every
// checkpoint carries the CRC-32C of its tensor data, verified before it is resumed from or
// copied into the artifact, and a damaged one is dropped and recomputed.

// checksumKey is the metadata key of a layer checkpoint holding the CRC-32C (Castagnoli) of
// its tensors' bytes, in name order, as a decimal number.
const checksumKey = "odyssey.crc32c"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrDamagedCheckpoint is wrapped by the error for a layer checkpoint whose data does not
// match its checksum (or that has none).
var ErrDamagedCheckpoint = errors.New("layer checkpoint is damaged")

// tensorsChecksum returns the CRC-32C of the tensors' data in name order.
func tensorsChecksum(ts []safetensors.Tensor) uint32 {
	sorted := slices.Clone(ts)
	slices.SortFunc(sorted, func(a, b safetensors.Tensor) int { return cmp.Compare(a.Name, b.Name) })
	var c uint32
	for _, t := range sorted {
		c = crc32.Update(c, castagnoli, t.Data)
	}
	return c
}

// verifyChecksum checks an opened layer checkpoint against its recorded checksum.
func verifyChecksum(ck *safetensors.Checkpoint, path string) error {
	s, ok := ck.Metadata()[checksumKey]
	if !ok {
		return fmt.Errorf("artifact: %s: %w: no %s metadata", path, ErrDamagedCheckpoint, checksumKey)
	}
	want, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("artifact: %s: %w: %s %q", path, ErrDamagedCheckpoint, checksumKey, s)
	}
	var c uint32
	for _, t := range ck.Tensors() { // sorted by name
		b, err := ck.Bytes(t.Name)
		if err != nil {
			return fmt.Errorf("artifact: %s: %w: %v", path, ErrDamagedCheckpoint, err)
		}
		c = crc32.Update(c, castagnoli, b)
	}
	if c != uint32(want) {
		return fmt.Errorf("artifact: %s: %w: CRC-32C %08x, recorded %08x", path, ErrDamagedCheckpoint, c, want)
	}
	return nil
}

// openVerified opens layer checkpoint path and verifies its checksum.
func openVerified(path string) (*safetensors.Checkpoint, error) {
	ck, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("artifact: %w: %w", ErrDamagedCheckpoint, err)
	}
	if err := verifyChecksum(ck, path); err != nil {
		ck.Close()
		return nil, err
	}
	return ck, nil
}
