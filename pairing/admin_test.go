package pairing_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/pairing"
)

// TestApprove pins who may approve what (protocol §3.5 approval extras,
// attack rows B5 and B8).
func TestApprove(t *testing.T) {
	cases := []struct {
		name     string
		role     string
		scopes   []string
		approver pairing.Caller
		missing  string // "" means approved
	}{
		{"admin approves admin", "operator", []string{"operator.admin"}, admin, ""},
		{"pairing+read approves read", "operator", readScopes, pairingRead, ""},
		{"pairing+write approves read (write implies read)", "operator", readScopes, pairing.Caller{Scopes: []string{"operator.pairing", "operator.write"}}, ""},
		{"pairing approves a scopeless operator", "operator", nil, pairingOnly, ""},
		{"B5 pairing alone cannot approve admin", "operator", []string{"operator.admin"}, pairingOnly, "operator.admin"},
		{"B5 pairing+read cannot approve admin", "operator", []string{"operator.admin"}, pairingRead, "operator.admin"},
		{"pairing+read cannot approve write", "operator", []string{"operator.write"}, pairingRead, "operator.write"},
		{"pairing alone cannot approve read", "operator", readScopes, pairingOnly, "operator.read"},
		{"approver needs the pairing scope", "operator", nil, pairing.Caller{Scopes: readScopes}, "operator.pairing"},
		{"no scopes at all", "operator", nil, pairing.Caller{}, "operator.pairing"},
		{"node role needs admin", "node", nil, pairing.Caller{Scopes: []string{"operator.pairing", "operator.write"}}, "operator.admin"},
		{"admin approves node", "node", nil, admin, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			d := newDevice(t)
			id := e.request(d, c.role, c.scopes)
			before, _ := e.m.List()
			res, err := e.m.Approve(id, c.approver)
			if c.missing != "" {
				var mse *pairing.MissingScopeError
				if !errors.As(err, &mse) || mse.Scope != c.missing || !errors.Is(err, pairing.ErrForbidden) {
					t.Fatalf("Approve = %v, want missing scope %s", err, c.missing)
				}
				if !strings.HasSuffix(err.Error(), "missing scope: "+c.missing) {
					t.Errorf("message %q", err)
				}
				after, _ := e.m.List()
				if !jsonEqual(before, after) {
					t.Errorf("a refused approval changed state")
				}
				if _, err := e.m.Device(d.id); !errors.Is(err, pairing.ErrNotFound) {
					t.Errorf("device paired by a refused approval")
				}
				return
			}
			if err != nil {
				t.Fatalf("Approve: %v", err)
			}
			if res.RequestID != id || res.Device.DeviceID != d.id || res.Resolved != (pairing.Resolved{RequestID: id, DeviceID: d.id, Decision: "approved", TS: e.clock.Now().UnixMilli()}) {
				t.Errorf("result %+v", res)
			}
			if !slices.Contains(res.Device.Roles, c.role) || len(res.Device.Tokens) != 1 {
				t.Errorf("device %+v", res.Device)
			}
			if e.pendingCount() != 0 {
				t.Errorf("approved request still pending")
			}
		})
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestResolvedIDsAreGone is attack row B8: approving or rejecting an id that
// is unknown, expired, approved or rejected is not-found and issues nothing.
func TestResolvedIDsAreGone(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(e *env, id string)
	}{
		{"unknown", func(*env, string) {}},
		{"expired", func(e *env, _ string) { e.clock.Advance(5*time.Minute + time.Millisecond) }},
		{"already approved", func(e *env, id string) { mustApprove(e, id) }},
		{"already rejected", func(e *env, id string) {
			if _, err := e.m.Reject(id, pairingOnly); err != nil {
				e.t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			d := newDevice(t)
			id := e.request(d, "operator", readScopes)
			c.prepare(e, id)
			target := id
			if c.name == "unknown" {
				target = "6f1c6b0e-0000-4000-8000-000000000000"
			}
			before, _ := e.stored(d.id)
			if _, err := e.m.Approve(target, admin); !errors.Is(err, pairing.ErrNotFound) {
				t.Errorf("Approve = %v, want ErrNotFound", err)
			}
			if _, err := e.m.Reject(target, admin); !errors.Is(err, pairing.ErrNotFound) {
				t.Errorf("Reject = %v, want ErrNotFound", err)
			}
			after, _ := e.stored(d.id)
			if !jsonEqual(before, after) {
				t.Errorf("device record changed")
			}
		})
	}
}

func mustApprove(e *env, id string) pairing.ApproveResult {
	e.t.Helper()
	res, err := e.m.Approve(id, admin)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func TestReject(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	id := e.request(d, "operator", []string{"operator.admin"})
	if _, err := e.m.Reject(id, pairing.Caller{Scopes: readScopes}); !errors.Is(err, pairing.ErrForbidden) {
		t.Fatalf("Reject without pairing scope = %v", err)
	}
	res, err := e.m.Reject(id, pairingOnly)
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != "rejected" || res.DeviceID != d.id || res.RequestID != id {
		t.Errorf("resolved %+v", res)
	}
	if e.pendingCount() != 0 {
		t.Errorf("rejected request still pending")
	}
	if _, err := e.m.Device(d.id); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("rejected device is paired")
	}
}

// TestApproveScopeUpgradeKeepsToken: a scope-upgrade approval widens the
// device's live token in place (B3: until then the old approval is kept
// as-is), so the device keeps a token it already holds.
func TestApproveScopeUpgradeKeepsToken(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	tok := e.pair(d, "operator", readScopes)
	dec := e.check(info(d, "operator", []string{"operator.write"}))
	if dec.Reason != pairing.ReasonScopeUpgrade {
		t.Fatalf("reason %q", dec.Reason)
	}
	// Until approval: old approval intact, upgrade not granted.
	if err := e.m.VerifyDeviceToken(d.id, "operator", tok, readScopes); err != nil {
		t.Fatalf("old token during pending upgrade: %v", err)
	}
	if err := e.m.VerifyDeviceToken(d.id, "operator", tok, []string{"operator.write"}); !errors.Is(err, pairing.ErrScopeMismatch) {
		t.Fatalf("upgrade usable before approval: %v", err)
	}
	mustApprove(e, dec.Request.RequestID)
	if err := e.m.VerifyDeviceToken(d.id, "operator", tok, []string{"operator.write"}); err != nil {
		t.Fatalf("token after upgrade approval: %v", err)
	}
	if _, _, minted, err := e.m.EnsureToken(d.id, "operator", []string{"operator.write"}); err != nil || minted {
		t.Errorf("EnsureToken after upgrade: minted %v, %v", minted, err)
	}
}

// TestRemove is attack row B11 (tokens fail after remove) and C1 for remove.
func TestRemove(t *testing.T) {
	e := newEnv(t)
	d, other := newDevice(t), newDevice(t)
	tok := e.pair(d, "operator", readScopes)
	nodeTok := ""
	{
		id := e.request(d, "node", nil)
		mustApprove(e, id)
		var err error
		nodeTok, _, _, err = e.m.EnsureToken(d.id, "node", nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	e.pair(other, "operator", readScopes)
	e.check(info(d, "operator", []string{"operator.admin"})) // pending upgrade for d

	self := pairing.Caller{DeviceID: other.id, Scopes: []string{"operator.pairing", "operator.read"}}
	if _, err := e.m.Remove(d.id, self); !errors.Is(err, pairing.ErrForbidden) {
		t.Fatalf("non-admin removing another device = %v, want ErrForbidden", err)
	}
	if _, err := e.m.Remove(d.id, pairing.Caller{Scopes: []string{"operator.pairing"}}); !errors.Is(err, pairing.ErrForbidden) {
		t.Fatalf("device-less non-admin remove = %v, want ErrForbidden", err)
	}
	res, err := e.m.Remove(d.id, admin)
	if err != nil || res.DeviceID != d.id {
		t.Fatalf("Remove = %+v, %v", res, err)
	}
	for role, tk := range map[string]string{"operator": tok, "node": nodeTok} {
		if err := e.m.VerifyDeviceToken(d.id, role, tk, nil); !errors.Is(err, pairing.ErrTokenMismatch) {
			t.Errorf("%s token after remove = %v, want mismatch", role, err)
		}
	}
	if e.pendingCount() != 0 {
		t.Errorf("remove left the device's pending request")
	}
	if _, err := e.m.Remove(d.id, admin); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("second remove = %v, want ErrNotFound", err)
	}
	if dec := e.check(info(d, "operator", readScopes)); dec.Reason != pairing.ReasonNotPaired {
		t.Errorf("connect after remove: %v", dec.Reason)
	}
	// A device may remove itself.
	if _, err := e.m.Remove(other.id, self); err != nil {
		t.Errorf("self remove: %v", err)
	}
}

// TestRotateToken pins device.token.rotate: attack rows C1, C2 and
// GHSA-whf9 (never a role pairing did not approve).
func TestRotateToken(t *testing.T) {
	type fixture struct {
		e            *env
		target, peer device
		targetTok    string
	}
	setup := func(t *testing.T, targetScopes []string) fixture {
		e := newEnv(t)
		f := fixture{e: e, target: newDevice(t), peer: newDevice(t)}
		f.targetTok = e.pair(f.target, "operator", targetScopes)
		e.pair(f.peer, "operator", []string{"operator.pairing", "operator.read"})
		return f
	}
	selfOf := func(d device, scopes ...string) pairing.Caller { return pairing.Caller{DeviceID: d.id, Scopes: scopes} }

	cases := []struct {
		name      string
		targetSc  []string
		role      string
		scopes    []string
		caller    func(f fixture) pairing.Caller
		revoked   bool
		wantErr   error
		wantScope []string
	}{
		{name: "admin rotates any device, keeping scopes", targetSc: readScopes, role: "operator",
			caller: func(fixture) pairing.Caller { return admin }, wantScope: readScopes},
		{name: "admin narrows scopes", targetSc: []string{"operator.write"}, role: "operator", scopes: readScopes,
			caller: func(fixture) pairing.Caller { return admin }, wantScope: readScopes},
		{name: "self rotate by non-admin", targetSc: []string{"operator.pairing", "operator.read"}, role: "operator",
			caller:    func(f fixture) pairing.Caller { return selfOf(f.target, "operator.pairing", "operator.read") },
			wantScope: []string{"operator.pairing", "operator.read"}},
		{name: "C1 non-admin rotates another device", targetSc: readScopes, role: "operator",
			caller: func(f fixture) pairing.Caller { return selfOf(f.peer, "operator.pairing", "operator.read") }, wantErr: pairing.ErrRotationDenied},
		{name: "C1 device-less non-admin", targetSc: readScopes, role: "operator",
			caller: func(fixture) pairing.Caller { return pairingRead }, wantErr: pairing.ErrRotationDenied},
		{name: "C2 pairing caller mints admin on its own admin device", targetSc: []string{"operator.admin"}, role: "operator",
			caller: func(f fixture) pairing.Caller { return selfOf(f.target, "operator.pairing", "operator.read") }, wantErr: pairing.ErrRotationDenied},
		{name: "C2 beyond the approved baseline, even for admin", targetSc: readScopes, role: "operator", scopes: []string{"operator.admin"},
			caller: func(fixture) pairing.Caller { return admin }, wantErr: pairing.ErrRotationDenied},
		{name: "C2 beyond the caller's scopes", targetSc: []string{"operator.pairing", "operator.write"}, role: "operator", scopes: []string{"operator.write"},
			caller: func(f fixture) pairing.Caller { return selfOf(f.target, "operator.pairing", "operator.read") }, wantErr: pairing.ErrRotationDenied},
		{name: "whf9 role never approved", targetSc: readScopes, role: "node",
			caller: func(fixture) pairing.Caller { return admin }, wantErr: pairing.ErrRotationDenied},
		{name: "invalid role", targetSc: readScopes, role: "root",
			caller: func(fixture) pairing.Caller { return admin }, wantErr: pairing.ErrRotationDenied},
		{name: "revoked token needs admin", targetSc: []string{"operator.pairing", "operator.read"}, role: "operator", revoked: true,
			caller: func(f fixture) pairing.Caller { return selfOf(f.target, "operator.pairing", "operator.read") }, wantErr: pairing.ErrRotationDenied},
		{name: "admin re-issues a revoked token", targetSc: readScopes, role: "operator", revoked: true,
			caller: func(fixture) pairing.Caller { return admin }, wantScope: readScopes},
		{name: "caller without pairing scope", targetSc: readScopes, role: "operator",
			caller: func(f fixture) pairing.Caller { return selfOf(f.target, "operator.read") }, wantErr: pairing.ErrForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := setup(t, c.targetSc)
			if c.revoked {
				revoke(f.e, f.target, "operator")
			}
			before, _ := f.e.stored(f.target.id)
			res, err := f.e.m.RotateToken(f.target.id, c.role, c.scopes, c.caller(f))
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("RotateToken = %v, want %v", err, c.wantErr)
				}
				if errors.Is(c.wantErr, pairing.ErrRotationDenied) && !strings.HasSuffix(err.Error(), "device token rotation denied") {
					t.Errorf("message %q", err)
				}
				if after, _ := f.e.stored(f.target.id); !jsonEqual(before, after) {
					t.Errorf("refused rotation changed the record")
				}
				return
			}
			if err != nil {
				t.Fatalf("RotateToken: %v", err)
			}
			if len(res.Token) != 43 || !slices.Equal(res.Scopes, c.wantScope) || res.RotatedAtMs != f.e.clock.Now().UnixMilli() {
				t.Errorf("result %v", res)
			}
			if err := f.e.m.VerifyDeviceToken(f.target.id, "operator", res.Token, c.wantScope); err != nil {
				t.Errorf("new token: %v", err)
			}
			if err := f.e.m.VerifyDeviceToken(f.target.id, "operator", f.targetTok, nil); !errors.Is(err, pairing.ErrTokenMismatch) {
				t.Errorf("old token after rotation = %v, want mismatch", err)
			}
		})
	}
	t.Run("admin naming an unknown device", func(t *testing.T) {
		e := newEnv(t)
		if _, err := e.m.RotateToken(newDevice(t).id, "operator", nil, admin); !errors.Is(err, pairing.ErrNotFound) {
			t.Errorf("= %v, want ErrNotFound", err)
		}
	})
}

