package quant

import (
	"fmt"
	"math"
)

// ActPolicy is how a linear layer's input activations are quantized to int8.
type ActPolicy int

const (
	// StaticPerTensor: one calibrated scale for the whole tensor.
	StaticPerTensor ActPolicy = iota
	// LAEStaticPerTensor: LAE folded into the producer and this layer's weight, then one
	// calibrated scale for the equalized tensor.
	LAEStaticPerTensor
	// DynamicPerToken: one scale per token (row), computed at run time.
	DynamicPerToken
)

var policyNames = [...]string{"static-per-tensor", "lae-static-per-tensor", "dynamic-per-token"}

// String returns "static-per-tensor", "lae-static-per-tensor" or "dynamic-per-token".
func (p ActPolicy) String() string {
	if p < 0 || int(p) >= len(policyNames) {
		return fmt.Sprintf("ActPolicy(%d)", int(p))
	}
	return policyNames[p]
}

// MarshalText encodes the policy by name, so JSON reports read "dynamic-per-token", not 2.
func (p ActPolicy) MarshalText() ([]byte, error) {
	if p < 0 || int(p) >= len(policyNames) {
		return nil, fmt.Errorf("quant: unknown activation policy %d", int(p))
	}
	return []byte(policyNames[p]), nil
}

// UnmarshalText decodes a name written by MarshalText.
func (p *ActPolicy) UnmarshalText(b []byte) error {
	v, err := ParseActPolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParseActPolicy returns the policy named s (as String writes it).
func ParseActPolicy(s string) (ActPolicy, error) {
	for i, n := range policyNames {
		if n == s {
			return ActPolicy(i), nil
		}
	}
	return 0, fmt.Errorf("quant: unknown activation policy %q (want one of %q)", s, policyNames[:])
}

// PolicyKind is the rule that assigns activation policies to layers.
type PolicyKind int

const (
	// FPTQ is the paper's layer-wise rule on the input range r (before LAE):
	// r ≤ V0 → static per-tensor; V0 < r ≤ V1 → LAE, then static per-tensor; r > V1 →
	// dynamic per-token.
	FPTQ PolicyKind = iota
	AlwaysStatic
	AlwaysPerToken
	AlwaysLAE
)

var ruleNames = [...]string{"fptq", "always-static", "always-per-token", "always-lae"}

// String returns "fptq", "always-static", "always-per-token" or "always-lae".
func (k PolicyKind) String() string {
	if k < 0 || int(k) >= len(ruleNames) {
		return fmt.Sprintf("PolicyKind(%d)", int(k))
	}
	return ruleNames[k]
}

// ParsePolicyKind returns the rule named s (as String writes it).
func ParsePolicyKind(s string) (PolicyKind, error) {
	for i, n := range ruleNames {
		if n == s {
			return PolicyKind(i), nil
		}
	}
	return 0, fmt.Errorf("quant: unknown policy rule %q (want one of %q)", s, ruleNames[:])
}

// FPTQ's thresholds on the activation range, from the paper (v0 = 15, v1 = 150).
const (
	DefaultV0 = 15
	DefaultV1 = 150
)

// PolicyRule is a rule with its thresholds (used by FPTQ only).
type PolicyRule struct {
	Kind   PolicyKind
	V0, V1 float32
}

// DefaultPolicyRule returns FPTQ with the paper's thresholds.
func DefaultPolicyRule() PolicyRule { return PolicyRule{Kind: FPTQ, V0: DefaultV0, V1: DefaultV1} }

// Validate checks the kind and, for FPTQ, that 0 ≤ V0 ≤ V1 are finite.
func (r PolicyRule) Validate() error {
	if r.Kind < 0 || int(r.Kind) >= len(ruleNames) {
		return fmt.Errorf("quant: unknown policy rule %d", int(r.Kind))
	}
	if r.Kind == FPTQ && !(r.V0 >= 0 && r.V0 <= r.V1 && r.V1 <= math.MaxFloat32) {
		return fmt.Errorf("quant: FPTQ thresholds v0 = %v, v1 = %v: want 0 ≤ v0 ≤ v1, finite", r.V0, r.V1)
	}
	return nil
}

// Decision records why a layer got its activation policy, for the quantization report.
type Decision struct {
	Policy ActPolicy `json:"policy"`
	Rule   string    `json:"rule"`
	// Range is the layer's input range before LAE, max over channels of the per-channel
	// statistic (for max |x|: the per-tensor max |x|); the FPTQ rule reads only this.
	Range float32 `json:"range"`
	// RangeAfterLAE is the range the equalized input would have; with LAE its static scale
	// is RangeAfterLAE/127.
	RangeAfterLAE float32 `json:"range_after_lae"`
	// V0 and V1 are the FPTQ thresholds; absent for the other rules, which have none.
	V0     *float32 `json:"v0,omitempty"`
	V1     *float32 `json:"v1,omitempty"`
	Reason string   `json:"reason"`
}

// Decide applies rule to a layer whose input range is rangeBeforeLAE (max over input
// channels of the calibration statistic, i.e. the per-tensor max |x| for the max statistic)
// and would be rangeAfterLAE after equalization, and records the numbers.
//
// FPTQ's rule (Algorithm 1) reads the range before LAE: a layer whose range is already small
// (≤ v0) keeps plain static quantization; a medium range (v0 < r ≤ v1) is one LAE can tame, so
// it gets LAE and then a static scale; a range above v1 has outliers too large for one static
// scale even after LAE, so it gets dynamic per-token scales, and no LAE. rangeAfterLAE is
// recorded, never compared. It panics on an invalid rule (see PolicyRule.Validate) or a
// negative or non-finite range: both are the caller's bugs.
func Decide(rule PolicyRule, rangeBeforeLAE, rangeAfterLAE float32) (ActPolicy, Decision) {
	if err := rule.Validate(); err != nil {
		panic(err)
	}
	for _, r := range []float32{rangeBeforeLAE, rangeAfterLAE} {
		if !(r >= 0 && r <= math.MaxFloat32) {
			panic(fmt.Sprintf("quant: Decide: range %v is not finite and non-negative", r))
		}
	}
	d := Decision{Rule: rule.Kind.String(), Range: rangeBeforeLAE, RangeAfterLAE: rangeAfterLAE}
	switch rule.Kind {
	case FPTQ:
		v0, v1 := rule.V0, rule.V1
		d.V0, d.V1 = &v0, &v1
		r := rangeBeforeLAE
		switch {
		case r <= rule.V0:
			d.Policy = StaticPerTensor
			d.Reason = fmt.Sprintf("range %.4g ≤ v0 = %g: static per-tensor", r, rule.V0)
		case r <= rule.V1:
			d.Policy = LAEStaticPerTensor
			d.Reason = fmt.Sprintf("v0 = %g < range %.4g ≤ v1 = %g: LAE (range after %.4g), then static per-tensor", rule.V0, r, rule.V1, rangeAfterLAE)
		default:
			d.Policy = DynamicPerToken
			d.Reason = fmt.Sprintf("range %.4g > v1 = %g: dynamic per-token", r, rule.V1)
		}
	case AlwaysStatic:
		d.Policy = StaticPerTensor
		d.Reason = "rule always-static"
	case AlwaysPerToken:
		d.Policy = DynamicPerToken
		d.Reason = "rule always-per-token"
	case AlwaysLAE:
		d.Policy = LAEStaticPerTensor
		d.Reason = fmt.Sprintf("rule always-lae: range %.4g, after LAE %.4g", rangeBeforeLAE, rangeAfterLAE)
	}
	return d.Policy, d
}
