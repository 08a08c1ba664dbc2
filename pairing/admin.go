package pairing

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/clawgate/clawgate/store"
)

// List returns the live pending requests (newest first) and the paired
// devices (most recently approved first), in their wire shapes.
func (m *Manager) List() (Listing, error) {
	const op = "pairing.List"
	if err := m.checkOpen(op); err != nil {
		return Listing{}, err
	}
	now := m.nowMs()
	var pending []store.PendingRequest
	var devices []store.PairedDevice
	err := m.st.ViewPairing(func(tx store.PairingTx) error {
		var err error
		if pending, err = m.livePending(tx, now); err != nil {
			return err
		}
		devices, err = tx.AllDevices()
		return err
	})
	if err != nil {
		return Listing{}, fmt.Errorf("%s: %w", op, err)
	}
	out := Listing{Pending: make([]PendingRequest, 0, len(pending)), Paired: make([]PairedDevice, 0, len(devices))}
	for _, p := range pending {
		out.Pending = append(out.Pending, toPending(p))
	}
	for _, d := range devices {
		out.Paired = append(out.Paired, toPairedDevice(d, m.lastUsedOverlay(d.DeviceID)))
	}
	sort.SliceStable(out.Pending, func(i, j int) bool { return out.Pending[i].TS > out.Pending[j].TS })
	sort.SliceStable(out.Paired, func(i, j int) bool { return out.Paired[i].ApprovedAtMs > out.Paired[j].ApprovedAtMs })
	return out, nil
}

// Device returns one paired device; ErrNotFound when it is not paired.
func (m *Manager) Device(deviceID string) (PairedDevice, error) {
	const op = "pairing.Device"
	if err := m.checkOpen(op); err != nil {
		return PairedDevice{}, err
	}
	var d *store.PairedDevice
	err := m.st.ViewPairing(func(tx store.PairingTx) error {
		var err error
		d, err = findDevice(tx, deviceID)
		return err
	})
	if err != nil {
		return PairedDevice{}, fmt.Errorf("%s: %w", op, err)
	}
	if d == nil {
		return PairedDevice{}, fmt.Errorf("%s: unknown deviceId: %w", op, ErrNotFound)
	}
	return toPairedDevice(*d, m.lastUsedOverlay(deviceID)), nil
}

// Approve approves a pending request on behalf of approver. The approver
// needs operator.pairing, must itself hold every operator scope the request
// asks for (else a *MissingScopeError "missing scope: X"), and needs
// operator.admin to approve any non-operator role. The device record, with a
// token record for each requested role, is written and the request deleted
// in one transaction. An unknown, expired or already resolved requestId is
// ErrNotFound and changes nothing; concurrent approvals of one request
// succeed exactly once.
func (m *Manager) Approve(requestID string, approver Caller) (ApproveResult, error) {
	const op = "pairing.Approve"
	if err := m.checkOpen(op); err != nil {
		return ApproveResult{}, err
	}
	if err := checkRequestID(requestID); err != nil {
		return ApproveResult{}, fmt.Errorf("%s: %w", op, err)
	}
	if !satisfies(approver.Scopes, scopePairing) {
		return ApproveResult{}, fmt.Errorf("%s: %w", op, &MissingScopeError{Scope: scopePairing})
	}
	now := m.nowMs()
	var res ApproveResult
	err := m.st.UpdatePairing(func(tx store.PairingTx) error {
		p, err := m.findPending(tx, requestID, now)
		if err != nil {
			return err
		}
		if err := approverCovers(approver, p); err != nil {
			return err
		}
		dev, err := findDevice(tx, p.DeviceID)
		if err != nil {
			return err
		}
		d, keyChanged, err := approveInTx(tx, p, dev, now)
		if err != nil {
			return err
		}
		res = ApproveResult{
			RequestID: requestID, Device: toPairedDevice(d, nil), KeyChanged: keyChanged,
			Resolved: Resolved{RequestID: requestID, DeviceID: p.DeviceID, Decision: DecisionApproved, TS: now},
		}
		return nil
	})
	if err != nil {
		return ApproveResult{}, fmt.Errorf("%s: %w", op, err)
	}
	if res.KeyChanged {
		m.forget(res.Device.DeviceID)
	}
	return res, nil
}

// approverCovers checks that an approval grants nothing the approver lacks.
func approverCovers(approver Caller, p store.PendingRequest) error {
	for _, r := range p.Roles {
		if r != roleOperator && !isAdmin(approver.Scopes) {
			return &MissingScopeError{Scope: scopeAdmin}
		}
	}
	if s, missing := missingScope(approver.Scopes, roleScopes(roleOperator, p.Scopes)); missing {
		return &MissingScopeError{Scope: s}
	}
	return nil
}

// findPending returns a live pending request, or ErrNotFound.
func (m *Manager) findPending(tx store.PairingTx, requestID string, now int64) (store.PendingRequest, error) {
	p, err := tx.Pending(requestID)
	if errors.Is(err, store.ErrNotFound) || err == nil && m.expired(p, now) {
		return p, fmt.Errorf("unknown requestId: %w", ErrNotFound)
	}
	return p, err
}

