package pairing_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/clawgate/clawgate/pairing"
)

// TestCheck pins the connect-time rules of protocol §3.2, one named case
// per rule.
func TestCheck(t *testing.T) {
	type want struct {
		outcome pairing.Outcome
		reason  pairing.Reason
		silent  bool
		repair  bool
		scopes  []string // effective scopes when paired
	}
	cases := []struct {
		name  string
		setup func(e *env, d device) // pairs d as needed
		conn  func(t testing.TB, d device) pairing.ConnectInfo
		want  want
	}{
		{
			name: "unknown device remote: pending not-paired",
			conn: func(t testing.TB, d device) pairing.ConnectInfo { return info(d, "operator", readScopes) },
			want: want{outcome: pairing.PendingRequired, reason: pairing.ReasonNotPaired},
		},
		{
			name: "unknown device, silent allowed: approved silently",
			conn: func(t testing.TB, d device) pairing.ConnectInfo { return local(info(d, "operator", readScopes)) },
			want: want{outcome: pairing.ApprovedSilently, reason: pairing.ReasonNotPaired, silent: true, scopes: readScopes},
		},
		{
			name:  "paired, same role and scopes: paired",
			setup: pairAs("operator", readScopes),
			conn:  func(t testing.TB, d device) pairing.ConnectInfo { return info(d, "operator", readScopes) },
			want:  want{outcome: pairing.Paired, scopes: readScopes},
		},
		{
			name:  "paired, fewer scopes: paired with the requested scopes only",
			setup: pairAs("operator", []string{"operator.write", "operator.approvals"}),
			conn:  func(t testing.TB, d device) pairing.ConnectInfo { return info(d, "operator", readScopes) },
			want:  want{outcome: pairing.Paired, scopes: readScopes},
		},
		{
			name:  "paired, no scopes: paired with none (default deny)",
			setup: pairAs("operator", readScopes),
			conn:  func(t testing.TB, d device) pairing.ConnectInfo { return info(d, "", nil) },
			want:  want{outcome: pairing.Paired, scopes: []string{}},
		},
		{
			name:  "admin approval implies write and read",
			setup: pairAs("operator", []string{"operator.admin"}),
			conn: func(t testing.TB, d device) pairing.ConnectInfo {
				return info(d, "operator", []string{"operator.write"})
			},
			want: want{outcome: pairing.Paired, scopes: []string{"operator.read", "operator.write"}},
		},
		{
			name:  "broader scopes: scope-upgrade, never silent even locally",
			setup: pairAs("operator", readScopes),
			conn: func(t testing.TB, d device) pairing.ConnectInfo {
				return local(info(d, "operator", []string{"operator.admin"}))
			},
			want: want{outcome: pairing.PendingRequired, reason: pairing.ReasonScopeUpgrade, repair: true},
		},
		{
			name:  "new role: role-upgrade, never silent even locally",
			setup: pairAs("operator", readScopes),
			conn:  func(t testing.TB, d device) pairing.ConnectInfo { return local(info(d, "node", nil)) },
			want:  want{outcome: pairing.PendingRequired, reason: pairing.ReasonRoleUpgrade, repair: true},
		},
		{
			name:  "revoked role: role-upgrade",
			setup: func(e *env, d device) { pairAs("operator", readScopes)(e, d); revoke(e, d, "operator") },
			conn:  func(t testing.TB, d device) pairing.ConnectInfo { return info(d, "operator", readScopes) },
			want:  want{outcome: pairing.PendingRequired, reason: pairing.ReasonRoleUpgrade, repair: true},
		},
		{
			name:  "other platform: metadata-upgrade, never silent",
			setup: pairAs("operator", readScopes),
			conn: func(t testing.TB, d device) pairing.ConnectInfo {
				ci := local(info(d, "operator", readScopes))
				ci.Platform = "darwin"
				return ci
			},
			want: want{outcome: pairing.PendingRequired, reason: pairing.ReasonMetadataUpgrade, repair: true},
		},
		{
			name:  "other device family: metadata-upgrade",
			setup: pairAs("operator", readScopes),
			conn: func(t testing.TB, d device) pairing.ConnectInfo {
				ci := info(d, "operator", readScopes)
				ci.DeviceFamily = "iPhone"
				return ci
			},
			want: want{outcome: pairing.PendingRequired, reason: pairing.ReasonMetadataUpgrade, repair: true},
		},
		{
			name:  "platform differing only in ASCII case and space: paired",
			setup: pairAs("operator", readScopes),
			conn: func(t testing.TB, d device) pairing.ConnectInfo {
				ci := info(d, "operator", readScopes)
				ci.Platform = " LINUX "
				return ci
			},
			want: want{outcome: pairing.Paired, scopes: readScopes},
		},
		{
			name:  "B4 different key for a paired deviceId: not-paired, never silent",
			setup: pairAs("operator", readScopes),
			conn: func(t testing.TB, d device) pairing.ConnectInfo {
				return local(info(d.withKey(t), "operator", readScopes))
			},
			want: want{outcome: pairing.PendingRequired, reason: pairing.ReasonNotPaired, repair: true},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			d := newDevice(t)
			if c.setup != nil {
				c.setup(e, d)
			}
			ci := c.conn(t, d)
			got := e.check(ci)
			if got.Outcome != c.want.outcome || got.Reason != c.want.reason {
				t.Fatalf("Check = %v/%q, want %v/%q", got.Outcome, got.Reason, c.want.outcome, c.want.reason)
			}
			switch got.Outcome {
			case pairing.Paired, pairing.ApprovedSilently:
				if !slices.Equal(got.Scopes, c.want.scopes) || got.Device == nil || got.Platform != "linux" {
					t.Errorf("effective scopes %v, platform %q, device %v; want %v, linux", got.Scopes, got.Platform, got.Device != nil, c.want.scopes)
				}
			case pairing.PendingRequired:
				if got.Request == nil || got.Request.Silent != c.want.silent || got.Request.IsRepair != c.want.repair || !got.Created {
					t.Errorf("request %+v created %v; want silent %v repair %v created", got.Request, got.Created, c.want.silent, c.want.repair)
				}
				if got.ExpiresAtMs != got.Request.TS+(5*time.Minute).Milliseconds() {
					t.Errorf("ExpiresAtMs = %d, want ts+5min", got.ExpiresAtMs)
				}
			}
			if got.Outcome == pairing.ApprovedSilently {
				if got.Resolved == nil || got.Resolved.Decision != "approved" || got.Resolved.RequestID != got.Request.RequestID || got.Resolved.DeviceID != d.id {
					t.Errorf("resolved payload %+v", got.Resolved)
				}
				if e.pendingCount() != 0 {
					t.Errorf("a silent approval left a pending request")
				}
			}
		})
	}
}

