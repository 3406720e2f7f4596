package recipes

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Validate checks that r describes a quantization this toolkit can run: every value in its
// range and no impossible combination. Parse has already done it for a parsed recipe; it is
// for recipes built or changed in Go. Problems point into the recipe's file when it has one.
func (r *Recipe) Validate() error {
	d := newDiag(r.fileName(), r.src)
	check(r, d, false)
	return d.err()
}

// fileName is what problems name: the recipe's file, else its source, else "recipe".
func (r *Recipe) fileName() string {
	switch {
	case r.src != nil:
		return r.src.file
	case r.Source != "":
		return r.Source
	}
	return "recipe"
}

// check reports everything wrong with r into d. With parsing set it also rejects values the
// file set that do not apply to this recipe: a recipe that sets gptq.damp for RTN weights
// was probably meant to use GPTQ, and saying nothing would hide that.
func check(r *Recipe, d *diag, parsing bool) {
	c := &checker{r: r, d: d}
	c.values()
	if parsing {
		for _, a := range applicability {
			if !d.src.explicit(a.path) || a.applies(r) || d.isBad(a.path, a.on) {
				continue
			}
			d.atKey(a.path, "%s applies %s, but %s", a.path, a.when, d.is(a.on, c.value(a.on)))
			d.markBad(a.path)
		}
	}
	c.combinations()
}

type checker struct {
	r *Recipe
	d *diag
}

// value formats the value at path for messages.
func (c *checker) value(path string) string {
	r := c.r
	switch path {
	case "calibration.data":
		return r.Calibration.Data
	case "equalization.method":
		return string(r.Equalization.Method)
	case "activations.bits":
		return strconv.Itoa(r.Activations.Bits)
	case "activations.policy":
		return string(r.Activations.Policy)
	case "weights.bits":
		return strconv.Itoa(r.Weights.Bits)
	case "weights.group_size":
		return groupSizeString(r.Weights.GroupSize)
	case "weights.method":
		return string(r.Weights.Method)
	case "weights.clip.search":
		return strconv.FormatBool(r.Weights.Clip.Search)
	case "weights.gptq.static_groups":
		return strconv.FormatBool(r.Weights.GPTQ.StaticGroups)
	case "integer_scale.enabled":
		return strconv.FormatBool(r.IntegerScale.Enabled)
	case "integer_scale.amplifier":
		return amplifierString(r.IntegerScale.Amplifier)
	}
	panic("recipes: no value formatter for " + path)
}

func groupSizeString(g int) string {
	if g == PerChannel {
		return "per-channel"
	}
	return strconv.Itoa(g)
}

func amplifierString(a int) string {
	if a == MaxSafe {
		return "max-safe"
	}
	return strconv.Itoa(a)
}

