package pairing

import (
	"errors"
	"fmt"
	"slices"

	"github.com/clawgate/clawgate/store"
)

// Check decides what a connect with a proven device key gets (protocol
// §3.2):
//
//   - not paired, or paired under a different public key → not-paired;
//   - platform or deviceFamily different from the pinned values →
//     metadata-upgrade;
//   - role not among the effective roles (approved roles holding a live
//     token) → role-upgrade;
//   - requested scopes not covered by the approved baseline → scope-upgrade.
//
// Otherwise the device is Paired, which costs no write. A connect that needs
// approval creates or refreshes one pending request per device, in one
// transaction: a retry the pending request already covers keeps its
// requestId and ts (and extends its TTL); anything else replaces it with a
// merged request under a new requestId. Only a first pairing of an unknown
// device, with SilentAllowed, is approved silently; upgrades and a new key
// for a known deviceId always wait for an operator.
//
// With ConnectInfo.DeviceToken, Check first verifies the token exactly as
// VerifyDeviceToken does, in the read transaction that starts the decision;
// every error before the token has verified wraps ErrTokenUnverified.
func (m *Manager) Check(req ConnectInfo) (Decision, error) {
	const op = "pairing.Check"
	dec, verified, err := m.check(req)
	switch {
	case err == nil:
		return dec, nil
	case req.DeviceToken != "" && !verified:
		return Decision{}, fmt.Errorf("%s: %w: %w", op, ErrTokenUnverified, err)
	}
	return Decision{}, fmt.Errorf("%s: %w", op, err)
}

// check is Check; verified reports that ConnectInfo.DeviceToken verified.
func (m *Manager) check(req ConnectInfo) (dec Decision, verified bool, err error) {
	if m.closed.Load() {
		return Decision{}, false, ErrClosed
	}
	var tc *tokenCheck
	if req.DeviceToken != "" {
		t, err := prepareToken(req.DeviceID, req.Role, req.DeviceToken, req.Scopes)
		if err != nil {
			return Decision{}, false, err
		}
		tc = &t
	}
	in, err := normalizeConnect(req)
	if err != nil {
		return Decision{}, false, err
	}

	// Fast path: a paired device within its approval, holding a token that
	// covers the request when IssueToken asks for one, only reads.
	var dev, tokDev *store.PairedDevice
	var verr error
	err = m.st.ViewPairing(func(tx store.PairingTx) error {
		dec, dev, tokDev, verr = Decision{}, nil, nil, nil
		d, err := findDevice(tx, in.DeviceID)
		if err != nil {
			return err
		}
		if tc != nil {
			if verr = tc.verify(d); verr != nil {
				return nil
			}
			tokDev = d
		}
		if d == nil || evaluate(d, in) != "" {
			return nil
		}
		if in.IssueToken {
			if _, need, err := needToken(d, in.Role, in.scopes); err != nil || need {
				return nil // the write path below mints it (or reports why not)
			}
		}
		dev, dec = d, pairedDecision(d, in)
		return nil
	})
	if err == nil {
		err = verr
	}
	if err != nil {
		return Decision{}, false, err
	}
	verified = tc != nil
	if tc != nil {
		m.noteUsed(tokDev, tc.role, tc.digest, m.nowMs())
	}
	if dev != nil {
		m.noteMeta(dev, in)
		return dec, verified, nil
	}

	// The write shares its commit with concurrent connects (BatchPairing), so
	// this fn may run more than once: it sets dec and dev afresh each time.
	now := m.nowMs()
	tooMany := false
	err = m.st.BatchPairing(func(tx store.PairingTx) error {
		dec, dev, tooMany = Decision{}, nil, false
		live, err := m.livePending(tx, now)
		if err != nil {
			return err
		}
		d, err := findDevice(tx, in.DeviceID)
		if err != nil {
			return err
		}
		reason := evaluate(d, in)
		if reason == "" { // paired: approved while we were looking, or needs a token
			var issued IssuedToken
			if in.IssueToken {
				_, need, err := needToken(d, in.Role, in.scopes)
				if err != nil {
					return err
				}
				if need {
					tok, err := mintInTx(tx, d, in.Role, in.scopes, now)
					if err != nil {
						return err
					}
					issued = IssuedToken{Token: tok, IssuedAtMs: now}
				}
			}
			dev, dec = d, pairedDecision(d, in)
			dec.Token = issued
			return nil
		}
		p, created, superseded, err := m.upsertPending(tx, live, d, in, reason, now)
		if errors.Is(err, ErrTooManyPending) {
			// A refusal, not a failure: nothing but the purge of expired
			// requests was written, and returning nil keeps a flood of
			// refused connects from rolling back the commit they share
			// (a transaction that wrote nothing is not committed).
			tooMany = true
			return nil
		}
		if err != nil {
			return err
		}
		if p.Silent {
			nd, _, err := approveInTx(tx, p, d, now)
			if err != nil {
				return err
			}
			var issued IssuedToken
			if in.IssueToken {
				// The token hello-ok hands out, in the approving transaction:
				// exactly what EnsureToken would mint next.
				tok, err := mintInTx(tx, &nd, in.Role, in.scopes, now)
				if err != nil {
					return err
				}
				issued = IssuedToken{Token: tok, IssuedAtMs: now}
			}
			view := toPairedDevice(nd, nil)
			pr := toPending(p)
			dec = Decision{
				Outcome: ApprovedSilently, Role: in.Role, Scopes: in.scopes,
				Platform: nd.Platform, DeviceFamily: nd.DeviceFamily, Device: &view,
				Reason: reason, Request: &pr, Superseded: superseded,
				Resolved: &Resolved{RequestID: p.RequestID, DeviceID: p.DeviceID, Decision: DecisionApproved, TS: now},
				Token:    issued,
			}
			return nil
		}
		pr := toPending(p)
		dec = Decision{
			Outcome: PendingRequired, Reason: reason, Request: &pr, Created: created,
			Superseded: superseded, ExpiresAtMs: m.expiresAt(p),
		}
		return nil
	})
	if err == nil && tooMany {
		err = ErrTooManyPending
	}
	if err != nil {
		return Decision{}, verified, err
	}
	if dev != nil {
		m.noteMeta(dev, in)
	}
	return dec, verified, nil
}

