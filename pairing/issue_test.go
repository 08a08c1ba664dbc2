package pairing_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/store"
)

// issuing is a local first connect that asks for its token in the same
// transaction as the silent approval (the gateway's hello-ok path).
func issuing(d device, role string, scopes []string) pairing.ConnectInfo {
	ci := local(info(d, role, scopes))
	ci.IssueToken = true
	return ci
}

// TestSilentApprovalIssuesToken: a new local device is approved and gets
// its token in one write transaction; the token verifies for what was
// asked, is stored as issued (so EnsureToken mints no second one), and
// stays within the approved baseline.
func TestSilentApprovalIssuesToken(t *testing.T) {
	for _, tc := range []struct {
		role   string
		scopes []string
	}{
		{"operator", readScopes},
		{"operator", []string{"operator.admin"}},
		{"node", nil},
	} {
		t.Run(tc.role+fmt.Sprint(tc.scopes), func(t *testing.T) {
			e := newEnv(t)
			d := newDevice(t)
			before := e.st.updates.Load()
			dec := e.check(issuing(d, tc.role, tc.scopes))
			if n := e.st.updates.Load() - before; n != 1 {
				t.Errorf("approval and token took %d write transactions, want 1", n)
			}
			now := e.clock.Now().UnixMilli()
			if dec.Outcome != pairing.ApprovedSilently || len(dec.Token.Token) != 43 || dec.Token.IssuedAtMs != now {
				t.Fatalf("Check = %v, token %d chars issued at %d", dec.Outcome, len(dec.Token.Token), dec.Token.IssuedAtMs)
			}
			if err := e.m.VerifyDeviceToken(d.id, tc.role, dec.Token.Token, tc.scopes); err != nil {
				t.Errorf("issued token: %v", err)
			}
			rec, err := e.stored(d.id)
			if err != nil {
				t.Fatal(err)
			}
			checkNotHalfPaired(t, rec)
			stored := rec.Tokens[tc.role]
			if stored.IssuedAtMs != now || !stored.Digest.Equal(store.DigestToken(dec.Token.Token)) {
				t.Errorf("stored token: issued %d, digest matches %v", stored.IssuedAtMs, stored.Digest.Equal(store.DigestToken(dec.Token.Token)))
			}
			if !slices.Equal(rec.Roles, []string{tc.role}) {
				t.Errorf("roles %v, want only %s", rec.Roles, tc.role)
			}
			tok, issued, minted, err := e.m.EnsureToken(d.id, tc.role, tc.scopes)
			if err != nil || minted || tok != "" || issued != now {
				t.Errorf("EnsureToken after = %q %d %v %v, want nothing minted", tok, issued, minted, err)
			}
			// Reconnecting is a paired connect: no token, no write.
			before = e.st.updates.Load()
			if again := e.check(issuing(d, tc.role, tc.scopes)); again.Outcome != pairing.Paired || again.Token.Token != "" {
				t.Errorf("reconnect = %v with token %v", again.Outcome, again.Token.Token != "")
			}
			if e.st.updates.Load() != before {
				t.Error("paired reconnect wrote")
			}
		})
	}
}

// TestIssueTokenOnlyOnSilentApproval: IssueToken never yields a token
// for a connect that needs an operator (a paired device that holds one
// gets none either: TestIssueTokenOnPairedConnect), and without it the
// silent approval leaves the token to EnsureToken as before.
func TestIssueTokenOnlyOnSilentApproval(t *testing.T) {
	e := newEnv(t)
	remote := info(newDevice(t), "operator", readScopes)
	remote.IssueToken = true
	if dec := e.check(remote); dec.Outcome != pairing.PendingRequired || dec.Token.Token != "" {
		t.Errorf("remote new device = %v, token %v", dec.Outcome, dec.Token.Token != "")
	}
	d := newDevice(t)
	e.pair(d, "operator", readScopes)
	for _, ci := range []pairing.ConnectInfo{
		issuing(d, "operator", []string{"operator.admin"}), // scope-upgrade
		issuing(d, "node", nil),                            // role-upgrade
		issuing(d.withKey(t), "operator", readScopes),      // another key
	} {
		if dec := e.check(ci); dec.Outcome != pairing.PendingRequired || dec.Token.Token != "" {
			t.Errorf("%s %v = %v, token %v", ci.Role, ci.Scopes, dec.Outcome, dec.Token.Token != "")
		}
	}
	plain := newDevice(t)
	dec := e.check(local(info(plain, "operator", readScopes)))
	if dec.Outcome != pairing.ApprovedSilently || dec.Token.Token != "" {
		t.Fatalf("without IssueToken = %v, token %v", dec.Outcome, dec.Token.Token != "")
	}
	if tok, _, minted, err := e.m.EnsureToken(plain.id, "operator", readScopes); err != nil || !minted || tok == "" {
		t.Errorf("EnsureToken after a plain silent approval = minted %v, %v", minted, err)
	}
}

