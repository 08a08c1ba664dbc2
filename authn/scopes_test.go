package authn

import (
	"slices"
	"testing"
)

func TestSatisfies(t *testing.T) {
	tests := []struct {
		name     string
		granted  []string
		required string
		want     bool
	}{
		{"nothing granted", nil, ScopeRead, false},
		{"exact", []string{ScopePairing}, ScopePairing, true},
		{"admin satisfies read", []string{ScopeAdmin}, ScopeRead, true},
		{"admin satisfies write", []string{ScopeAdmin}, ScopeWrite, true},
		{"admin satisfies pairing", []string{ScopeAdmin}, ScopePairing, true},
		{"admin satisfies approvals", []string{ScopeAdmin}, ScopeApprovals, true},
		{"admin satisfies talk.secrets", []string{ScopeAdmin}, ScopeTalkSecrets, true},
		{"admin satisfies questions", []string{ScopeAdmin}, ScopeQuestions, true},
		{"admin satisfies unknown operator scope", []string{ScopeAdmin}, "operator.future", true},
		{"admin does not reach non-operator scopes", []string{ScopeAdmin}, "node.thing", false},
		{"write satisfies read", []string{ScopeWrite}, ScopeRead, true},
		{"write does not satisfy admin", []string{ScopeWrite}, ScopeAdmin, false},
		{"write does not satisfy pairing", []string{ScopeWrite}, ScopePairing, false},
		{"read does not satisfy write", []string{ScopeRead}, ScopeWrite, false},
		{"pairing does not satisfy admin", []string{ScopePairing}, ScopeAdmin, false},
		{"talk does not satisfy talk.secrets", []string{ScopeTalk}, ScopeTalkSecrets, false},
		{"talk.secrets does not satisfy talk", []string{ScopeTalkSecrets}, ScopeTalk, false},
		{"no prefix matching", []string{"operator"}, ScopeRead, false},
		{"case sensitive", []string{"OPERATOR.ADMIN"}, ScopeRead, false},
		{"several granted", []string{ScopeApprovals, ScopePairing}, ScopePairing, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Satisfies(tt.granted, tt.required); got != tt.want {
				t.Errorf("Satisfies(%v, %s) = %v", tt.granted, tt.required, got)
			}
		})
	}
}

func TestCoversAndMissingScope(t *testing.T) {
	tests := []struct {
		name               string
		granted, requested []string
		missing            string
	}{
		{"empty request", nil, nil, ""},
		{"empty request, nothing granted", []string{}, []string{}, ""},
		{"admin covers all", []string{ScopeAdmin}, OperatorScopes(), ""},
		{"write covers read+write", []string{ScopeWrite}, []string{ScopeRead, ScopeWrite}, ""},
		{"B5 pairing approver lacks admin", []string{ScopePairing}, []string{ScopeRead, ScopeAdmin}, ScopeRead},
		{"C2 rotate beyond caller", []string{ScopePairing, ScopeRead}, []string{ScopeRead, ScopeAdmin}, ScopeAdmin},
		{"first missing in request order", []string{ScopeRead}, []string{ScopeApprovals, ScopePairing}, ScopeApprovals},
		{"node scope not covered by admin", []string{ScopeAdmin}, []string{"node.x"}, "node.x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, missing := MissingScope(tt.granted, tt.requested)
			if got != tt.missing || missing != (tt.missing != "") {
				t.Errorf("MissingScope = %q, %v; want %q", got, missing, tt.missing)
			}
			if Covers(tt.granted, tt.requested) != (tt.missing == "") {
				t.Errorf("Covers disagrees with MissingScope")
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"nil", nil, []string{}},
		{"admin implies read and write", []string{ScopeAdmin}, []string{ScopeAdmin, ScopeRead, ScopeWrite}},
		{"write implies read", []string{ScopeWrite}, []string{ScopeRead, ScopeWrite}},
		{"read alone", []string{ScopeRead}, []string{ScopeRead}},
		{"dedupe and sort", []string{ScopePairing, ScopeRead, ScopePairing, ScopeApprovals},
			[]string{ScopeApprovals, ScopePairing, ScopeRead}},
		{"trim and drop empty", []string{" operator.read ", "", "  "}, []string{ScopeRead}},
		{"transcript scopes", []string{ScopeAdmin, ScopeRead, ScopeWrite, ScopeApprovals, ScopePairing},
			[]string{ScopeAdmin, ScopeApprovals, ScopePairing, ScopeRead, ScopeWrite}},
		{"unknown kept", []string{"operator.future"}, []string{"operator.future"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			got := Normalize(in)
			if got == nil || !slices.Equal(got, tt.want) {
				t.Errorf("Normalize(%v) = %#v, want %v", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("Normalize modified its input: %v", in)
			}
			if again := Normalize(got); !slices.Equal(again, got) {
				t.Errorf("Normalize is not idempotent: %v", again)
			}
		})
	}
}

func TestScopesForRole(t *testing.T) {
	mixed := []string{ScopeRead, "node.canvas", ScopeAdmin, "custom", "operatorx"}
	tests := []struct {
		name string
		role string
		want []string
	}{
		{"operator keeps operator.*", RoleOperator, []string{ScopeRead, ScopeAdmin}},
		{"node drops operator.*", RoleNode, []string{"node.canvas", "custom", "operatorx"}},
		{"unknown role treated as non-operator", "worker", []string{"node.canvas", "custom", "operatorx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ScopesForRole(tt.role, mixed); !slices.Equal(got, tt.want) {
				t.Errorf("ScopesForRole(%s) = %v, want %v", tt.role, got, tt.want)
			}
		})
	}
	if got := ScopesForRole(RoleNode, nil); got == nil || len(got) != 0 {
		t.Errorf("ScopesForRole(node, nil) = %#v", got)
	}
}

func TestRoles(t *testing.T) {
	tests := []struct {
		role  string
		valid bool
		res   string
	}{
		{"operator", true, "operator"},
		{"node", true, "node"},
		{"", false, "operator"},
		{"admin", false, "admin"},
		{"Operator", false, "Operator"},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			if ValidRole(tt.role) != tt.valid || ResolveRole(tt.role) != tt.res {
				t.Errorf("ValidRole=%v ResolveRole=%q", ValidRole(tt.role), ResolveRole(tt.role))
			}
		})
	}
}

func TestKnownScope(t *testing.T) {
	for _, s := range OperatorScopes() {
		if !KnownScope(s) {
			t.Errorf("KnownScope(%s) = false", s)
		}
	}
	if len(OperatorScopes()) != 8 || KnownScope("operator.root") {
		t.Error("unexpected scope set")
	}
	a := OperatorScopes()
	a[0] = "mutated"
	if OperatorScopes()[0] == "mutated" {
		t.Error("OperatorScopes shares its backing array")
	}
}