func pairAs(role string, scopes []string) func(*env, device) {
	return func(e *env, d device) { e.pair(d, role, scopes) }
}

func revoke(e *env, d device, role string) {
	if _, err := e.m.RevokeToken(d.id, role, admin); err != nil {
		e.t.Fatal(err)
	}
}

// TestPairedConnectDoesNotWrite: a paired connect (Check + verify + ensure)
// costs no write transaction, hence no fsync.
func TestPairedConnectDoesNotWrite(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	tok := e.pair(d, "operator", readScopes)
	before := e.st.updates.Load()
	for i := 0; i < 20; i++ {
		ci := info(d, "operator", readScopes)
		ci.RemoteIP = "192.0.2.99" // changed metadata is remembered, not written
		if err := e.m.VerifyDeviceToken(d.id, "operator", tok, readScopes); err != nil {
			t.Fatal(err)
		}
		if dec := e.check(ci); dec.Outcome != pairing.Paired {
			t.Fatalf("Check = %v", dec.Outcome)
		}
		if _, _, minted, err := e.m.EnsureToken(d.id, "operator", readScopes); err != nil || minted {
			t.Fatalf("EnsureToken minted %v, %v", minted, err)
		}
	}
	if n := e.st.updates.Load() - before; n != 0 {
		t.Fatalf("paired connects ran %d write transactions, want 0", n)
	}
	// Flush writes last use and metadata, once.
	e.clock.Advance(time.Second)
	if err := e.m.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := e.st.updates.Load() - before; n != 1 {
		t.Fatalf("Flush ran %d write transactions, want 1", n)
	}
	rec, _ := e.stored(d.id)
	if rec.Tokens["operator"].LastUsedAtMs == 0 || rec.RemoteIP != "192.0.2.99" {
		t.Errorf("after flush: lastUsed %d, remoteIp %q", rec.Tokens["operator"].LastUsedAtMs, rec.RemoteIP)
	}
	if err := e.m.Flush(); err != nil || e.st.updates.Load()-before != 1 {
		t.Errorf("empty Flush wrote: %v", err)
	}
}

