package pairing_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/store"
)

// TestVerifyDeviceToken pins protocol §3.4 verification, including attack
// rows C3 (revoked), C5 (bound to device and role) and B11 (removed).
func TestVerifyDeviceToken(t *testing.T) {
	type fixture struct {
		e        *env
		d, other device
		tok      string // d's operator token, scopes read+write
		otherTok string
	}
	setup := func(t *testing.T) fixture {
		e := newEnv(t)
		f := fixture{e: e, d: newDevice(t), other: newDevice(t)}
		f.tok = e.pair(f.d, "operator", []string{"operator.write"})
		f.otherTok = e.pair(f.other, "operator", []string{"operator.write"})
		id := e.request(f.d, "node", nil)
		mustApprove(e, id)
		return f
	}
	cases := []struct {
		name    string
		prepare func(f fixture)
		device  func(f fixture) string
		role    string
		token   func(f fixture) string
		scopes  []string
		want    error
	}{
		{name: "valid", role: "operator", scopes: []string{"operator.write"}},
		{name: "valid, implied read", role: "operator", scopes: []string{"operator.read"}},
		{name: "valid, no scopes", role: "", scopes: nil},
		{name: "wrong token", role: "operator", token: func(fixture) string { return strings.Repeat("A", 43) }, want: pairing.ErrTokenMismatch},
		{name: "empty token", role: "operator", token: func(fixture) string { return "" }, want: pairing.ErrTokenMismatch},
		{name: "huge token", role: "operator", token: func(fixture) string { return strings.Repeat("A", 4096) }, want: pairing.ErrTokenMismatch},
		{name: "C5 another device's token", role: "operator", token: func(f fixture) string { return f.otherTok }, want: pairing.ErrTokenMismatch},
		{name: "C5 token presented for another device", role: "operator", device: func(f fixture) string { return f.other.id }, want: pairing.ErrTokenMismatch},
		{name: "C5 token presented for another role", role: "node", want: pairing.ErrTokenMismatch},
		{name: "unknown device", role: "operator", device: func(fixture) string { return strings.Repeat("0", 64) }, want: pairing.ErrTokenMismatch},
		{name: "C3 revoked", role: "operator", prepare: func(f fixture) { revoke(f.e, f.d, "operator") }, want: pairing.ErrTokenMismatch},
		{name: "B11 removed device", role: "operator", prepare: func(f fixture) {
			if _, err := f.e.m.Remove(f.d.id, admin); err != nil {
				f.e.t.Fatal(err)
			}
		}, want: pairing.ErrTokenMismatch},
		{name: "scopes beyond the token", role: "operator", scopes: []string{"operator.admin"}, want: pairing.ErrScopeMismatch},
		{name: "token scopes beyond the approved baseline", role: "operator", prepare: func(f fixture) {
			tamper(f.e, f.d.id, func(d *store.PairedDevice) { d.ApprovedScopes = []string{"operator.read"} })
		}, want: pairing.ErrScopeMismatch},
		{name: "role dropped from the approval", role: "operator", prepare: func(f fixture) {
			tamper(f.e, f.d.id, func(d *store.PairedDevice) { d.Roles = []string{"node"} })
		}, want: pairing.ErrTokenMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := setup(t)
			if c.prepare != nil {
				c.prepare(f)
			}
			id, tok := f.d.id, f.tok
			if c.device != nil {
				id = c.device(f)
			}
			if c.token != nil {
				tok = c.token(f)
			}
			err := f.e.m.VerifyDeviceToken(id, c.role, tok, c.scopes)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("VerifyDeviceToken = %v, want %v", err, c.want)
			}
			if err != nil && (strings.Contains(err.Error(), f.tok) || strings.Contains(err.Error(), tok) && tok != "") {
				t.Errorf("error text contains the token")
			}
		})
	}
	t.Run("approved but never issued token does not verify", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		mustApprove(e, e.request(d, "operator", readScopes))
		rec, _ := e.stored(d.id)
		if rec.Tokens["operator"].Digest.IsZero() || rec.Tokens["operator"].IssuedAtMs != 0 {
			t.Fatalf("approval did not store an unissued token record")
		}
		if err := e.m.VerifyDeviceToken(d.id, "operator", "", nil); !errors.Is(err, pairing.ErrTokenMismatch) {
			t.Errorf("= %v", err)
		}
	})
}