// TestRevokeToken: attack rows C1 and C3.
func TestRevokeToken(t *testing.T) {
	e := newEnv(t)
	d, peer := newDevice(t), newDevice(t)
	tok := e.pair(d, "operator", []string{"operator.pairing", "operator.read"})
	e.pair(peer, "operator", readScopes)

	peerCaller := pairing.Caller{DeviceID: peer.id, Scopes: []string{"operator.pairing", "operator.read"}}
	if _, err := e.m.RevokeToken(d.id, "operator", peerCaller); !errors.Is(err, pairing.ErrForbidden) {
		t.Fatalf("C1 revoke another device's token = %v, want ErrForbidden", err)
	}
	if _, err := e.m.RevokeToken(d.id, "node", admin); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("revoke a role without token = %v, want ErrNotFound", err)
	}
	self := pairing.Caller{DeviceID: d.id, Scopes: []string{"operator.pairing", "operator.read"}}
	res, err := e.m.RevokeToken(d.id, "operator", self)
	if err != nil || res.RevokedAtMs != e.clock.Now().UnixMilli() {
		t.Fatalf("self revoke = %+v, %v", res, err)
	}
	// C3: the revoked token no longer verifies, and cannot be re-minted
	// without a new approval.
	if err := e.m.VerifyDeviceToken(d.id, "operator", tok, nil); !errors.Is(err, pairing.ErrTokenMismatch) {
		t.Fatalf("revoked token = %v, want mismatch", err)
	}
	if _, _, _, err := e.m.EnsureToken(d.id, "operator", nil); !errors.Is(err, pairing.ErrNotPaired) {
		t.Fatalf("EnsureToken after revoke = %v, want ErrNotPaired", err)
	}
	e.clock.Advance(time.Second)
	again, err := e.m.RevokeToken(d.id, "operator", admin)
	if err != nil || again.RevokedAtMs != res.RevokedAtMs {
		t.Errorf("revoke is not idempotent: %+v, %v", again, err)
	}
	// Re-approval restores the role with a fresh token.
	dec := e.check(info(d, "operator", readScopes))
	if dec.Reason != pairing.ReasonRoleUpgrade {
		t.Fatalf("connect after revoke: %q", dec.Reason)
	}
	mustApprove(e, dec.Request.RequestID)
	fresh, _, minted, err := e.m.EnsureToken(d.id, "operator", readScopes)
	if err != nil || !minted {
		t.Fatalf("EnsureToken after re-approval: %v", err)
	}
	if err := e.m.VerifyDeviceToken(d.id, "operator", fresh, readScopes); err != nil {
		t.Errorf("fresh token: %v", err)
	}
	if err := e.m.VerifyDeviceToken(d.id, "operator", tok, nil); err == nil {
		t.Errorf("revoked token revived by re-approval")
	}
}