// findDevice returns the paired device, or nil when there is none.
func findDevice(tx store.PairingTx, id string) (*store.PairedDevice, error) {
	d, err := tx.Device(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// evaluate returns why in needs approval against dev (nil: not paired), or
// "" when the device is paired for it.
func evaluate(dev *store.PairedDevice, in connectIn) Reason {
	switch {
	case dev == nil || dev.PublicKey != in.PublicKey:
		return ReasonNotPaired
	case pinNorm(dev.Platform) != pinNorm(in.Platform) || pinNorm(dev.DeviceFamily) != pinNorm(in.DeviceFamily):
		return ReasonMetadataUpgrade
	case !slices.Contains(effectiveRoles(dev), in.Role):
		return ReasonRoleUpgrade
	case !covers(roleScopes(in.Role, dev.ApprovedScopes), in.scopes):
		return ReasonScopeUpgrade
	}
	return ""
}

// effectiveRoles are the approved roles that hold a live (unrevoked) token.
// A record without tokens has no roles.
func effectiveRoles(dev *store.PairedDevice) []string {
	var out []string
	for _, r := range dev.Roles {
		if t, ok := dev.Tokens[r]; ok && t.RevokedAtMs == 0 && t.Role == r {
			out = append(out, r)
		}
	}
	return out
}

func pairedDecision(dev *store.PairedDevice, in connectIn) Decision {
	view := toPairedDevice(*dev, nil)
	return Decision{
		Outcome: Paired, Role: in.Role, Scopes: in.scopes,
		Platform: dev.Platform, DeviceFamily: dev.DeviceFamily, Device: &view,
	}
}

// upsertPending creates, refreshes or replaces the device's pending request.
func (m *Manager) upsertPending(tx store.PairingTx, live []store.PendingRequest, dev *store.PairedDevice,
	in connectIn, reason Reason, now int64) (p store.PendingRequest, created bool, superseded []string, err error) {
	var mine []store.PendingRequest
	perClient := 0
	for _, q := range live {
		switch {
		case q.DeviceID == in.DeviceID:
			mine = append(mine, q)
		case q.ClientKey == in.ClientKey:
			perClient++
		}
	}
	// Silence only for the first pairing of an unknown device (B3, B4).
	silent := in.SilentAllowed && reason == ReasonNotPaired && dev == nil

	incoming := store.PendingRequest{
		DeviceID: in.DeviceID, PublicKey: in.PublicKey,
		DisplayName: in.DisplayName, Platform: in.Platform, DeviceFamily: in.DeviceFamily,
		ClientID: in.ClientID, ClientMode: in.ClientMode,
		Role: in.Role, Roles: []string{in.Role}, Scopes: in.scopes,
		RemoteIP: in.RemoteIP, ClientKey: in.ClientKey,
		Silent: silent, IsRepair: dev != nil,
	}

	if len(mine) == 1 && pendingCovers(mine[0], incoming) {
		p = mine[0]
		p.DisplayName = firstNonEmpty(incoming.DisplayName, p.DisplayName)
		p.ClientID = firstNonEmpty(incoming.ClientID, p.ClientID)
		p.ClientMode = firstNonEmpty(incoming.ClientMode, p.ClientMode)
		p.RemoteIP = firstNonEmpty(incoming.RemoteIP, p.RemoteIP)
		p.Silent = p.Silent && incoming.Silent // an interactive request stays interactive
		p.IsRepair = p.IsRepair || incoming.IsRepair
		p.RefreshedAtMs = now // TTL runs from the last retry; ts (queue order) is kept
		return p, false, nil, tx.PutPending(p)
	}

	p = incoming
	for _, old := range mine {
		if old.PublicKey == p.PublicKey { // never merge what another key asked for
			p.Roles = unionSorted(p.Roles, old.Roles)
			p.Scopes = unionSorted(p.Scopes, old.Scopes)
		}
		p.Silent = p.Silent && old.Silent
		if err := tx.DeletePending(old.RequestID); err != nil {
			return p, false, nil, err
		}
		superseded = append(superseded, old.RequestID)
	}
	p.Roles = unionSorted(p.Roles)
	p.Scopes = scopesForRoles(p.Roles, p.Scopes)
	p.RequestID = newRequestID()
	p.TS, p.RefreshedAtMs = now, now
	if p.Silent {
		return p, true, superseded, nil // approved in this same transaction; never stored
	}
	if len(mine) == 0 {
		if perClient >= m.opts.MaxPendingPerClient || len(live) >= m.opts.MaxPending {
			return p, false, nil, ErrTooManyPending
		}
	}
	return p, true, superseded, tx.PutPending(p)
}

// pendingCovers reports whether approving existing would also satisfy
// incoming: same key and pinned metadata, the role among its roles, the
// scopes within its scopes.
func pendingCovers(existing, incoming store.PendingRequest) bool {
	return existing.PublicKey == incoming.PublicKey &&
		pinNorm(existing.Platform) == pinNorm(incoming.Platform) &&
		pinNorm(existing.DeviceFamily) == pinNorm(incoming.DeviceFamily) &&
		slices.Contains(existing.Roles, incoming.Role) &&
		covers(roleScopes(incoming.Role, existing.Scopes), incoming.Scopes)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// approveInTx turns p into (or merges it into) the paired record, with a
// token record for every requested role, and deletes p, all in tx. A new
// public key for a known deviceId starts a fresh record: nothing the old
// key was granted carries over. Tokens minted here are stored as digests
// only and never handed out (IssuedAtMs 0); an existing live token for a
// requested role keeps its value and gains the newly approved scopes.
func approveInTx(tx store.PairingTx, p store.PendingRequest, dev *store.PairedDevice, now int64) (store.PairedDevice, bool, error) {
	var d store.PairedDevice
	keyChanged := false
	if dev != nil && dev.PublicKey == p.PublicKey {
		d = *dev
	} else {
		keyChanged = dev != nil
		d = store.PairedDevice{DeviceID: p.DeviceID, CreatedAtMs: now}
	}
	if d.Tokens == nil {
		d.Tokens = make(map[string]store.DeviceToken)
	}
	d.PublicKey = p.PublicKey
	d.DisplayName = firstNonEmpty(p.DisplayName, d.DisplayName)
	d.Platform, d.DeviceFamily = p.Platform, p.DeviceFamily // the approved pins
	d.ClientID = firstNonEmpty(p.ClientID, d.ClientID)
	d.ClientMode = firstNonEmpty(p.ClientMode, d.ClientMode)
	d.RemoteIP = firstNonEmpty(p.RemoteIP, d.RemoteIP)
	d.Role = p.Role
	d.Roles = unionSorted(d.Roles, p.Roles)
	d.ApprovedScopes = scopesForRoles(d.Roles, unionSorted(d.ApprovedScopes, p.Scopes))
	d.Scopes = slices.Clone(d.ApprovedScopes)
	for _, role := range p.Roles {
		add := roleScopes(role, p.Scopes)
		tok, ok := d.Tokens[role]
		if ok && tok.RevokedAtMs == 0 && !tok.Digest.IsZero() {
			tok.Scopes = normalizeScopes(unionSorted(tok.Scopes, add))
		} else {
			created := now
			var rotated int64
			if ok {
				created, rotated = tok.CreatedAtMs, now
			}
			tok = store.DeviceToken{
				Digest: store.DigestToken(newToken()), // plaintext discarded: see package doc
				Role:   role, Scopes: add, CreatedAtMs: created, RotatedAtMs: rotated,
				LastUsedAtMs: tok.LastUsedAtMs,
			}
		}
		d.Tokens[role] = tok
	}
	d.ApprovedAtMs = now
	if err := tx.PutDevice(d); err != nil {
		return d, false, err
	}
	if err := tx.DeletePending(p.RequestID); err != nil {
		return d, false, err
	}
	return d, keyChanged, nil
}

// VerifyDeviceToken checks a device token presented at connect: the device
// is paired, holds a live token for role that matches (constant-time digest
// compare), the token's scopes lie within the approved baseline and cover
// the requested scopes (admin ⇒ write ⇒ read). It returns nil, or an error
// wrapping ErrTokenMismatch or ErrScopeMismatch. A success records
// lastUsedAtMs in memory only: a connect costs no write.
func (m *Manager) VerifyDeviceToken(deviceID, role, token string, scopes []string) error {
	const op = "pairing.VerifyDeviceToken"
	if err := m.checkOpen(op); err != nil {
		return err
	}
	tc, err := prepareToken(deviceID, role, token, scopes)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var dev *store.PairedDevice
	var verr error
	err = m.st.ViewPairing(func(tx store.PairingTx) error {
		d, err := findDevice(tx, deviceID)
		if err != nil {
			return err
		}
		dev, verr = d, tc.verify(d)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if verr != nil {
		return fmt.Errorf("%s: %w", op, verr)
	}
	m.noteUsed(dev, tc.role, tc.digest, m.nowMs())
	return nil
}

// tokenCheck is a device token to verify against a stored record.
type tokenCheck struct {
	role      string
	requested []string
	digest    store.TokenDigest
}

// prepareToken applies VerifyDeviceToken's checks of its arguments, which
// need no read: malformed input is a mismatch.
func prepareToken(deviceID, role, token string, scopes []string) (tokenCheck, error) {
	role = resolveRole(role)
	requested, serr := checkScopes(role, scopes)
	if !isDeviceID(deviceID) || !validRole(role) || token == "" || len(token) > maxTokenLen {
		return tokenCheck{}, ErrTokenMismatch
	}
	if serr != nil {
		return tokenCheck{}, ErrScopeMismatch
	}
	return tokenCheck{role: role, requested: requested, digest: store.DigestToken(token)}, nil
}

// verify checks the token against d as stored (nil: no such device): a
// live token for the role, approved, whose digest matches (constant time,
// compared even when there is none), within the approved baseline and
// covering the requested scopes. It returns nil, ErrTokenMismatch or
// ErrScopeMismatch.
func (tc *tokenCheck) verify(d *store.PairedDevice) error {
	var stored store.DeviceToken
	live := false
	if d != nil {
		stored, live = d.Tokens[tc.role]
		live = live && stored.RevokedAtMs == 0 && stored.IssuedAtMs != 0 &&
			stored.Role == tc.role && slices.Contains(d.Roles, tc.role)
	}
	match := stored.Digest.Equal(tc.digest) // compared even when not live
	switch {
	case !live || !match:
		return ErrTokenMismatch
	case !covers(roleScopes(tc.role, d.ApprovedScopes), stored.Scopes):
		return ErrScopeMismatch
	case !covers(stored.Scopes, tc.requested):
		return ErrScopeMismatch
	}
	return nil
}

// EnsureToken makes sure the device holds a token for role that covers
// scopes, for hello-ok.auth. It mints a fresh token, stores its digest and
// returns it (minted true) when the role has no token yet, when its token
// was never handed out (minted at approval), or when the existing token does
// not cover scopes; the new token's scopes are the request plus whatever the
// old token held within the baseline. When the existing token already
// covers the request it returns no token (minted false): only digests are
// stored, so a token handed out earlier cannot be returned again, and the
// device keeps using the one it has. The common case costs no write.
//
// It fails with ErrNotPaired when the device or role is not approved (or
// the role's token is revoked: that needs a new approval) and with
// ErrScopeMismatch when scopes exceed the approved baseline.
func (m *Manager) EnsureToken(deviceID, role string, scopes []string) (token string, issuedAtMs int64, minted bool, err error) {
	const op = "pairing.EnsureToken"
	if err := m.checkOpen(op); err != nil {
		return "", 0, false, err
	}
	if err := checkDeviceID(deviceID); err != nil {
		return "", 0, false, fmt.Errorf("%s: %w", op, err)
	}
	role, err = checkRole(role)
	if err != nil {
		return "", 0, false, fmt.Errorf("%s: %w", op, err)
	}
	requested, err := checkScopes(role, scopes)
	if err != nil {
		return "", 0, false, fmt.Errorf("%s: %w", op, err)
	}

	var existing store.DeviceToken
	var need bool
	err = m.st.ViewPairing(func(tx store.PairingTx) error {
		d, err := findDevice(tx, deviceID)
		if err != nil {
			return err
		}
		existing, need, err = needToken(d, role, requested)
		return err
	})
	if err != nil {
		return "", 0, false, fmt.Errorf("%s: %w", op, err)
	}
	if !need {
		return "", existing.IssuedAtMs, false, nil
	}

	now := m.nowMs()
	err = m.st.UpdatePairing(func(tx store.PairingTx) error {
		token, minted = "", false
		d, err := findDevice(tx, deviceID)
		if err != nil {
			return err
		}
		old, need, err := needToken(d, role, requested)
		if err != nil || !need {
			existing = old
			return err
		}
		token, err = mintInTx(tx, d, role, requested, now)
		minted = err == nil
		return err
	})
	if err != nil {
		return "", 0, false, fmt.Errorf("%s: %w", op, err)
	}
	if !minted {
		return "", existing.IssuedAtMs, false, nil
	}
	return token, now, true, nil
}

// needToken reports, for the device as stored, whether role needs a fresh
// token to cover requested (normalized for role): none yet, never handed
// out, or not covering. It fails with ErrNotPaired or ErrScopeMismatch as
// EnsureToken does.
func needToken(d *store.PairedDevice, role string, requested []string) (existing store.DeviceToken, need bool, err error) {
	if d == nil || !slices.Contains(d.Roles, role) {
		return existing, false, ErrNotPaired
	}
	existing, ok := d.Tokens[role]
	if ok && existing.RevokedAtMs != 0 {
		return existing, false, ErrNotPaired
	}
	baseline := roleScopes(role, d.ApprovedScopes)
	if !covers(baseline, requested) {
		return existing, false, ErrScopeMismatch
	}
	fine := ok && existing.IssuedAtMs != 0 && covers(baseline, existing.Scopes) && covers(existing.Scopes, requested)
	return existing, !fine, nil
}

// mintInTx mints a fresh token for role on d, to be handed out now, and
// stores d with its digest: scopes are requested plus whatever the old
// token held within the approved baseline (never beyond it). It updates d
// and returns the token's plaintext; the caller has checked needToken.
func mintInTx(tx store.PairingTx, d *store.PairedDevice, role string, requested []string, now int64) (string, error) {
	old := d.Tokens[role]
	baseline := roleScopes(role, d.ApprovedScopes)
	if !covers(baseline, requested) {
		return "", ErrScopeMismatch
	}
	keep := slices.DeleteFunc(slices.Clone(old.Scopes), func(s string) bool { return !satisfies(baseline, s) })
	tok := store.DeviceToken{
		Role: role, Scopes: normalizeScopes(unionSorted(keep, requested)),
		CreatedAtMs: now, RotatedAtMs: old.RotatedAtMs, LastUsedAtMs: old.LastUsedAtMs, IssuedAtMs: now,
	}
	if old.CreatedAtMs != 0 {
		tok.CreatedAtMs = old.CreatedAtMs
	}
	if old.IssuedAtMs != 0 { // replacing a token the device holds
		tok.RotatedAtMs = now
	}
	token := newToken()
	tok.Digest = store.DigestToken(token)
	if d.Tokens == nil {
		d.Tokens = make(map[string]store.DeviceToken)
	}
	d.Tokens[role] = tok
	return token, tx.PutDevice(*d)
}