// oneOf checks an enum value, suggesting the nearest valid one.
func oneOf[T ~string](c *checker, path string, v T, valid ...T) bool {
	if slices.Contains(valid, v) || c.d.isBad(path) {
		return true
	}
	names := make([]string, len(valid))
	for i, x := range valid {
		names[i] = string(x)
	}
	msg := fmt.Sprintf("%s: unknown value %q (want %s", path, string(v), orList(names))
	if s := closest(string(v), names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	c.d.at([]string{path}, "%s)", msg)
	c.d.markBad(path)
	return false
}

// fail reports a value out of range and marks it, so combinations ignore it.
func (c *checker) fail(path, format string, args ...any) {
	if c.d.isBad(path) {
		return
	}
	c.d.at([]string{path}, "%s: %s", path, fmt.Sprintf(format, args...))
	c.d.markBad(path)
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

// maxAmplifier bounds α: far past any useful value (the int32 bound alone keeps α under
// 2^31/(127·7·In)), and small enough that a typo of extra zeros is caught.
const maxAmplifier = 1 << 16

// values checks each value on its own: types that Go cannot express (enums, ranges).
func (c *checker) values() {
	r, d := c.r, c.d
	switch {
	case d.isBad("version"):
	case r.Version == 0 && !d.src.explicit("version"):
		d.addAt(pos{}, "version is missing: a recipe starts with `version: %d`", Version)
	case r.Version != Version:
		c.fail("version", "unsupported recipe version %d (this odyssey reads version %d)", r.Version, Version)
	}

	cal := r.Calibration
	if cal.Data == "" {
		c.fail("calibration.data", "empty; write %q or the path of a calibration file", Self)
	}
	if r.applies("calibration.format") && cal.Format != "" {
		oneOf(c, "calibration.format", cal.Format, "text", "jsonl")
	}
	if cal.Samples < 1 {
		c.fail("calibration.samples", "must be at least 1, got %d", cal.Samples)
	}
	if cal.SeqLen < 2 {
		c.fail("calibration.seq_len", "must be at least 2 (a sequence needs a token to predict), got %d", cal.SeqLen)
	}
	if cal.Seed < 0 {
		c.fail("calibration.seed", "must not be negative, got %d", cal.Seed)
	}
	oneOf(c, "calibration.propagate", cal.Propagate, PropagateQuantized, PropagateFullPrecision)

	eq := r.Equalization
	oneOf(c, "equalization.method", eq.Method, LAE, SmoothQuant, NoEqualization)
	if r.applies("equalization.statistic") {
		oneOf(c, "equalization.statistic", eq.Statistic, AbsMax, Range)
	}
	if r.applies("equalization.alpha") && (!finite(eq.Alpha) || eq.Alpha < 0 || eq.Alpha > 1) {
		c.fail("equalization.alpha", "must be in [0, 1], got %g", eq.Alpha)
	}
	if r.applies("equalization.pairs") && !d.isBad("equalization.pairs") {
		if len(eq.Pairs) == 0 {
			c.fail("equalization.pairs", "empty; to equalize nothing, write method: none")
		}
		seen := map[Pair]bool{}
		for i, p := range eq.Pairs {
			ip := fmt.Sprintf("equalization.pairs[%d]", i)
			if !oneOf(c, ip, p, PairQKV, PairGateUp, PairDown, PairO) || d.isBad(ip) {
				continue
			}
			if seen[p] {
				d.at([]string{ip}, "%s: %q is listed twice", ip, p)
			}
			seen[p] = true
		}
	}

	act := r.Activations
	if act.Bits != 8 && act.Bits != 16 {
		c.fail("activations.bits", "must be 8 or 16, got %d", act.Bits)
	}
	if r.applies("activations.policy") {
		oneOf(c, "activations.policy", act.Policy, PolicyFPTQ, PolicyStatic, PolicyPerToken, PolicyLAE)
	}
	if r.applies("activations.thresholds") {
		t := act.Thresholds
		switch {
		case !finite(t.V0) || t.V0 < 0:
			c.fail("activations.thresholds.v0", "must be a number ≥ 0, got %g", t.V0)
		case !finite(t.V1):
			c.fail("activations.thresholds.v1", "must be a finite number, got %g", t.V1)
		case t.V0 >= t.V1 && !d.isBad("activations.thresholds.v0", "activations.thresholds.v1"):
			d.at([]string{"activations.thresholds.v1", "activations.thresholds.v0"},
				"activations.thresholds: v0 (%g) must be below v1 (%g): ranges up to v0 are static, up to v1 LAE, above v1 per-token", t.V0, t.V1)
		}
	}

	w := r.Weights
	if w.Bits != 4 && w.Bits != 8 {
		c.fail("weights.bits", "must be 4 or 8, got %d", w.Bits)
	}
	if w.GroupSize != PerChannel && !slices.Contains(groupSizes, w.GroupSize) {
		c.fail("weights.group_size", "%d is not supported (want %s)", w.GroupSize, groupSizeChoices())
	}
	oneOf(c, "weights.method", w.Method, RTN, GPTQ)
	if w.Clip.Search {
		if !finite(w.Clip.Min) || w.Clip.Min <= 0 || w.Clip.Min >= 1 {
			c.fail("weights.clip.min", "must be in (0, 1), got %g", w.Clip.Min)
		}
		if w.Clip.Steps < 1 || w.Clip.Steps > 1000 {
			c.fail("weights.clip.steps", "must be between 1 and 1000, got %d", w.Clip.Steps)
		}
	}
	if r.applies("weights.gptq") {
		if w.GPTQ.BlockSize < 1 {
			c.fail("weights.gptq.block_size", "must be at least 1, got %d", w.GPTQ.BlockSize)
		}
		if !finite(w.GPTQ.Damp) || w.GPTQ.Damp <= 0 || w.GPTQ.Damp > 1 {
			c.fail("weights.gptq.damp", "must be in (0, 1] (a fraction of the Hessian's mean diagonal), got %g", w.GPTQ.Damp)
		}
	}
	if r.applies("weights.fallback") {
		oneOf(c, "weights.fallback", w.Fallback, FallbackPerChannel, FallbackError)
	}

	is := r.IntegerScale
	if r.applies("integer_scale.amplifier") && is.Amplifier != MaxSafe && (!isPow2(is.Amplifier) || is.Amplifier > maxAmplifier) {
		c.fail("integer_scale.amplifier", "must be max-safe or a power of two from 1 to %d, got %d", maxAmplifier, is.Amplifier)
	}
	if r.applies("integer_scale.max_amplifier") && (!isPow2(is.MaxAmplifier) || is.MaxAmplifier > maxAmplifier) {
		c.fail("integer_scale.max_amplifier", "must be a power of two from 1 to %d, got %d", maxAmplifier, is.MaxAmplifier)
	}

	if !d.isBad("skip") {
		seen := map[string]bool{}
		for i, p := range r.Skip {
			ip := fmt.Sprintf("skip[%d]", i)
			if d.isBad(ip) {
				continue
			}
			if err := checkPattern(p); err != "" {
				c.fail(ip, "pattern %q %s", p, err)
				continue
			}
			if seen[p] {
				d.at([]string{ip}, "%s: pattern %q is listed twice", ip, p)
			}
			seen[p] = true
		}
	}

	if r.Output.ShardSize < 1<<20 {
		c.fail("output.shard_size", "must be at least 1MiB, got %d bytes", r.Output.ShardSize)
	}
	oneOf(c, "output.format", r.Output.Format, FormatOdyssey, FormatCompressedTensors)
}

// checkPattern says what is wrong with a skip pattern, or "".
func checkPattern(p string) string {
	if p == "" {
		return "is empty"
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r == ' ' || r == '\t' || r == '/' }) {
		return "contains a space or a slash; module names are dot-separated, like model.layers.0.mlp.down_proj"
	}
	for _, seg := range strings.Split(p, ".") {
		if seg == "" {
			return "has an empty segment (two dots, or a dot at an end)"
		}
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Sprintf("has a malformed glob in %q", seg)
		}
	}
	return ""
}

