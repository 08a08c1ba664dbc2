//go:build unix

package pairing_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/store"
	"github.com/clawgate/clawgate/store/bolt"
)

const crashEnv = "CLAWGATE_PAIRING_CRASH_DB"

// TestCrashChild is the child half of TestCrashDuringApproveAndRotate: it
// loops connect → approve → first token → rotate, then four concurrent
// local first connects (silent approval and token in one shared commit),
// against the DB named in the environment and prints one line per
// acknowledged operation, after the call returned, until it is killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("child of TestCrashDuringApproveAndRotate")
	}
	db, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		fmt.Println("FATAL", err)
		os.Exit(2)
	}
	m, err := pairing.New(db, pairing.Options{FlushInterval: -1})
	if err != nil {
		fmt.Println("FATAL", err)
		os.Exit(2)
	}
	say := func(format string, args ...any) {
		// One write(2) per line: once it returns, the line is in the pipe.
		_, _ = os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n")
	}
	say("READY")
	for {
		d := newDevice(t)
		say("BEGIN approve %s", d.id)
		dec, err := m.Check(info(d, "operator", readScopes))
		if err != nil {
			say("FATAL check %v", err)
			os.Exit(2)
		}
		if _, err := m.Approve(dec.Request.RequestID, admin); err != nil {
			say("FATAL approve %v", err)
			os.Exit(2)
		}
		tok, _, _, err := m.EnsureToken(d.id, "operator", readScopes)
		if err != nil {
			say("FATAL ensure %v", err)
			os.Exit(2)
		}
		say("OK approve %s %s", d.id, tok)
		for i := 0; i < 2; i++ {
			say("BEGIN rotate %s", d.id)
			r, err := m.RotateToken(d.id, "operator", nil, admin)
			if err != nil {
				say("FATAL rotate %v", err)
				os.Exit(2)
			}
			say("OK rotate %s %s", d.id, r.Token)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := newDevice(t)
				say("BEGIN silent %s", d.id)
				dec, err := m.Check(issuing(d, "operator", readScopes))
				if err != nil || dec.Outcome != pairing.ApprovedSilently {
					say("FATAL silent %v %v", dec.Outcome, err)
					os.Exit(2)
				}
				say("OK silent %s %s", d.id, dec.Token.Token)
			}()
		}
		wg.Wait()
	}
}

// lockedBuffer is an io.Writer safe to read after the child exits.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// deviceLog is what the child acknowledged about one device.
type deviceLog struct {
	approved bool   // "OK approve" seen
	token    string // last acknowledged token
	inFlight bool   // a BEGIN after the last OK
	silent   bool   // approved by a local first connect ("OK silent")
}

// TestCrashDuringApproveAndRotate is attack row H1: kill -9 at random points
// of "approve → mint token → persist → reply"; after each restart every
// acknowledged approval and token is present and verifies, and no device is
// half-paired.
func TestCrashDuringApproveAndRotate(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "state", "clawgate.db")
	logs := map[string]*deviceLog{}
	totalAcks := 0
	for round := 0; round < 6; round++ {
		out := runAndKill(t, path, time.Duration(30+rand.IntN(250))*time.Millisecond)
		acks := parseCrashLog(t, out, logs)
		totalAcks += acks
		checkAfterCrash(t, path, logs)
		t.Logf("round %d: %d acknowledged operations", round, acks)
	}
	if totalAcks < 10 {
		t.Fatalf("only %d operations acknowledged in all rounds; the test did not exercise anything", totalAcks)
	}
	silent := 0
	for _, l := range logs {
		if l.silent {
			silent++
		}
	}
	if silent == 0 {
		t.Fatal("no silent approval acknowledged in all rounds")
	}
}

// runAndKill starts the child, lets it run for d after it is ready, kills it
// with SIGKILL and returns everything it printed.
func runAndKill(t *testing.T, path string, d time.Duration) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	var out lockedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "READY") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("child never got ready: %s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(d)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL (%v): %s", err, out.String())
	}
	return out.String()
}