// TestConcurrentNewDevicesShareCommits: many new local devices at once
// each get their own working token; one device connecting 50 times at once
// gets exactly one token in all.
func TestConcurrentNewDevicesShareCommits(t *testing.T) {
	e := newEnv(t)
	devs := make([]device, 50)
	for i := range devs {
		devs[i] = newDevice(t)
	}
	toks := runConcurrently(len(devs), func(i int) (string, error) {
		dec, err := e.m.Check(issuing(devs[i], "operator", readScopes))
		if err != nil {
			return "", err
		}
		if dec.Outcome != pairing.ApprovedSilently {
			return "", fmt.Errorf("outcome %v", dec.Outcome)
		}
		return devs[i].id + " " + dec.Token.Token, nil
	})
	if len(toks) != len(devs) {
		t.Fatalf("%d of %d devices got a token", len(toks), len(devs))
	}
	for s := range toks {
		id, tok, _ := strings.Cut(s, " ")
		if err := e.m.VerifyDeviceToken(id, "operator", tok, readScopes); err != nil {
			t.Errorf("%s: %v", id[:8], err)
		}
	}

	d := newDevice(t)
	var mu sync.Mutex
	outcomes := map[pairing.Outcome]int{}
	same := runConcurrently(50, func(int) (string, error) {
		dec, err := e.m.Check(issuing(d, "operator", readScopes))
		if err != nil {
			return "", err
		}
		mu.Lock()
		outcomes[dec.Outcome]++
		mu.Unlock()
		if dec.Token.Token != "" {
			return dec.Token.Token, nil
		}
		tok, _, _, err := e.m.EnsureToken(d.id, "operator", dec.Scopes)
		return tok, err
	})
	if len(same) != 1 || outcomes[pairing.ApprovedSilently] != 1 || outcomes[pairing.Paired] != 49 {
		t.Fatalf("one device, 50 connects: %d tokens, outcomes %v; want 1 token, 1 approval, 49 paired", len(same), outcomes)
	}
	for tok := range same {
		if err := e.m.VerifyDeviceToken(d.id, "operator", tok, readScopes); err != nil {
			t.Errorf("the token: %v", err)
		}
	}
	if n := e.pendingCount(); n != 0 {
		t.Errorf("%d pending requests left", n)
	}
}

// faultStore runs every BatchPairing fn once in a transaction it rolls
// back (as a shared transaction does when another caller fails) and then,
// unless failCommit, for real; with failCommit the real run is rolled back
// too and the call fails as a failed commit would.
type faultStore struct {
	*countingStore
	failCommit bool
}

var errInjected = errors.New("injected commit failure")

func (f *faultStore) BatchPairing(fn func(store.PairingTx) error) error {
	err := f.countingStore.BatchPairing(func(tx store.PairingTx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errInjected
	})
	if !errors.Is(err, errInjected) || f.failCommit {
		return err
	}
	return f.countingStore.BatchPairing(fn)
}