// Reject drops a pending request (operator.pairing required) and returns the
// device.pair.resolved payload. Unknown, expired or resolved ids are
// ErrNotFound.
func (m *Manager) Reject(requestID string, approver Caller) (Resolved, error) {
	const op = "pairing.Reject"
	if err := m.checkOpen(op); err != nil {
		return Resolved{}, err
	}
	if err := checkRequestID(requestID); err != nil {
		return Resolved{}, fmt.Errorf("%s: %w", op, err)
	}
	if !satisfies(approver.Scopes, scopePairing) {
		return Resolved{}, fmt.Errorf("%s: %w", op, &MissingScopeError{Scope: scopePairing})
	}
	now := m.nowMs()
	var res Resolved
	err := m.st.UpdatePairing(func(tx store.PairingTx) error {
		p, err := m.findPending(tx, requestID, now)
		if err != nil {
			return err
		}
		res = Resolved{RequestID: requestID, DeviceID: p.DeviceID, Decision: DecisionRejected, TS: now}
		return tx.DeletePending(requestID)
	})
	if err != nil {
		return Resolved{}, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}

// authorizeDevice lets caller manage deviceID: operator.pairing, and either
// operator.admin or deviceID is the caller's own device.
func authorizeDevice(caller Caller, deviceID string) error {
	if !satisfies(caller.Scopes, scopePairing) {
		return &MissingScopeError{Scope: scopePairing}
	}
	if isAdmin(caller.Scopes) || caller.DeviceID != "" && caller.DeviceID == deviceID {
		return nil
	}
	return fmt.Errorf("%w: only operator.admin may manage another device", ErrForbidden)
}

// Remove unpairs a device and drops its pending requests; all its tokens
// stop verifying at once. Non-admin callers may remove only their own
// device.
func (m *Manager) Remove(deviceID string, caller Caller) (RemoveResult, error) {
	const op = "pairing.Remove"
	if err := m.checkOpen(op); err != nil {
		return RemoveResult{}, err
	}
	if err := checkDeviceID(deviceID); err != nil {
		return RemoveResult{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := authorizeDevice(caller, deviceID); err != nil {
		return RemoveResult{}, fmt.Errorf("%s: %w", op, err)
	}
	err := m.st.UpdatePairing(func(tx store.PairingTx) error {
		d, err := findDevice(tx, deviceID)
		if err != nil {
			return err
		}
		if d == nil {
			return fmt.Errorf("unknown deviceId: %w", ErrNotFound)
		}
		all, err := tx.AllPending()
		if err != nil {
			return err
		}
		for _, p := range all {
			if p.DeviceID == deviceID {
				if err := tx.DeletePending(p.RequestID); err != nil {
					return err
				}
			}
		}
		return tx.DeleteDevice(deviceID)
	})
	if err != nil {
		return RemoveResult{}, fmt.Errorf("%s: %w", op, err)
	}
	m.forget(deviceID)
	return RemoveResult{DeviceID: deviceID}, nil
}

// RotateToken replaces the device's token for role with a fresh one and
// returns it. scopes nil keeps the current token's scopes. The role must be
// approved for the device, and the new scopes must lie within both the
// approved baseline and the caller's own scopes (for a non-operator role,
// any scope needs admin); a non-admin may rotate only its own device and
// never a revoked token. Every refusal is ErrRotationDenied ("device token
// rotation denied"); an admin naming an unknown device gets ErrNotFound.
func (m *Manager) RotateToken(deviceID, role string, scopes []string, caller Caller) (RotateResult, error) {
	const op = "pairing.RotateToken"
	if err := m.checkOpen(op); err != nil {
		return RotateResult{}, err
	}
	if err := checkDeviceID(deviceID); err != nil {
		return RotateResult{}, fmt.Errorf("%s: %w", op, err)
	}
	role, err := checkRole(role)
	if err != nil {
		return RotateResult{}, fmt.Errorf("%s: %w", op, ErrRotationDenied)
	}
	var requested []string
	if scopes != nil {
		if requested, err = checkScopes(role, scopes); err != nil {
			return RotateResult{}, fmt.Errorf("%s: %w", op, ErrRotationDenied)
		}
	}
	if !satisfies(caller.Scopes, scopePairing) {
		return RotateResult{}, fmt.Errorf("%s: %w", op, &MissingScopeError{Scope: scopePairing})
	}
	admin := isAdmin(caller.Scopes)
	if !admin && (caller.DeviceID == "" || caller.DeviceID != deviceID) {
		return RotateResult{}, fmt.Errorf("%s: %w", op, ErrRotationDenied)
	}

	now := m.nowMs()
	var res RotateResult
	err = m.st.UpdatePairing(func(tx store.PairingTx) error {
		d, err := findDevice(tx, deviceID)
		if err != nil {
			return err
		}
		if d == nil {
			if admin {
				return fmt.Errorf("unknown deviceId: %w", ErrNotFound)
			}
			return ErrRotationDenied
		}
		if !slices.Contains(d.Roles, role) {
			return ErrRotationDenied // never a role pairing did not approve
		}
		old, had := d.Tokens[role]
		if had && old.RevokedAtMs != 0 && !admin {
			return ErrRotationDenied
		}
		want := requested
		if want == nil {
			want = roleScopes(role, old.Scopes)
		}
		if !covers(roleScopes(role, d.ApprovedScopes), want) {
			return ErrRotationDenied
		}
		if role == roleOperator && !covers(caller.Scopes, want) || role != roleOperator && len(want) > 0 && !admin {
			return ErrRotationDenied
		}
		token := newToken()
		tok := store.DeviceToken{
			Digest: store.DigestToken(token), Role: role, Scopes: want,
			CreatedAtMs: now, RotatedAtMs: now, LastUsedAtMs: old.LastUsedAtMs, IssuedAtMs: now,
		}
		if had && old.CreatedAtMs != 0 {
			tok.CreatedAtMs = old.CreatedAtMs
		}
		if d.Tokens == nil {
			d.Tokens = make(map[string]store.DeviceToken)
		}
		d.Tokens[role] = tok
		if err := tx.PutDevice(*d); err != nil {
			return err
		}
		res = RotateResult{DeviceID: deviceID, Role: role, Token: token, Scopes: slices.Clone(want), RotatedAtMs: now}
		return nil
	})
	if err != nil {
		return RotateResult{}, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}

// RevokeToken revokes the device's token for role: it stops verifying and
// the role stops being effective until an operator approves it again.
// Non-admin callers may revoke only their own device's tokens. Revoking a
// revoked token returns the original revocation time.
func (m *Manager) RevokeToken(deviceID, role string, caller Caller) (RevokeResult, error) {
	const op = "pairing.RevokeToken"
	if err := m.checkOpen(op); err != nil {
		return RevokeResult{}, err
	}
	if err := checkDeviceID(deviceID); err != nil {
		return RevokeResult{}, fmt.Errorf("%s: %w", op, err)
	}
	role, err := checkRole(role)
	if err != nil {
		return RevokeResult{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := authorizeDevice(caller, deviceID); err != nil {
		return RevokeResult{}, fmt.Errorf("%s: %w", op, err)
	}
	now := m.nowMs()
	var res RevokeResult
	err = m.st.UpdatePairing(func(tx store.PairingTx) error {
		d, err := findDevice(tx, deviceID)
		if err != nil {
			return err
		}
		if d == nil {
			return fmt.Errorf("unknown deviceId: %w", ErrNotFound)
		}
		tok, ok := d.Tokens[role]
		if !ok {
			return fmt.Errorf("no token for role %s: %w", role, ErrNotFound)
		}
		res = RevokeResult{DeviceID: deviceID, Role: role, RevokedAtMs: tok.RevokedAtMs}
		if tok.RevokedAtMs != 0 {
			return nil
		}
		tok.RevokedAtMs = now
		d.Tokens[role] = tok
		res.RevokedAtMs = now
		return tx.PutDevice(*d)
	})
	if err != nil {
		return RevokeResult{}, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}

// toPending converts a stored request to its wire shape.
func toPending(p store.PendingRequest) PendingRequest {
	return PendingRequest{
		RequestID: p.RequestID, DeviceID: p.DeviceID, PublicKey: p.PublicKey,
		DisplayName: p.DisplayName, Platform: p.Platform, DeviceFamily: p.DeviceFamily,
		ClientID: p.ClientID, ClientMode: p.ClientMode,
		Role: p.Role, Roles: slices.Clone(p.Roles), Scopes: slices.Clone(p.Scopes),
		RemoteIP: p.RemoteIP, Silent: p.Silent, IsRepair: p.IsRepair, TS: p.TS,
	}
}

// toPairedDevice converts a stored device to its wire shape, dropping token
// digests and applying unflushed last-use times.
func toPairedDevice(d store.PairedDevice, used map[string]usedMark) PairedDevice {
	out := PairedDevice{
		DeviceID: d.DeviceID, PublicKey: d.PublicKey, DisplayName: d.DisplayName,
		Platform: d.Platform, DeviceFamily: d.DeviceFamily, ClientID: d.ClientID, ClientMode: d.ClientMode,
		Role: d.Role, Roles: nonNil(d.Roles), Scopes: nonNil(d.Scopes), ApprovedScopes: nonNil(d.ApprovedScopes),
		RemoteIP: d.RemoteIP, CreatedAtMs: d.CreatedAtMs, ApprovedAtMs: d.ApprovedAtMs,
	}
	roles := make([]string, 0, len(d.Tokens))
	for r := range d.Tokens {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	for _, r := range roles {
		t := d.Tokens[r]
		last := t.LastUsedAtMs
		if u, ok := used[r]; ok && u.digest.Equal(t.Digest) && u.atMs > last {
			last = u.atMs
		}
		out.Tokens = append(out.Tokens, TokenSummary{
			Role: t.Role, Scopes: nonNil(t.Scopes), CreatedAtMs: t.CreatedAtMs,
			RotatedAtMs: t.RotatedAtMs, RevokedAtMs: t.RevokedAtMs, LastUsedAtMs: last,
		})
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}