func TestLastUsedIsLazyAndShownByList(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	tok := e.pair(d, "operator", readScopes)
	e.clock.Advance(time.Minute)
	if err := e.m.VerifyDeviceToken(d.id, "operator", tok, nil); err != nil {
		t.Fatal(err)
	}
	usedAt := e.clock.Now().UnixMilli()
	if rec, _ := e.stored(d.id); rec.Tokens["operator"].LastUsedAtMs != 0 {
		t.Errorf("lastUsedAtMs persisted on the connect path")
	}
	l, err := e.m.List()
	if err != nil || len(l.Paired) != 1 || l.Paired[0].Tokens[0].LastUsedAtMs != usedAt {
		t.Fatalf("List does not show the in-memory last use: %+v, %v", l.Paired, err)
	}
	// Close flushes.
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if rec, _ := e.stored(d.id); rec.Tokens["operator"].LastUsedAtMs != usedAt {
		t.Errorf("Close did not flush lastUsedAtMs")
	}
	if _, err := e.m.List(); !errors.Is(err, pairing.ErrClosed) {
		t.Errorf("List after Close = %v, want ErrClosed", err)
	}
	if err := e.m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestLastUsedNotAppliedToRotatedToken(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	tok := e.pair(d, "operator", readScopes)
	if err := e.m.VerifyDeviceToken(d.id, "operator", tok, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.RotateToken(d.id, "operator", nil, admin); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Flush(); err != nil {
		t.Fatal(err)
	}
	if rec, _ := e.stored(d.id); rec.Tokens["operator"].LastUsedAtMs != 0 {
		t.Errorf("old token's last use landed on the rotated token")
	}
}

func TestBackgroundFlush(t *testing.T) {
	e := newEnv(t, func(o *pairing.Options) { o.FlushInterval = 20 * time.Millisecond })
	d := newDevice(t)
	tok := e.pair(d, "operator", readScopes)
	if err := e.m.VerifyDeviceToken(d.id, "operator", tok, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if rec, _ := e.stored(d.id); rec.Tokens["operator"].LastUsedAtMs != 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("background flush never wrote lastUsedAtMs")
}

// TestPendingRequests pins the pending-request rules: refresh keeps id and
// ts, a different snapshot replaces under a new id, TTL, expiry.
func TestPendingRequests(t *testing.T) {
	t.Run("same snapshot refreshes, keeping requestId and ts", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		first := e.check(info(d, "operator", readScopes))
		e.clock.Advance(time.Minute)
		ci := info(d, "operator", readScopes)
		ci.DisplayName = "renamed"
		again := e.check(ci)
		if again.Created || again.Request.RequestID != first.Request.RequestID || again.Request.TS != first.Request.TS {
			t.Fatalf("retry: created %v id %s ts %d; want same id %s ts %d", again.Created, again.Request.RequestID, again.Request.TS, first.Request.RequestID, first.Request.TS)
		}
		if again.Request.DisplayName != "renamed" {
			t.Errorf("display name not refreshed")
		}
		if again.ExpiresAtMs != e.clock.Now().UnixMilli()+(5*time.Minute).Milliseconds() {
			t.Errorf("TTL does not run from the last retry")
		}
		if e.pendingCount() != 1 {
			t.Errorf("pending count %d, want 1", e.pendingCount())
		}
	})
	t.Run("narrower retry refreshes", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		first := e.check(info(d, "operator", []string{"operator.write"}))
		again := e.check(info(d, "operator", readScopes))
		if again.Created || again.Request.RequestID != first.Request.RequestID {
			t.Fatalf("narrower retry replaced the request")
		}
	})
	t.Run("different snapshot replaces under a new id, merged", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		first := e.check(info(d, "operator", readScopes))
		e.clock.Advance(time.Second)
		second := e.check(info(d, "operator", []string{"operator.approvals"}))
		if !second.Created || second.Request.RequestID == first.Request.RequestID {
			t.Fatalf("replacement: created %v, same id %v", second.Created, second.Request.RequestID == first.Request.RequestID)
		}
		if !slices.Equal(second.Superseded, []string{first.Request.RequestID}) {
			t.Errorf("Superseded = %v", second.Superseded)
		}
		if !slices.Equal(second.Request.Scopes, []string{"operator.approvals", "operator.read"}) {
			t.Errorf("merged scopes = %v", second.Request.Scopes)
		}
		if _, err := e.m.Approve(first.Request.RequestID, admin); !errors.Is(err, pairing.ErrNotFound) {
			t.Errorf("approving the superseded id = %v, want ErrNotFound", err)
		}
		if e.pendingCount() != 1 {
			t.Errorf("pending count %d, want 1", e.pendingCount())
		}
	})
	t.Run("role added replaces with both roles", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		e.check(info(d, "operator", readScopes))
		second := e.check(info(d, "node", nil))
		if !slices.Equal(second.Request.Roles, []string{"node", "operator"}) || second.Request.Role != "node" {
			t.Errorf("roles = %v role %q", second.Request.Roles, second.Request.Role)
		}
	})
	t.Run("another key replaces without merging", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		e.check(info(d, "operator", []string{"operator.admin"}))
		other := e.check(info(d.withKey(t), "operator", readScopes))
		if !other.Created || !slices.Equal(other.Request.Scopes, readScopes) {
			t.Errorf("other key's request = %+v", other.Request)
		}
	})
	t.Run("expires after the TTL", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		id := e.request(d, "operator", readScopes)
		e.clock.Advance(5*time.Minute + time.Millisecond)
		l, err := e.m.List()
		if err != nil || len(l.Pending) != 0 {
			t.Fatalf("expired request listed: %+v %v", l.Pending, err)
		}
		if err := e.m.PurgeExpired(); err != nil {
			t.Fatal(err)
		}
		if e.pendingCount() != 0 {
			t.Errorf("expired request not purged")
		}
		if _, err := e.m.Approve(id, admin); !errors.Is(err, pairing.ErrNotFound) {
			t.Errorf("Approve expired = %v, want ErrNotFound", err)
		}
		// A new connect creates a fresh request.
		if dec := e.check(info(d, "operator", readScopes)); !dec.Created || dec.Request.RequestID == id {
			t.Errorf("connect after expiry: %+v", dec)
		}
	})
	t.Run("interactive stays interactive on a local retry", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		e.check(info(d, "operator", readScopes))
		if dec := e.check(local(info(d, "operator", readScopes))); dec.Outcome != pairing.PendingRequired {
			t.Errorf("local retry of a remote request: %v, want pending", dec.Outcome)
		}
	})
}