// parseCrashLog folds the child's lines into logs and returns the number of
// acknowledged operations.
func parseCrashLog(t *testing.T, out string, logs map[string]*deviceLog) int {
	t.Helper()
	acks := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] == "READY" {
			continue
		}
		if f[0] == "FATAL" {
			t.Fatalf("child: %s", sc.Text())
		}
		if len(f) < 3 || (f[0] != "BEGIN" && f[0] != "OK") {
			continue // a torn last line or test framework noise
		}
		l := logs[f[2]]
		if l == nil {
			l = &deviceLog{}
			logs[f[2]] = l
		}
		switch {
		case f[0] == "BEGIN":
			l.inFlight = true
		case len(f) == 4 && len(f[3]) == 43:
			l.inFlight = false
			l.token = f[3]
			if f[1] == "approve" || f[1] == "silent" {
				l.approved = true
				l.silent = f[1] == "silent"
			}
			acks++
		}
	}
	return acks
}

// checkAfterCrash reopens the state file and checks every acknowledged
// operation and the integrity of every record.
func checkAfterCrash(t *testing.T, path string, logs map[string]*deviceLog) {
	t.Helper()
	db, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatalf("bbolt check after kill: %v", err)
	}
	m, err := pairing.New(db, pairing.Options{FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	var devices []store.PairedDevice
	var pending []store.PendingRequest
	if err := db.ViewPairing(func(tx store.PairingTx) error {
		var err error
		if devices, err = tx.AllDevices(); err != nil {
			return err
		}
		pending, err = tx.AllPending()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	byID := map[string]store.PairedDevice{}
	for _, d := range devices {
		byID[d.DeviceID] = d
		checkNotHalfPaired(t, d)
	}
	for _, p := range pending {
		if l := logs[p.DeviceID]; l != nil && l.approved {
			t.Errorf("acknowledged approval of %s still pending", p.DeviceID[:8])
		}
	}
	for id, l := range logs {
		if !l.approved {
			continue // approval never acknowledged: may or may not have committed
		}
		rec, ok := byID[id]
		if !ok {
			t.Errorf("acknowledged approval of %s lost", id[:8])
			continue
		}
		err := m.VerifyDeviceToken(id, "operator", l.token, readScopes)
		switch {
		case err == nil:
		case l.inFlight:
			// A rotation began after the last acknowledgement and may have
			// committed: then the stored token is that newer, issued one.
			if tok := rec.Tokens["operator"]; tok.IssuedAtMs == 0 || tok.RotatedAtMs == 0 {
				t.Errorf("%s: acknowledged token gone without a committed rotation", id[:8])
			}
		default:
			t.Errorf("%s: last acknowledged token does not verify: %v", id[:8], err)
		}
	}
}

// checkNotHalfPaired asserts the invariants of a paired record: every
// approved role has a complete token record within the approved baseline.
func checkNotHalfPaired(t *testing.T, d store.PairedDevice) {
	t.Helper()
	if d.ApprovedAtMs == 0 || d.CreatedAtMs == 0 || d.PublicKey == "" || len(d.Roles) == 0 {
		t.Errorf("%s: incomplete record %+v", d.DeviceID[:8], d)
	}
	for _, role := range d.Roles {
		tok, ok := d.Tokens[role]
		if !ok || tok.Role != role || tok.Digest.IsZero() || tok.CreatedAtMs == 0 || tok.Scopes == nil {
			t.Errorf("%s: role %s without a complete token record", d.DeviceID[:8], role)
			continue
		}
		for _, s := range tok.Scopes {
			found := false
			for _, a := range d.ApprovedScopes {
				if a == s {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: token scope %s outside the approved baseline", d.DeviceID[:8], s)
			}
		}
	}
	if len(d.Tokens) != len(d.Roles) {
		t.Errorf("%s: %d tokens for %d roles", d.DeviceID[:8], len(d.Tokens), len(d.Roles))
	}
}