// tamper rewrites a stored record directly (simulating state the API would
// never produce).
func tamper(e *env, id string, fn func(*store.PairedDevice)) {
	e.t.Helper()
	err := e.db.UpdatePairing(func(tx store.PairingTx) error {
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		fn(&d)
		return tx.PutDevice(d)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestEnsureToken pins when a token is minted and when not.
func TestEnsureToken(t *testing.T) {
	t.Run("not paired", func(t *testing.T) {
		e := newEnv(t)
		if _, _, _, err := e.m.EnsureToken(newDevice(t).id, "operator", nil); !errors.Is(err, pairing.ErrNotPaired) {
			t.Errorf("= %v, want ErrNotPaired", err)
		}
	})
	t.Run("role not approved", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		e.pair(d, "operator", readScopes)
		if _, _, _, err := e.m.EnsureToken(d.id, "node", nil); !errors.Is(err, pairing.ErrNotPaired) {
			t.Errorf("= %v, want ErrNotPaired", err)
		}
	})
	t.Run("scopes beyond the baseline", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		e.pair(d, "operator", readScopes)
		if _, _, _, err := e.m.EnsureToken(d.id, "operator", []string{"operator.write"}); !errors.Is(err, pairing.ErrScopeMismatch) {
			t.Errorf("= %v, want ErrScopeMismatch", err)
		}
	})
	t.Run("first connect after approval mints; later ones do not", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		mustApprove(e, e.request(d, "operator", readScopes))
		tok, issued, minted, err := e.m.EnsureToken(d.id, "operator", readScopes)
		if err != nil || !minted || len(tok) != 43 || issued != e.clock.Now().UnixMilli() {
			t.Fatalf("= %q %d %v %v", tok, issued, minted, err)
		}
		before := e.st.updates.Load()
		tok2, issued2, minted2, err := e.m.EnsureToken(d.id, "operator", nil)
		if err != nil || minted2 || tok2 != "" || issued2 != issued {
			t.Fatalf("second = %q %d %v %v", tok2, issued2, minted2, err)
		}
		if e.st.updates.Load() != before {
			t.Errorf("covered EnsureToken wrote")
		}
		if err := e.m.VerifyDeviceToken(d.id, "operator", tok, readScopes); err != nil {
			t.Errorf("minted token: %v", err)
		}
		rec, _ := e.stored(d.id)
		if rec.Tokens["operator"].RotatedAtMs != 0 {
			t.Errorf("first issue counted as a rotation")
		}
	})
	t.Run("silent approval, then the first token", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		dec := e.check(local(info(d, "operator", []string{"operator.admin"})))
		if dec.Outcome != pairing.ApprovedSilently {
			t.Fatalf("Check = %v", dec.Outcome)
		}
		tok, _, minted, err := e.m.EnsureToken(d.id, dec.Role, dec.Scopes)
		if err != nil || !minted {
			t.Fatalf("EnsureToken = %v, %v", minted, err)
		}
		if err := e.m.VerifyDeviceToken(d.id, "operator", tok, []string{"operator.admin"}); err != nil {
			t.Errorf("token: %v", err)
		}
	})
	t.Run("narrow token, wider request within baseline: re-mint with the union", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		e.pair(d, "operator", []string{"operator.write", "operator.approvals"})
		rot, err := e.m.RotateToken(d.id, "operator", []string{"operator.approvals"}, admin)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, minted, err := e.m.EnsureToken(d.id, "operator", []string{"operator.write"})
		if err != nil || !minted {
			t.Fatalf("= %v %v", minted, err)
		}
		rec, _ := e.stored(d.id)
		want := []string{"operator.approvals", "operator.read", "operator.write"}
		if got := rec.Tokens["operator"].Scopes; !slices.Equal(got, want) || rec.Tokens["operator"].RotatedAtMs == 0 {
			t.Errorf("scopes %v rotated %d, want %v and a rotation", got, rec.Tokens["operator"].RotatedAtMs, want)
		}
		if err := e.m.VerifyDeviceToken(d.id, "operator", rot.Token, nil); !errors.Is(err, pairing.ErrTokenMismatch) {
			t.Errorf("replaced token still verifies")
		}
		if err := e.m.VerifyDeviceToken(d.id, "operator", tok, []string{"operator.write", "operator.approvals"}); err != nil {
			t.Errorf("new token: %v", err)
		}
	})
	t.Run("concurrent first connects mint exactly one token", func(t *testing.T) {
		e := newEnv(t)
		d := newDevice(t)
		mustApprove(e, e.request(d, "operator", readScopes))
		toks := runConcurrently(50, func(int) (string, error) {
			tok, _, _, err := e.m.EnsureToken(d.id, "operator", readScopes)
			return tok, err
		})
		if len(toks) != 1 {
			t.Fatalf("%d tokens minted, want 1", len(toks))
		}
		for tok := range toks {
			if err := e.m.VerifyDeviceToken(d.id, "operator", tok, readScopes); err != nil {
				t.Errorf("the minted token: %v", err)
			}
		}
	})
}

