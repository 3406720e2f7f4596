package quant

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestDecideFPTQ(t *testing.T) {
	rule := DefaultPolicyRule()
	for _, c := range []struct {
		before, after float32
		want          ActPolicy
	}{
		{0, 0, StaticPerTensor},
		{3, 2, StaticPerTensor},
		{15, 4, StaticPerTensor}, // ≤ v0
		{15.001, 4, LAEStaticPerTensor},
		{150, 7.2, LAEStaticPerTensor}, // ≤ v1
		{150.01, 7.2, DynamicPerToken},
		// The rule reads the range before LAE: an after-LAE range below v0 does not make a
		// range-2000 layer static.
		{2000, 11, DynamicPerToken},
	} {
		p, d := Decide(rule, c.before, c.after)
		if p != c.want || d.Policy != p || d.Range != c.before || d.RangeAfterLAE != c.after ||
			d.V0 == nil || *d.V0 != 15 || *d.V1 != 150 || d.Rule != "fptq" || d.Reason == "" {
			t.Errorf("Decide(fptq, %v, %v) = %v, %+v; want %v", c.before, c.after, p, d, c.want)
		}
	}
	for _, c := range []struct {
		kind PolicyKind
		want ActPolicy
	}{{AlwaysStatic, StaticPerTensor}, {AlwaysPerToken, DynamicPerToken}, {AlwaysLAE, LAEStaticPerTensor}} {
		for _, r := range []float32{0, 20, 1e6} {
			p, d := Decide(PolicyRule{Kind: c.kind}, r, r/2)
			if p != c.want || d.V0 != nil || d.Rule != c.kind.String() {
				t.Errorf("Decide(%v, %v) = %v, %+v; want %v", c.kind, r, p, d, c.want)
			}
		}
	}
}

func TestDecisionJSON(t *testing.T) {
	_, d := Decide(DefaultPolicyRule(), 42, 5.5)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"policy":"lae-static-per-tensor"`, `"rule":"fptq"`, `"range":42`, `"range_after_lae":5.5`, `"v0":15`, `"v1":150`, `"reason":"`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON %s lacks %s", s, want)
		}
	}
	var back Decision
	if err := json.Unmarshal(b, &back); err != nil || back.Policy != LAEStaticPerTensor || *back.V1 != 150 {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	_, d = Decide(PolicyRule{Kind: AlwaysPerToken}, 1, 1)
	b, _ = json.Marshal(d)
	if strings.Contains(string(b), "v0") {
		t.Errorf("always-per-token records thresholds: %s", b)
	}
}

func TestPolicyNames(t *testing.T) {
	for p := StaticPerTensor; p <= DynamicPerToken; p++ {
		q, err := ParseActPolicy(p.String())
		if err != nil || q != p {
			t.Errorf("ParseActPolicy(%q) = %v, %v", p.String(), q, err)
		}
	}
	for k := FPTQ; k <= AlwaysLAE; k++ {
		q, err := ParsePolicyKind(k.String())
		if err != nil || q != k {
			t.Errorf("ParsePolicyKind(%q) = %v, %v", k.String(), q, err)
		}
	}
	if _, err := ParseActPolicy("per-channel"); err == nil {
		t.Error("ParseActPolicy accepted per-channel")
	}
	if s := ActPolicy(9).String(); s != "ActPolicy(9)" {
		t.Errorf("String = %q", s)
	}
	if _, err := json.Marshal(ActPolicy(9)); err == nil {
		t.Error("marshalled an unknown policy")
	}
}

func TestPolicyRuleValidate(t *testing.T) {
	for _, r := range []PolicyRule{
		{Kind: FPTQ, V0: 150, V1: 15},
		{Kind: FPTQ, V0: -1, V1: 15},
		{Kind: FPTQ, V0: 1, V1: float32(math.Inf(1))},
		{Kind: 9},
	} {
		if r.Validate() == nil {
			t.Errorf("%+v accepted", r)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Decide(%+v) did not panic", r)
				}
			}()
			Decide(r, 1, 1)
		}()
	}
	if (PolicyRule{Kind: AlwaysStatic}).Validate() != nil || DefaultPolicyRule().Validate() != nil {
		t.Error("valid rules rejected")
	}
}
