package bolt

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/store"
	"go.etcd.io/bbolt"
)

// statePath returns a state file path inside a not-yet-existing state dir.
func statePath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "state", "clawgate.db")
}

func mustOpen(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path, Options{strict: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func testDevice(i int) store.PairedDevice {
	id := fmt.Sprintf("%064x", i)
	return store.PairedDevice{
		DeviceID:       id,
		PublicKey:      fmt.Sprintf("pk-%d", i),
		DisplayName:    fmt.Sprintf("device %d", i),
		Role:           "operator",
		Roles:          []string{"operator"},
		Scopes:         []string{"operator.read"},
		ApprovedScopes: []string{"operator.read"},
		Tokens: map[string]store.DeviceToken{"operator": {
			Digest: store.DigestToken(fmt.Sprintf("token-%d", i)), Role: "operator",
			Scopes: []string{"operator.read"}, CreatedAtMs: int64(i), IssuedAtMs: int64(i),
		}},
		CreatedAtMs:  int64(i),
		ApprovedAtMs: int64(i),
	}
}

// populate writes n devices and one pending request, then closes the file.
func populate(t *testing.T, path string, n int) {
	t.Helper()
	db := mustOpen(t, path)
	for i := 0; i < n; i++ {
		err := db.UpdatePairing(func(tx store.PairingTx) error { return tx.PutDevice(testDevice(i)) })
		if err != nil {
			t.Fatal(err)
		}
	}
	err := db.UpdatePairing(func(tx store.PairingTx) error {
		return tx.PutPending(store.PendingRequest{RequestID: "req-1", DeviceID: "dev", Role: "operator", TS: 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCreatesPrivateDirAndFile(t *testing.T) {
	path := statePath(t)
	db := mustOpen(t, path)
	if db.Path() != path {
		t.Errorf("Path() = %q, want %q", db.Path(), path)
	}
	assertMode(t, filepath.Dir(path), 0o700)
	assertMode(t, path, 0o600)
	if err := db.bolt.View(func(tx *bbolt.Tx) error {
		v, err := readSchema(tx)
		if err != nil || v != SchemaVersion() {
			return fmt.Errorf("schema = %d, %v; want %d", v, err, SchemaVersion())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	// No temp files left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want only the state file", len(entries))
	}
}

func assertMode(t *testing.T, name string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s mode = %04o, want %04o", name, got, want)
	}
}

func TestOpenRefusesOpenStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(dir, "clawgate.db"), Options{})
	if !errors.Is(err, store.ErrPermissions) || !strings.Contains(err.Error(), "fix with: chmod 700 "+dir) {
		t.Fatalf("Open = %v, want ErrPermissions with chmod 700 hint", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "clawgate.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file created in an unsafe directory")
	}
}

// TestOpenRefusesUnsafeOrDamaged is attack row H8 (and H3's "no valid-looking
// empty store"): each file is refused with an actionable error and left
// byte-for-byte unchanged.
func TestOpenRefusesUnsafeOrDamaged(t *testing.T) {
	type tc struct {
		name     string
		damage   func(t *testing.T, path string)
		want     error
		hint     string // substring; FILE is replaced by the path
		rootOnly bool
	}
	cases := []tc{
		{name: "world-readable", damage: chmod(0o644), want: store.ErrPermissions, hint: "fix with: chmod 600 FILE"},
		{name: "group-writable", damage: chmod(0o620), want: store.ErrPermissions, hint: "fix with: chmod 600 FILE"},
		{name: "world-writable", damage: chmod(0o602), want: store.ErrPermissions, hint: "fix with: chmod 600 FILE"},
		{name: "other-owner", damage: chown(65534), want: store.ErrPermissions, hint: "fix with: chown", rootOnly: true},
		{name: "truncated-half", damage: truncate(0.5), want: store.ErrCorrupt, hint: "clawgate backup"},
		{name: "truncated-to-one-page", damage: truncateTo(4096), want: store.ErrCorrupt, hint: "truncated"},
		{name: "truncated-to-100-bytes", damage: truncateTo(100), want: store.ErrCorrupt, hint: "clawgate backup"},
		{name: "empty", damage: truncateTo(0), want: store.ErrCorrupt, hint: "empty"},
		{name: "garbage", damage: garbage(64 << 10), want: store.ErrCorrupt, hint: "clawgate backup"},
		{name: "both-meta-pages-flipped", damage: flipMeta, want: store.ErrCorrupt, hint: "clawgate backup"},
		{name: "half-initialised", damage: halfInitialised, want: store.ErrCorrupt, hint: "not an initialised clawgate state file"},
		{name: "newer-schema", damage: schemaVersion(SchemaVersion() + 1), want: store.ErrSchemaTooNew, hint: "upgrade clawgate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.rootOnly && os.Getuid() != 0 {
				t.Skip("needs root to chown")
			}
			path := statePath(t)
			populate(t, path, 50)
			c.damage(t, path)
			before := readAll(t, path)
			fiBefore, _ := os.Stat(path)

			start := time.Now()
			db, err := Open(path, Options{Timeout: time.Second})
			if err == nil {
				_ = db.Close()
				t.Fatal("Open succeeded, want refusal")
			}
			if time.Since(start) > 900*time.Millisecond {
				t.Errorf("refusal took %v", time.Since(start))
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Open = %v, want %v", err, c.want)
			}
			hint := strings.ReplaceAll(c.hint, "FILE", path)
			if !strings.Contains(err.Error(), hint) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q lacks %q or the file name", err, hint)
			}
			if after := readAll(t, path); !bytes.Equal(before, after) {
				t.Errorf("file changed by a refused Open")
			}
			fiAfter, _ := os.Stat(path)
			if fiAfter.Mode() != fiBefore.Mode() || !fiAfter.ModTime().Equal(fiBefore.ModTime()) {
				t.Errorf("file metadata changed by a refused Open")
			}
			// Refusal is stable and leaks no lock.
			if _, err2 := Open(path, Options{Timeout: 100 * time.Millisecond}); !errors.Is(err2, c.want) {
				t.Errorf("second Open = %v, want %v", err2, c.want)
			}
		})
	}
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func chmod(mode os.FileMode) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
}

func chown(uid int) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		if err := os.Chown(path, uid, -1); err != nil {
			t.Skipf("cannot chown here (user namespace?): %v", err)
		}
	}
}

func truncate(frac float64) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		fi, _ := os.Stat(path)
		truncateTo(int64(float64(fi.Size())*frac))(t, path)
	}
}

