package authn

import (
	"slices"
	"strings"
)

// Roles a connection may take.
const (
	RoleOperator = "operator"
	RoleNode     = "node"
)

// Operator scopes. v3 has the first six; v4 adds talk and questions.
const (
	ScopeRead        = "operator.read"
	ScopeWrite       = "operator.write"
	ScopeAdmin       = "operator.admin"
	ScopeApprovals   = "operator.approvals"
	ScopePairing     = "operator.pairing"
	ScopeTalkSecrets = "operator.talk.secrets"
	ScopeTalk        = "operator.talk"
	ScopeQuestions   = "operator.questions"
)

// operatorPrefix marks scopes that belong to the operator role.
const operatorPrefix = "operator."

// OperatorScopes returns every operator scope clawgate knows, in a fresh slice.
func OperatorScopes() []string {
	return []string{ScopeAdmin, ScopeApprovals, ScopePairing, ScopeQuestions,
		ScopeRead, ScopeTalk, ScopeTalkSecrets, ScopeWrite}
}

// KnownScope reports whether s is one of OperatorScopes.
func KnownScope(s string) bool { return slices.Contains(OperatorScopes(), s) }

// ValidRole reports whether role is operator or node.
func ValidRole(role string) bool { return role == RoleOperator || role == RoleNode }

// ResolveRole returns role, or operator when role is empty (connect's default).
func ResolveRole(role string) string {
	if role == "" {
		return RoleOperator
	}
	return role
}

// Satisfies reports whether the granted scopes allow required. admin
// satisfies every operator scope; write satisfies read; anything else needs
// an exact match. Granted need not be normalized.
func Satisfies(granted []string, required string) bool {
	for _, g := range granted {
		if grantSatisfies(g, required) {
			return true
		}
	}
	return false
}

// grantSatisfies applies the implication rule for one granted scope.
func grantSatisfies(granted, required string) bool {
	switch {
	case granted == required:
		return true
	case granted == ScopeAdmin:
		return strings.HasPrefix(required, operatorPrefix)
	case granted == ScopeWrite:
		return required == ScopeRead
	}
	return false
}

// Covers reports whether granted satisfies every requested scope. An empty
// request is always covered.
func Covers(granted, requested []string) bool {
	_, missing := MissingScope(granted, requested)
	return !missing
}

// MissingScope returns the first requested scope that granted does not
// satisfy, and true; or "", false when all are covered.
func MissingScope(granted, requested []string) (string, bool) {
	for _, r := range requested {
		if !Satisfies(granted, r) {
			return r, true
		}
	}
	return "", false
}

// Normalize returns scopes trimmed, with empty entries dropped, the implied
// scopes added (admin ⇒ read and write; write ⇒ read), deduplicated and
// sorted. The result is never nil, so it encodes as [] in JSON.
func Normalize(scopes []string) []string {
	out := make([]string, 0, len(scopes)+2)
	for _, s := range scopes {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if slices.Contains(out, ScopeAdmin) {
		out = append(out, ScopeRead, ScopeWrite)
	}
	if slices.Contains(out, ScopeWrite) {
		out = append(out, ScopeRead)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ScopesForRole applies the role prefixing rule: the operator role keeps only
// operator.* scopes; any other role keeps only scopes without that prefix.
// The result is a new, never nil slice in the input order.
func ScopesForRole(role string, scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if strings.HasPrefix(s, operatorPrefix) == (role == RoleOperator) {
			out = append(out, s)
		}
	}
	return out
}