// TestListWireShape: device.pair.list shapes, and never a digest.
func TestListWireShape(t *testing.T) {
	e := newEnv(t)
	d, p := newDevice(t), newDevice(t)
	tok := e.pair(d, "operator", []string{"operator.admin"})
	e.request(p, "operator", readScopes)
	l, err := e.m.List()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(l)
	var generic struct {
		Pending []map[string]any `json:"pending"`
		Paired  []map[string]any `json:"paired"`
	}
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	if len(generic.Pending) != 1 || len(generic.Paired) != 1 {
		t.Fatalf("list = %s", raw)
	}
	for _, k := range []string{"requestId", "deviceId", "publicKey", "role", "roles", "scopes", "silent", "ts", "platform", "clientId", "clientMode", "remoteIp", "displayName"} {
		if _, ok := generic.Pending[0][k]; !ok {
			t.Errorf("pending lacks %q: %s", k, raw)
		}
	}
	for _, k := range []string{"clientKey", "refreshedAtMs"} {
		if _, ok := generic.Pending[0][k]; ok {
			t.Errorf("pending leaks internal field %q", k)
		}
	}
	dev := generic.Paired[0]
	for _, k := range []string{"deviceId", "publicKey", "roles", "scopes", "tokens", "createdAtMs", "approvedAtMs"} {
		if _, ok := dev[k]; !ok {
			t.Errorf("paired lacks %q: %s", k, raw)
		}
	}
	if _, ok := dev["approvedScopes"]; ok {
		t.Errorf("paired lists approvedScopes")
	}
	toks, _ := dev["tokens"].([]any)
	if len(toks) != 1 {
		t.Fatalf("tokens = %v", dev["tokens"])
	}
	tk := toks[0].(map[string]any)
	if tk["role"] != "operator" || tk["createdAtMs"] == nil {
		t.Errorf("token summary %v", tk)
	}
	rec, _ := e.stored(d.id)
	digest, _ := rec.Tokens["operator"].Digest.MarshalText()
	for _, secret := range []string{tok, string(digest), "digest"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("list JSON contains %q", secret)
		}
	}
}
