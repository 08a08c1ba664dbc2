package pairing

import (
	"slices"
	"strings"
)

// Role and scope vocabulary and the implication rules (protocol §3.5).
//
// TODO(authn): package authn exports the same rules (ValidRole, Satisfies,
// Covers, MissingScope, Normalize, ScopesForRole). These private copies,
// kept identical in behaviour, exist only so pairing did not wait for authn
// to be committed; switch to the authn functions once it is (scopes_test.go
// pins the shared behaviour).
const (
	roleOperator = "operator"
	roleNode     = "node"

	scopeRead    = "operator.read"
	scopeWrite   = "operator.write"
	scopeAdmin   = "operator.admin"
	scopePairing = "operator.pairing"

	operatorPrefix = "operator."
)

// validRole reports whether role is operator or node.
func validRole(role string) bool { return role == roleOperator || role == roleNode }

// resolveRole returns role, or operator when empty (connect's default).
func resolveRole(role string) string {
	if role == "" {
		return roleOperator
	}
	return role
}

// satisfies reports whether granted allows required: admin satisfies every
// operator scope, write satisfies read, anything else needs an exact match.
func satisfies(granted []string, required string) bool {
	for _, g := range granted {
		switch {
		case g == required:
			return true
		case g == scopeAdmin && strings.HasPrefix(required, operatorPrefix):
			return true
		case g == scopeWrite && required == scopeRead:
			return true
		}
	}
	return false
}

// missingScope returns the first requested scope granted does not satisfy.
func missingScope(granted, requested []string) (string, bool) {
	for _, r := range requested {
		if !satisfies(granted, r) {
			return r, true
		}
	}
	return "", false
}

// covers reports whether granted satisfies every requested scope.
func covers(granted, requested []string) bool {
	_, missing := missingScope(granted, requested)
	return !missing
}

// normalizeScopes trims, drops empties, adds implied scopes (admin ⇒ read,
// write; write ⇒ read), dedupes and sorts. Never nil.
func normalizeScopes(scopes []string) []string {
	out := make([]string, 0, len(scopes)+2)
	for _, s := range scopes {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if slices.Contains(out, scopeAdmin) {
		out = append(out, scopeRead, scopeWrite)
	}
	if slices.Contains(out, scopeWrite) {
		out = append(out, scopeRead)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// scopesForRole keeps operator.* scopes for the operator role and only
// non-operator scopes for any other role. Never nil.
func scopesForRole(role string, scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if strings.HasPrefix(s, operatorPrefix) == (role == roleOperator) {
			out = append(out, s)
		}
	}
	return out
}

// roleScopes is the normalized scope set of role within scopes.
func roleScopes(role string, scopes []string) []string {
	return normalizeScopes(scopesForRole(role, scopes))
}

// scopesForRoles is the normalized union of roleScopes over roles.
func scopesForRoles(roles, scopes []string) []string {
	var out []string
	for _, r := range roles {
		out = append(out, scopesForRole(r, scopes)...)
	}
	return normalizeScopes(out)
}

// unionSorted returns the sorted, deduplicated union of the lists. Never nil.
func unionSorted(lists ...[]string) []string {
	out := []string{}
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// isAdmin reports whether scopes hold operator.admin.
func isAdmin(scopes []string) bool { return slices.Contains(scopes, scopeAdmin) }