// combinations checks values against each other. Each rule names every key involved, so
// that the problem lands on one the file actually set, and stays quiet when one of them is
// already reported as malformed.
func (c *checker) combinations() {
	r, d := c.r, c.d
	act, eq, w := r.Activations, r.Equalization, r.Weights
	rule := func(paths []string, cond bool, format string, args ...any) {
		if cond && !d.isBad(paths...) {
			d.at(paths, format, args...)
		}
	}
	is := func(path string) string { return d.is(path, c.value(path)) }

	needsLAE := act.Bits == 8 && (act.Policy == PolicyFPTQ || act.Policy == PolicyLAE)
	rule([]string{"activations.policy", "equalization.method", "activations.bits"},
		needsLAE && eq.Method != LAE,
		"activations.policy %s needs equalization.method lae, but %s", act.Policy, is("equalization.method"))
	rule([]string{"equalization.method", "activations.bits"},
		act.Bits == 16 && eq.Method != NoEqualization,
		"equalization.method %s needs 8-bit activations, but %s: equalization only helps activations that are quantized; write method: none",
		eq.Method, is("activations.bits"))
	rule([]string{"equalization.method", "activations.policy", "activations.bits"},
		act.Bits == 8 && eq.Method == LAE && !needsLAE,
		"equalization.method lae needs activations.policy fptq or lae, but %s (policies static and per-token never equalize; policy lae applies LAE to every layer)",
		is("activations.policy"))

	rule([]string{"weights.group_size", "weights.bits"},
		w.Bits == 8 && w.Grouped(),
		"weights.bits 8 needs group_size per-channel, but %s: 8-bit weights are per-channel, as in SmoothQuant's W8A8", is("weights.group_size"))
	rule([]string{"weights.bits", "activations.bits"},
		w.Bits == 8 && act.Bits == 16,
		"weights.bits 8 needs 8-bit activations, but %s: W8A16 is not a supported scheme", is("activations.bits"))

	if r.IntegerScale.Enabled {
		var why []string
		paths := []string{"integer_scale.enabled"}
		for _, x := range []struct {
			path string
			bad  bool
		}{
			{"weights.bits", w.Bits != 4},
			{"weights.group_size", !w.Grouped()},
			{"activations.bits", act.Bits != 8},
		} {
			paths = append(paths, x.path)
			if x.bad {
				why = append(why, is(x.path))
			}
		}
		rule(paths, len(why) > 0,
			"integer_scale.enabled needs grouped 4-bit weights and 8-bit activations (it turns group scales into integers for the int8×int4 kernel), but %s; write enabled: false",
			strings.Join(why, " and "))
	}

	rule([]string{"weights.gptq.act_order", "weights.gptq.static_groups", "weights.method", "weights.group_size"},
		w.Method == GPTQ && w.GPTQ.ActOrder && w.Grouped() && !w.GPTQ.StaticGroups,
		"weights.gptq.act_order with grouped weights needs static_groups: true, but %s: otherwise a group's columns are scattered over the input dimension, which the kernel's contiguous groups cannot express",
		is("weights.gptq.static_groups"))
}