func truncateTo(n int64) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		if err := os.Truncate(path, n); err != nil {
			t.Fatal(err)
		}
	}
}

func garbage(n int) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// flipMeta flips a byte inside both meta pages so neither checksum holds.
func flipMeta(t *testing.T, path string) {
	b := readAll(t, path)
	ps := os.Getpagesize() // bbolt's default page size
	b[pageHeaderSize+20] ^= 0xff
	b[ps+pageHeaderSize+20] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// halfInitialised replaces the file with a valid bbolt file that has no
// clawgate schema: what a non-atomic first creation could leave behind.
func halfInitialised(t *testing.T, path string) {
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket(bucketPending)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
}

func schemaVersion(v int) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, []byte(fmt.Sprint(v)))
		}); err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
	}
}

// TestSecondOpenFailsFast is attack row H4.
func TestSecondOpenFailsFast(t *testing.T) {
	path := statePath(t)
	mustOpen(t, path)
	for _, timeout := range []time.Duration{0, 300 * time.Millisecond} {
		start := time.Now()
		_, err := Open(path, Options{Timeout: timeout})
		elapsed := time.Since(start)
		if !errors.Is(err, store.ErrLocked) {
			t.Fatalf("second Open = %v, want ErrLocked", err)
		}
		want := "state is locked by another clawgate (" + path + ")"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
		limit := timeout
		if limit == 0 {
			limit = DefaultTimeout
		}
		if elapsed < limit || elapsed > limit+time.Second {
			t.Errorf("Timeout %v: failed after %v", timeout, elapsed)
		}
	}
}