// TestSecretsNeverPrinted: results and errors never carry tokens; the one
// returned token is redacted under fmt and slog.
func TestSecretsNeverPrinted(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	e.pair(d, "operator", readScopes)
	res, err := e.m.RotateToken(d.id, "operator", nil, admin)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("rotated", "result", res)
	for _, s := range []string{fmt.Sprint(res), fmt.Sprintf("%+v", res), fmt.Sprintf("%#v", res), fmt.Sprintf("%v", &res), logs.String()} {
		if strings.Contains(s, res.Token) {
			t.Errorf("token printed: %s", s)
		}
	}
	rec, _ := e.stored(d.id)
	hexDigest, _ := rec.Tokens["operator"].Digest.MarshalText()
	for _, s := range []string{fmt.Sprint(rec), fmt.Sprintf("%+v", rec), fmt.Sprintf("%#v", rec)} {
		if strings.Contains(s, string(hexDigest)) {
			t.Errorf("digest printed: %s", s)
		}
	}
}

// TestCheckVerifiesDeviceToken: Check with ConnectInfo.DeviceToken refuses
// exactly what VerifyDeviceToken refuses, before deciding or writing
// anything, and on success decides in the same single read.
func TestCheckVerifiesDeviceToken(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	tok := e.pair(d, "operator", []string{"operator.write"})
	other := newDevice(t)
	otherTok := e.pair(other, "operator", readScopes)
	with := func(ci pairing.ConnectInfo, token string) pairing.ConnectInfo {
		ci.DeviceToken, ci.IssueToken = token, true
		return ci
	}
	for _, tc := range []struct {
		name string
		ci   pairing.ConnectInfo
		want error
	}{
		{"wrong token", with(info(d, "operator", readScopes), tok+"x"), pairing.ErrTokenMismatch},
		{"another device's token", with(info(d, "operator", readScopes), otherTok), pairing.ErrTokenMismatch},
		{"role without a token", with(info(d, "node", nil), tok), pairing.ErrTokenMismatch},
		{"beyond the token's scopes", with(info(d, "operator", []string{"operator.admin"}), tok), pairing.ErrScopeMismatch},
		{"malformed scope", with(info(d, "operator", []string{"operator.read\x01"}), tok), pairing.ErrScopeMismatch},
		{"unknown device", with(info(newDevice(t), "operator", readScopes), tok), pairing.ErrTokenMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			role, scopes := tc.ci.Role, tc.ci.Scopes
			verr := e.m.VerifyDeviceToken(tc.ci.DeviceID, role, tc.ci.DeviceToken, scopes)
			before, pending := e.st.updates.Load(), e.pendingCount()
			_, err := e.m.Check(tc.ci)
			if !errors.Is(err, pairing.ErrTokenUnverified) || !errors.Is(err, tc.want) || !errors.Is(verr, tc.want) {
				t.Fatalf("Check = %v, VerifyDeviceToken = %v; want both %v", err, verr, tc.want)
			}
			if e.st.updates.Load() != before || e.pendingCount() != pending {
				t.Error("a refused token wrote")
			}
			if strings.Contains(err.Error(), tc.ci.DeviceToken) {
				t.Error("the error contains the token")
			}
		})
	}

	ci := with(info(d, "operator", readScopes), tok)
	views, before := e.st.views.Load(), e.st.updates.Load()
	dec, err := e.m.Check(ci)
	if err != nil || dec.Outcome != pairing.Paired || dec.Token.Token != "" {
		t.Fatalf("Check with a good token = %v, %v", dec.Outcome, err)
	}
	if n := e.st.views.Load() - views; n != 1 || e.st.updates.Load() != before {
		t.Errorf("a paired connect with its token took %d reads and %d writes, want 1 and 0", n, e.st.updates.Load()-before)
	}
	// A token that verifies, on a connect that needs approval, gets the
	// pairing decision (here a metadata upgrade), not a token error.
	up := with(info(d, "operator", readScopes), tok)
	up.Platform = "windows"
	if dec, err := e.m.Check(up); err != nil || dec.Outcome != pairing.PendingRequired || dec.Reason != pairing.ReasonMetadataUpgrade {
		t.Errorf("metadata upgrade with a good token = %v %v, %v", dec.Outcome, dec.Reason, err)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", ci, ci, ci, ci); strings.Contains(s, tok) {
		t.Errorf("ConnectInfo prints its token: %s", s)
	}
	if _, err := e.m.RevokeToken(d.id, "operator", admin); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Check(ci); !errors.Is(err, pairing.ErrTokenUnverified) || !errors.Is(err, pairing.ErrTokenMismatch) {
		t.Errorf("revoked token: %v", err)
	}
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Check(ci); !errors.Is(err, pairing.ErrTokenUnverified) || !errors.Is(err, pairing.ErrClosed) {
		t.Errorf("closed manager: %v", err)
	}
}