// TestPendingCaps bounds pending requests per client key and in total.
func TestPendingCaps(t *testing.T) {
	e := newEnv(t, func(o *pairing.Options) { o.MaxPendingPerClient = 3; o.MaxPending = 5 })
	fromIP := func(ip string) pairing.ConnectInfo {
		ci := info(newDevice(t), "operator", readScopes)
		ci.RemoteIP = ip
		return ci
	}
	var firstA pairing.ConnectInfo
	for i := 0; i < 3; i++ {
		ci := fromIP("192.0.2.1")
		if i == 0 {
			firstA = ci
		}
		e.check(ci)
	}
	if _, err := e.m.Check(fromIP("192.0.2.1")); !errors.Is(err, pairing.ErrTooManyPending) {
		t.Fatalf("4th from one client = %v, want ErrTooManyPending", err)
	}
	// A retry of a device already pending is not a new request.
	if dec := e.check(firstA); dec.Created {
		t.Errorf("retry at the cap created a request")
	}
	// Another client key has its own allowance, up to the total cap.
	e.check(fromIP("192.0.2.2"))
	e.check(fromIP("192.0.2.3"))
	if _, err := e.m.Check(fromIP("192.0.2.4")); !errors.Is(err, pairing.ErrTooManyPending) {
		t.Fatalf("beyond the total cap = %v, want ErrTooManyPending", err)
	}
	// ClientKey overrides the remote address.
	ci := fromIP("192.0.2.1")
	ci.ClientKey = "tailnet:node-7"
	if _, err := e.m.Check(ci); !errors.Is(err, pairing.ErrTooManyPending) {
		t.Errorf("total cap not applied to another client key")
	}
	if n := e.pendingCount(); n != 5 {
		t.Errorf("pending count %d, want 5", n)
	}
	// Expiry frees room.
	e.clock.Advance(6 * time.Minute)
	e.check(fromIP("192.0.2.1"))
}