// assertComplete checks db is a fully initialised, usable store holding
// wantDevices devices and no pending request.
func assertComplete(t *testing.T, db *DB, wantDevices int) {
	t.Helper()
	err := db.ViewPairing(func(tx store.PairingTx) error {
		p, err := tx.AllPending()
		if err != nil || len(p) != 0 {
			return fmt.Errorf("pending %v, %v", p, err)
		}
		d, err := tx.AllDevices()
		if err != nil || len(d) != wantDevices {
			return fmt.Errorf("devices %v, %v", d, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.UpdatePairing(func(tx store.PairingTx) error { return tx.PutDevice(testDevice(1)) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestValuesSurviveHeavyWrites is attack row H6: values read earlier stay
// intact while later transactions rewrite, grow and remap the file.
func TestValuesSurviveHeavyWrites(t *testing.T) {
	db := mustOpen(t, statePath(t))
	const n = 200
	for i := 0; i < n; i++ {
		if err := db.UpdatePairing(func(tx store.PairingTx) error { return tx.PutDevice(testDevice(i)) }); err != nil {
			t.Fatal(err)
		}
	}
	var snapshot []store.PairedDevice
	if err := db.ViewPairing(func(tx store.PairingTx) error {
		var err error
		snapshot, err = tx.AllDevices()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	one, err := getDevice(db, testDevice(7).DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 3000)
	for round := 0; round < 10; round++ {
		if err := db.UpdatePairing(func(tx store.PairingTx) error {
			for i := 0; i < n; i++ {
				d := testDevice(i)
				d.DisplayName = fmt.Sprintf("%s-%d-%d", big, round, i)
				d.Tokens["operator"] = store.DeviceToken{Digest: store.DigestToken(fmt.Sprint(round, i)), Role: "operator"}
				if err := tx.PutDevice(d); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i, d := range snapshot {
		want := testDevice(i)
		if !reflect.DeepEqual(d, want) {
			t.Fatalf("snapshot[%d] changed after writes:\n got %+v\nwant %+v", i, d, want)
		}
	}
	if !reflect.DeepEqual(one, testDevice(7)) {
		t.Fatalf("single read changed after writes")
	}
}

func getDevice(db *DB, id string) (store.PairedDevice, error) {
	var d store.PairedDevice
	err := db.ViewPairing(func(tx store.PairingTx) error {
		var err error
		d, err = tx.Device(id)
		return err
	})
	return d, err
}

func TestPairingTx(t *testing.T) {
	db := mustOpen(t, statePath(t))
	if _, err := getDevice(db, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing device: %v, want ErrNotFound", err)
	}
	err := db.ViewPairing(func(tx store.PairingTx) error { return tx.PutDevice(testDevice(1)) })
	if !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("write in view: %v, want ErrReadOnly", err)
	}
	// An error from fn rolls the whole transaction back and is returned as is.
	sentinel := errors.New("boom")
	err = db.UpdatePairing(func(tx store.PairingTx) error {
		if err := tx.PutDevice(testDevice(2)); err != nil {
			return err
		}
		return sentinel
	})
	if err != sentinel {
		t.Errorf("UpdatePairing = %v, want the callback's error unchanged", err)
	}
	if _, err := getDevice(db, testDevice(2).DeviceID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rolled-back write visible: %v", err)
	}
	// Round trip, delete, idempotent delete.
	p := store.PendingRequest{RequestID: "r1", DeviceID: "d1", Role: "operator", Scopes: []string{"operator.read"}, TS: 5, ClientKey: "k"}
	if err := db.UpdatePairing(func(tx store.PairingTx) error { return tx.PutPending(p) }); err != nil {
		t.Fatal(err)
	}
	var got store.PendingRequest
	if err := db.ViewPairing(func(tx store.PairingTx) error {
		var err error
		got, err = tx.Pending("r1")
		return err
	}); err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("Pending = %+v, %v; want %+v", got, err, p)
	}
	for i := 0; i < 2; i++ {
		if err := db.UpdatePairing(func(tx store.PairingTx) error { return tx.DeletePending("r1") }); err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
	}
	// A record that does not decode is reported as corrupt, naming the file.
	if err := db.bolt.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDevices).Put([]byte("bad"), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := getDevice(db, "bad"); !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), db.Path()) {
		t.Errorf("bad record: %v, want ErrCorrupt naming the file", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	db, err := Open(statePath(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := db.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i, err)
		}
	}
	if err := db.ViewPairing(func(store.PairingTx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("View after Close = %v, want ErrClosed", err)
	}
	if _, err := db.Backup(&bytes.Buffer{}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Backup after Close = %v, want ErrClosed", err)
	}
}

func TestBackup(t *testing.T) {
	path := statePath(t)
	populate(t, path, 20)
	db := mustOpen(t, path)

	var buf bytes.Buffer
	n, err := db.Backup(&buf)
	if err != nil || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("Backup = %d, %v (buffer %d)", n, err, buf.Len())
	}

	backupDir := filepath.Join(t.TempDir(), "backups")
	if err := os.Mkdir(backupDir, 0o700); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(backupDir, "clawgate.db")
	// Hot copy while writes go on.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 100; i < 150; i++ {
			_ = db.UpdatePairing(func(tx store.PairingTx) error { return tx.PutDevice(testDevice(i)) })
		}
	}()
	if _, err := db.BackupFile(dst); err != nil {
		t.Fatal(err)
	}
	<-done
	assertMode(t, dst, 0o600)
	if left, _ := filepath.Glob(filepath.Join(backupDir, ".*backup-*")); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	if _, err := db.BackupFile(path); err == nil {
		t.Errorf("BackupFile over the live state file succeeded")
	}

	restored := mustOpen(t, dst)
	if err := restored.Check(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		got, err := getDevice(restored, testDevice(i).DeviceID)
		if err != nil || !reflect.DeepEqual(got, testDevice(i)) {
			t.Fatalf("restored device %d: %+v, %v", i, got, err)
		}
	}
}

// TestDigestNeverPrints keeps token digests out of fmt and logs.
func TestDigestNeverPrints(t *testing.T) {
	d := testDevice(3)
	dg := d.Tokens["operator"].Digest
	hexForm, _ := dg.MarshalText()
	for _, s := range []string{fmt.Sprint(d), fmt.Sprintf("%+v", d), fmt.Sprintf("%#v", d), fmt.Sprintf("%x", dg), fmt.Sprintf("%s", dg)} {
		if strings.Contains(s, string(hexForm)) || strings.Contains(s, fmt.Sprintf("%x", dg[:4])) {
			t.Errorf("digest printed: %s", s)
		}
	}
}