// TestSilentApprovalRetriedOrFailed: when Check's transaction is run again
// the results are those of the run that committed; when the commit fails
// nothing is stored and no token is returned.
func TestSilentApprovalRetriedOrFailed(t *testing.T) {
	e := newEnv(t)
	fs := &faultStore{countingStore: e.st}
	m, err := pairing.New(fs, pairing.Options{Now: e.clock.Now, FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	d := newDevice(t)
	dec, err := m.Check(issuing(d, "operator", readScopes))
	if err != nil || dec.Outcome != pairing.ApprovedSilently {
		t.Fatalf("Check after a retry = %v, %v", dec.Outcome, err)
	}
	if err := m.VerifyDeviceToken(d.id, "operator", dec.Token.Token, readScopes); err != nil {
		t.Errorf("token of the committed run: %v", err)
	}
	if dec.Resolved == nil || dec.Request == nil || dec.Resolved.RequestID != dec.Request.RequestID {
		t.Errorf("resolved %+v for request %+v", dec.Resolved, dec.Request)
	}
	// Pending requests too: the one returned is the one stored.
	r := newDevice(t)
	pend, err := m.Check(info(r, "operator", readScopes))
	if err != nil || pend.Outcome != pairing.PendingRequired {
		t.Fatalf("remote Check = %v, %v", pend.Outcome, err)
	}
	if _, err := m.Approve(pend.Request.RequestID, admin); err != nil {
		t.Errorf("approving the returned request: %v", err)
	}

	fs.failCommit = true
	f := newDevice(t)
	dec, err = m.Check(issuing(f, "operator", readScopes))
	if !errors.Is(err, errInjected) || dec.Token.Token != "" || dec.Outcome != 0 {
		t.Fatalf("Check with a failed commit = %v %v token %v", dec.Outcome, err, dec.Token.Token != "")
	}
	if _, err := e.stored(f.id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("device stored after a failed commit: %v", err)
	}
	if n := e.pendingCount(); n != 0 {
		t.Errorf("%d pending requests after a failed commit", n)
	}
}

// TestIssuedTokenNeverPrinted: a Decision carrying a token never prints,
// logs or encodes it.
func TestIssuedTokenNeverPrinted(t *testing.T) {
	e := newEnv(t)
	dec := e.check(issuing(newDevice(t), "operator", readScopes))
	tok := dec.Token.Token
	if tok == "" {
		t.Fatal("no token issued")
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("connect", "decision", dec, "token", dec.Token)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("connect", "decision", dec, "token", dec.Token)
	raw, err := json.Marshal(dec)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(dec), fmt.Sprintf("%+v", dec), fmt.Sprintf("%#v", dec), fmt.Sprintf("%v", &dec),
		fmt.Sprint(dec.Token), fmt.Sprintf("%#v", dec.Token), logs.String(), string(raw)} {
		if strings.Contains(s, tok) {
			t.Errorf("token printed: %s", s)
		}
	}
}

// TestIssueTokenOnPairedConnect: with IssueToken, the first connect after an
// operator's approval gets the token EnsureToken would have minted, in one
// write; later connects only read and get none; a revoked token is not
// replaced (that needs a new approval).
func TestIssueTokenOnPairedConnect(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	id := e.request(d, "operator", readScopes)
	if _, err := e.m.Approve(id, admin); err != nil {
		t.Fatal(err)
	}
	ci := info(d, "operator", readScopes)
	ci.IssueToken = true
	before := e.st.updates.Load()
	dec := e.check(ci)
	if n := e.st.updates.Load() - before; n != 1 {
		t.Errorf("first connect took %d write transactions, want 1", n)
	}
	now := e.clock.Now().UnixMilli()
	if dec.Outcome != pairing.Paired || len(dec.Token.Token) != 43 || dec.Token.IssuedAtMs != now {
		t.Fatalf("first connect = %v, token %d chars issued at %d", dec.Outcome, len(dec.Token.Token), dec.Token.IssuedAtMs)
	}
	if err := e.m.VerifyDeviceToken(d.id, "operator", dec.Token.Token, readScopes); err != nil {
		t.Fatalf("issued token: %v", err)
	}
	if tok, _, minted, err := e.m.EnsureToken(d.id, "operator", readScopes); err != nil || minted || tok != "" {
		t.Errorf("EnsureToken after = minted %v, %v; want nothing minted", minted, err)
	}
	before = e.st.updates.Load()
	if again := e.check(ci); again.Outcome != pairing.Paired || again.Token.Token != "" {
		t.Errorf("reconnect = %v with token %v", again.Outcome, again.Token.Token != "")
	}
	if e.st.updates.Load() != before {
		t.Error("paired reconnect wrote")
	}
	if err := e.m.VerifyDeviceToken(d.id, "operator", dec.Token.Token, readScopes); err != nil {
		t.Errorf("token after reconnect: %v", err)
	}

	if _, err := e.m.RevokeToken(d.id, "operator", admin); err != nil {
		t.Fatal(err)
	}
	if again := e.check(ci); again.Outcome != pairing.PendingRequired || again.Token.Token != "" {
		t.Errorf("after revocation = %v with token %v, want pending and none", again.Outcome, again.Token.Token != "")
	}
	if err := e.m.VerifyDeviceToken(d.id, "operator", dec.Token.Token, readScopes); !errors.Is(err, pairing.ErrTokenMismatch) {
		t.Errorf("revoked token: %v, want ErrTokenMismatch", err)
	}
}