func TestCheckRejectsMalformedInput(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	many := make([]string, 40)
	for i := range many {
		many[i] = "operator.read"
	}
	cases := map[string]pairing.ConnectInfo{
		"upper-case device id": {DeviceID: "ABCDEF" + d.id[6:], PublicKey: d.pk},
		"short device id":      {DeviceID: d.id[:10], PublicKey: d.pk},
		"bad public key":       {DeviceID: d.id, PublicKey: "not-a-key"},
		"unknown role":         {DeviceID: d.id, PublicKey: d.pk, Role: "root"},
		"too many scopes":      {DeviceID: d.id, PublicKey: d.pk, Scopes: many},
		"control chars":        {DeviceID: d.id, PublicKey: d.pk, Scopes: []string{"operator.read\n"}},
	}
	for name, ci := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := e.m.Check(ci); !errors.Is(err, pairing.ErrInvalid) {
				t.Errorf("Check = %v, want ErrInvalid", err)
			}
		})
	}
	if e.pendingCount() != 0 {
		t.Errorf("malformed connects stored requests")
	}
}

// TestMetadataUpgradeRepins: approving a metadata-upgrade pins the new
// platform; the old one then needs approval in turn.
func TestMetadataUpgradeRepins(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	tok := e.pair(d, "operator", readScopes)
	ci := info(d, "operator", readScopes)
	ci.Platform = "darwin"
	dec := e.check(ci)
	if dec.Reason != pairing.ReasonMetadataUpgrade {
		t.Fatalf("reason %q", dec.Reason)
	}
	res := mustApprove(e, dec.Request.RequestID)
	if res.KeyChanged || res.Device.Platform != "darwin" {
		t.Fatalf("approve: %+v", res)
	}
	if got := e.check(ci); got.Outcome != pairing.Paired || got.Platform != "darwin" {
		t.Errorf("after re-pin: %v %q", got.Outcome, got.Platform)
	}
	if got := e.check(info(d, "operator", readScopes)); got.Reason != pairing.ReasonMetadataUpgrade {
		t.Errorf("old platform after re-pin: %q", got.Reason)
	}
	if err := e.m.VerifyDeviceToken(d.id, "operator", tok, readScopes); err != nil {
		t.Errorf("token after re-pin: %v", err)
	}
	if got, err := e.m.Device(d.id); err != nil || got.Platform != "darwin" {
		t.Errorf("Device = %+v, %v", got, err)
	}
	if _, err := e.m.Device(newDevice(t).id); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("Device(unknown) = %v", err)
	}
}
