package recipes

import (
	"fmt"
	"testing"
)

func TestScratch(t *testing.T) {
	for _, n := range Presets() {
		r, err := Preset(n)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := r.Marshal()
		fmt.Printf("=== %s %s\n%s", n, r.Hash(), b)
	}
	for _, s := range []string{
		"version: 1\ncalibration:\n  smaples: 3\n  seq_len: many\ngroup_size: 64\nweights:\n  bits: 8\n  gptq: {damp: 0}\n",
		"version: 1\nequalization: {method: none}\n",
		"base: w4a16-gptq\nversion: 1\nactivations: {bits: 8}\n",
		"version: 1\nweights: {bits: 4, bits: 8}\n",
		"",
		"- a\n",
		"version: 1\nweights: {method: gptq, gptq: {act_order: true}}\nskip: [\"a..b\", lm_head, lm_head]\n",
		"version: 1\nactivations: {bits: 16, policy: fptq}\n",
		"version: 2\nbase: w4a8-ftpq\n",
		"a: b: c\n",
		"version: 1\ncalibration:\n\tdata: x\n",
	} {
		_, err := Parse("t.yaml", []byte(s))
		fmt.Printf("---\n%s\n", err)
	}
}
