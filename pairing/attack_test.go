package pairing_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/store"
)

// runConcurrently runs fn n times at once and returns the set of non-empty
// results of the calls that succeeded.
func runConcurrently(n int, fn func(i int) (string, error)) map[string]int {
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		out   = map[string]int{}
		start = make(chan struct{})
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if s, err := fn(i); err == nil && s != "" {
				mu.Lock()
				out[s]++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// TestB7ConcurrentApprovals: 50 goroutines approve the same request; exactly
// one succeeds, one token record exists, one token is ever issued.
func TestB7ConcurrentApprovals(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	id := e.request(d, "operator", readScopes)
	var mu sync.Mutex
	var okN, notFound, other int
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := e.m.Approve(id, admin)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				okN++
			case errors.Is(err, pairing.ErrNotFound):
				notFound++
			default:
				other++
				t.Errorf("Approve: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if okN != 1 || notFound != 49 || other != 0 {
		t.Fatalf("approvals: %d ok, %d not found, %d other; want 1/49/0", okN, notFound, other)
	}
	rec, err := e.stored(d.id)
	if err != nil || len(rec.Tokens) != 1 {
		t.Fatalf("record %+v, %v", rec, err)
	}
	toks := runConcurrently(50, func(int) (string, error) {
		tok, _, _, err := e.m.EnsureToken(d.id, "operator", readScopes)
		return tok, err
	})
	if len(toks) != 1 {
		t.Fatalf("%d tokens issued, want 1", len(toks))
	}
}

// TestB7ConcurrentNewRequests: 50 new devices from one client at once;
// pending stays within the per-client cap, no duplicates.
func TestB7ConcurrentNewRequests(t *testing.T) {
	const perClient = 4
	e := newEnv(t, func(o *pairing.Options) { o.MaxPendingPerClient = perClient })
	ids := runConcurrently(50, func(int) (string, error) {
		dec, err := e.m.Check(info(newDevice(t), "operator", readScopes))
		if err != nil {
			if !errors.Is(err, pairing.ErrTooManyPending) {
				t.Errorf("Check: %v", err)
			}
			return "", err
		}
		return dec.Request.RequestID, nil
	})
	if len(ids) != perClient || e.pendingCount() != perClient {
		t.Fatalf("%d requests accepted, %d stored; want %d", len(ids), e.pendingCount(), perClient)
	}
	// The same device 50 times at once: one request, no duplicate rows.
	d := newDevice(t)
	e2 := newEnv(t)
	same := runConcurrently(50, func(int) (string, error) {
		dec, err := e2.m.Check(info(d, "operator", readScopes))
		if err != nil {
			return "", err
		}
		return dec.Request.RequestID, nil
	})
	if len(same) != 1 || e2.pendingCount() != 1 {
		t.Fatalf("one device, 50 connects: %d ids, %d stored", len(same), e2.pendingCount())
	}
}

// TestB4NewKeyForKnownDevice: a different key for a paired deviceId is never
// silently approved, and an explicit approval starts a fresh record that
// carries nothing over from the old key.
func TestB4NewKeyForKnownDevice(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	oldTok := e.pair(d, "operator", []string{"operator.admin"})
	impostor := d.withKey(t)
	dec := e.check(local(info(impostor, "operator", readScopes)))
	if dec.Outcome != pairing.PendingRequired || dec.Reason != pairing.ReasonNotPaired || dec.Request.Silent {
		t.Fatalf("new key: %v/%q silent=%v", dec.Outcome, dec.Reason, dec.Request != nil && dec.Request.Silent)
	}
	// The genuine device is unaffected while the request waits.
	if err := e.m.VerifyDeviceToken(d.id, "operator", oldTok, []string{"operator.admin"}); err != nil {
		t.Fatalf("old device during pending re-pair: %v", err)
	}
	res := mustApprove(e, dec.Request.RequestID)
	if !res.KeyChanged || res.Device.PublicKey != impostor.pk {
		t.Fatalf("approve re-pair: %+v", res)
	}
	if !equalStrings(res.Device.ApprovedScopes, []string{"operator.read"}) {
		t.Errorf("old key's scopes carried over: %v", res.Device.ApprovedScopes)
	}
	if err := e.m.VerifyDeviceToken(d.id, "operator", oldTok, nil); !errors.Is(err, pairing.ErrTokenMismatch) {
		t.Errorf("old key's token survives the re-pair")
	}
	if dec := e.check(info(d, "operator", readScopes)); dec.Reason != pairing.ReasonNotPaired {
		t.Errorf("old key after re-pair: %q", dec.Reason)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestB3UpgradeNeverSilent: scope and role upgrades from loopback wait.
func TestB3UpgradeNeverSilent(t *testing.T) {
	e := newEnv(t)
	d := newDevice(t)
	e.pair(d, "operator", readScopes)
	for _, ci := range []pairing.ConnectInfo{
		local(info(d, "operator", []string{"operator.admin"})),
		local(info(d, "node", nil)),
	} {
		dec := e.check(ci)
		if dec.Outcome != pairing.PendingRequired || dec.Request.Silent {
			t.Fatalf("%s upgrade from loopback: %v", ci.Role, dec.Outcome)
		}
	}
	got, err := e.m.Device(d.id)
	if err != nil || !equalStrings(got.ApprovedScopes, readScopes) || !equalStrings(got.Roles, []string{"operator"}) {
		t.Errorf("existing approval changed: %+v %v", got, err)
	}
}

// TestC6OnlyDigestsOnDisk: the raw bbolt file holds no issued token, in any
// encoding; the file is 0600 and its directory 0700.
func TestC6OnlyDigestsOnDisk(t *testing.T) {
	e := newEnv(t)
	var issued []string
	for i := 0; i < 5; i++ {
		d := newDevice(t)
		issued = append(issued, e.pair(d, "operator", []string{"operator.admin"}))
		r, err := e.m.RotateToken(d.id, "operator", nil, admin)
		if err != nil {
			t.Fatal(err)
		}
		issued = append(issued, r.Token)
		mustApprove(e, e.request(d, "node", nil))
		tok, _, _, err := e.m.EnsureToken(d.id, "node", nil)
		if err != nil {
			t.Fatal(err)
		}
		issued = append(issued, tok)
	}
	var digests [][]byte
	for _, tok := range issued {
		dg, _ := store.DigestToken(tok).MarshalText()
		digests = append(digests, dg)
	}
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range issued {
		rawBytes, _ := base64.RawURLEncoding.DecodeString(tok)
		for _, needle := range [][]byte{[]byte(tok), rawBytes, []byte(base64.StdEncoding.EncodeToString(rawBytes))} {
			if bytes.Contains(raw, needle) {
				t.Fatalf("issued token found in the state file")
			}
		}
	}
	// Sanity: the digests of the live tokens are what is stored.
	found := 0
	for _, dg := range digests {
		if bytes.Contains(raw, dg) {
			found++
		}
	}
	if found == 0 {
		t.Errorf("no token digest found in the file; is the test reading the right file?")
	}
	assertPerm(t, e.path, 0o600)
	assertPerm(t, filepath.Dir(e.path), 0o700)
}

func assertPerm(t *testing.T, name string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s mode %04o, want %04o", name, fi.Mode().Perm(), want)
	}
}
