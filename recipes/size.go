package recipes

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// sizeUnits are the units ParseSize accepts. Both families exist because people write both
// ("2GiB" from `ls -h`, "5GB" from Hugging Face's max_shard_size); they are not the same.
var sizeUnits = []struct {
	name string
	n    int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3},
	{"B", 1},
}

// ParseSize reads a byte count: a plain integer, or a decimal number with a unit, B, KB, MB,
// GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), as in "2GiB", "1.5 GB"
// or "512MiB". The result must be a whole number of bytes.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	num, mult := t, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.name) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(t, u.name)), u.n
			break
		}
	}
	bad := fmt.Errorf(`%q is not a size (want a number of bytes or a number with a unit, such as "2GiB" or "500MB")`, s)
	if num == "" {
		return 0, bad
	}
	if mult == 1 && num == t {
		// No unit: YAML integers may be written in other bases (0x...), which strconv
		// understands with base 0.
		n, err := strconv.ParseInt(num, 0, 64)
		if err != nil {
			return 0, bad
		}
		return n, nil
	}
	if strings.ContainsAny(num, "eE_+/") {
		return 0, bad // big.Rat would read 1e3 and 1/2, which are not sizes
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok || r.Sign() < 0 {
		return 0, bad
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() || r.Num().Int64() > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return r.Num().Int64(), nil
}

// FormatSize writes n in the largest unit that represents it exactly, binary units first,
// so that Marshal round-trips and "2GiB" stays "2GiB".
func FormatSize(n int64) string {
	if n > 0 {
		for _, u := range sizeUnits {
			if u.n > 1 && u.name != "kB" && n%u.n == 0 {
				return strconv.FormatInt(n/u.n, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
