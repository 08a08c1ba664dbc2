package device

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/types"

	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/whatsapp"
)

// lockHelperEnv makes the test binary a second process that tries to open
// the session named by its value.
const lockHelperEnv = "CLAWGATE_WA_LOCK_HELPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(lockHelperEnv); dir != "" {
		p, err := New(Config{Dir: dir})
		if err != nil {
			os.Stdout.WriteString(err.Error())
			os.Exit(3)
		}
		p.Close()
		os.Stdout.WriteString("opened")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSecondProcessCannotOpenSession: while one provider holds the
// session, neither a second New in the process nor a second process can
// open it; the error says who holds it. Once released, it opens.
func TestSecondProcessCannotOpenSession(t *testing.T) {
	dir := t.TempDir() + "/wa"
	p, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Dir: dir})
	var le *whatsapp.LockedError
	if !errors.As(err, &le) || !errors.Is(err, whatsapp.ErrSessionLocked) || le.PID != os.Getpid() {
		t.Fatalf("second New in the process: %v; want a whatsapp.LockedError naming pid %d", err, os.Getpid())
	}

	second := func() (string, int) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), lockHelperEnv+"="+dir)
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := second()
	want := "in use by another process (pid " + strconv.Itoa(os.Getpid()) + ")"
	if code != 3 || !strings.Contains(out, want) || !strings.Contains(out, "only one process per host") {
		t.Fatalf("second process: exit %d, %q; want exit 3 and %q", code, out, want)
	}
	p.Close()
	if out, code := second(); code != 0 || out != "opened" {
		t.Fatalf("after release: exit %d, %q; want the session to open", code, out)
	}
}

// TestSessionFilesPrivate (I14): the session directory is 0700 and every
// file in it (database, WAL, lock) 0600, even under a permissive umask.
func TestSessionFilesPrivate(t *testing.T) {
	srv := newFake(t)
	dir := t.TempDir() + "/wa"
	if err := os.MkdirAll(dir, 0o755); err != nil { // too open: New tightens it
		t.Fatal(err)
	}
	p := newProvider(t, srv, testLog(t), func(c *Config) { c.Dir = dir })
	link(t, p, srv)
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("session dir: %v, %v; want 0700", fi.Mode(), err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) < 2 {
		t.Fatalf("session dir entries %v, %v", entries, err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v; want 0600", e.Name(), info.Mode().Perm())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, dbName)); err != nil {
		t.Fatal(err)
	}
}

// TestQRRotationAndTimeout: the codes WhatsApp hands out are shown one
// after another as each expires; when all have expired, linking ends with
// whatsapp.ErrQRTimeout and a "timeout" state, and nothing is linked.
func TestQRRotationAndTimeout(t *testing.T) {
	srv := newFake(t)
	srv.Refs = 3
	p := newProvider(t, srv, testLog(t), func(c *Config) {
		c.QRFirst, c.QRNext = 300*time.Millisecond, 150*time.Millisecond
	})
	feed := newCodeFeed()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := p.Link(ctx, false, feed.on)
	if !errors.Is(err, whatsapp.ErrQRTimeout) {
		t.Fatalf("Link = %v; want whatsapp.ErrQRTimeout", err)
	}
	codes := feed.all()
	if len(codes) != 3 {
		t.Fatalf("showed %d codes; want the 3 refs in turn", len(codes))
	}
	for i, c := range codes {
		if parts := strings.Split(c, ","); len(parts) != 4 || (i > 0 && codes[i-1] == c) {
			t.Fatalf("code %d = %q; want ref,noise,identity,adv and each code different", i, c)
		}
	}
	if st := p.LoginStatus(); st.State != whatsapp.LinkTimeout || st.QR != "" || st.Connected {
		t.Fatalf("status after timeout = %+v", st)
	}
	if srv.Linked() {
		t.Fatal("the fake has a linked device")
	}
	// A code that expired cannot be used.
	if err := srv.ScanQR(codes[0]); err == nil {
		t.Fatal("an expired code was accepted")
	}
	// A linked session refuses a second link unless forced.
	link(t, p, srv)
	if err := p.Link(ctx, false, nil); !errors.Is(err, whatsapp.ErrAlreadyLinked) {
		t.Fatalf("Link on a linked device = %v; want whatsapp.ErrAlreadyLinked", err)
	}
}

// TestLogoutMidRunNeedsRelink: the phone removes the device while the
// account runs. The account's status turns to "needs re-link" (an event
// and in Statuses, not only a log line), sends fail, and a new link made
// through StartLogin (the web.login.start path) brings it back without a
// restart.
func TestLogoutMidRunNeedsRelink(t *testing.T) {
	srv := newFake(t)
	log := testLog(t)
	p := newProvider(t, srv, log)
	link(t, p, srv)
	sup, sl := supervise(t, p, log)
	eventually(t, "connected", func() bool { return sl.has(connected) })
	if _, err := srv.Inject(alicePhone, "Alice", "before"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "first message", func() bool { return len(sl.texts()) == 1 })

	mark := sl.count()
	srv.RemoveDevice()
	eventually(t, "needs re-link status", func() bool {
		for _, st := range sl.since(mark) {
			if needsRelink(st) && strings.Contains(st.LastError, "logged out from the phone") {
				return true
			}
		}
		return false
	})
	if st := sup.Statuses()[0]; !needsRelink(st) {
		t.Fatalf("Statuses() = %+v; want needs re-link", st)
	}
	if st := p.LoginStatus(); st.State != whatsapp.LinkNeeded || st.Connected {
		t.Fatalf("login status = %+v; want needs-relink", st)
	}
	route := providers.Route{Channel: whatsapp.Name, AccountID: "default"}
	if _, err := sup.Send(context.Background(), route, providers.Outbound{To: aliceID, Text: "hello?"}); err == nil {
		t.Fatal("send succeeded with no linked device")
	}
	// Give the Supervisor time to restart a run that (wrongly) returned;
	// a provider waiting for a link must not reconnect in a loop.
	logins := srv.Logins()
	time.Sleep(300 * time.Millisecond)
	if srv.Logins() != logins {
		t.Fatalf("the unlinked account logged in again (%d → %d)", logins, srv.Logins())
	}

	// Re-link while running.
	ctx, cancel := context.WithTimeout(context.Background(), 2*defaultConnectTimeout)
	defer cancel()
	st, err := p.StartLogin(ctx, false)
	if err != nil || st.State != whatsapp.LinkQR || st.QR == "" {
		t.Fatalf("StartLogin = %+v, %v; want a QR code", st, err)
	}
	mark = sl.count()
	if err := srv.ScanQR(st.QR); err != nil {
		t.Fatal(err)
	}
	if st := p.WaitLogin(ctx, st.QR); !st.Connected || st.Account != "+"+"15550000001" {
		t.Fatalf("WaitLogin = %+v; want connected", st)
	}
	eventually(t, "connected again", func() bool {
		for _, st := range sl.since(mark) {
			if connected(st) {
				return true
			}
		}
		return false
	})
	if _, err := srv.Inject(alicePhone, "Alice", "after relink"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "message after relink", func() bool { return len(sl.texts()) == 2 })
	if _, err := sup.Send(ctx, route, providers.Outbound{To: aliceID, Text: "welcome back"}); err != nil {
		t.Fatalf("send after relink: %v", err)
	}
	if sent := srv.Sent(); len(sent) == 0 || sent[len(sent)-1].Text != "welcome back" {
		t.Fatalf("fake decrypted %+v", sent)
	}
}

// TestForcedRelinkAndLogout: StartLogin with force unlinks the running
// device and shows a new code; Logout (channels.logout) unlinks the device
// at WhatsApp and deletes the local session.
func TestForcedRelinkAndLogout(t *testing.T) {
	srv := newFake(t)
	log := testLog(t)
	p := newProvider(t, srv, log)
	link(t, p, srv)
	sup, sl := supervise(t, p, log)
	eventually(t, "connected", func() bool { return sl.has(connected) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*defaultConnectTimeout)
	defer cancel()
	if st, err := p.StartLogin(ctx, false); err != nil || !st.Connected || st.QR != "" {
		t.Fatalf("StartLogin on a linked account = %+v, %v; want 'already linked'", st, err)
	}
	st, err := p.StartLogin(ctx, true)
	if err != nil || st.State != whatsapp.LinkQR {
		t.Fatalf("forced StartLogin = %+v, %v; want a new QR", st, err)
	}
	if srv.Linked() {
		t.Fatal("the old device is still linked at the fake")
	}
	if err := srv.ScanQR(st.QR); err != nil {
		t.Fatal(err)
	}
	if st := p.WaitLogin(ctx, st.QR); !st.Connected {
		t.Fatalf("WaitLogin = %+v", st)
	}
	route := providers.Route{Channel: whatsapp.Name, AccountID: "default"}
	if _, err := sup.Logout(ctx, route); err != nil {
		t.Fatal(err)
	}
	if srv.Linked() {
		t.Fatal("Logout did not unlink the device at the fake")
	}
	if st := p.LoginStatus(); st.State != whatsapp.LinkNeeded || st.Connected {
		t.Fatalf("after Logout: %+v", st)
	}
	if _, err := p.StartLogin(ctx, false); !errors.Is(err, whatsapp.ErrNotRunning) {
		t.Fatalf("StartLogin on a logged-out account = %v; want whatsapp.ErrNotRunning", err)
	}
}

// TestUnmatchedLIDSenderDropped (I6): over the wire, a message from a LID
// with no phone mapping is dropped by an allowlist of phone numbers (fail
// closed) and logged with the LID; the same user's message carrying its
// phone number (sender_pn) is admitted, and after that the LID map
// resolves the LID on its own.
func TestUnmatchedLIDSenderDropped(t *testing.T) {
	srv := newFake(t)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := newProvider(t, srv, log)
	link(t, p, srv)
	sup, sl := supervise(t, p, log)
	eventually(t, "connected", func() bool { return sl.has(connected) })

	stranger := types.NewJID("987654321012345", types.HiddenUserServer)
	if _, err := srv.InjectFrom(stranger, types.EmptyJID, "Mallory", "let me in"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "drop counted", func() bool { return sup.Statuses()[0].Dropped == 1 })
	if got := sl.texts(); len(got) != 0 {
		t.Fatalf("admitted %q from an unmapped LID", got)
	}
	if !strings.Contains(logs.String(), "lid=987654321012345@lid") {
		t.Fatalf("the dropped LID is not logged:\n%s", logs.String())
	}

	aliceAsLID := types.NewJID("111122223333444", types.HiddenUserServer)
	if _, err := srv.InjectFrom(aliceAsLID, alicePN, "Alice", "with my number"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "LID with phone number admitted", func() bool { return len(sl.texts()) == 1 })
	if _, err := srv.InjectFrom(aliceAsLID, types.EmptyJID, "Alice", "LID only"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "LID resolved from the map", func() bool { return len(sl.texts()) == 2 })
	sl.mu.Lock()
	defer sl.mu.Unlock()
	for _, m := range sl.inbound {
		if m.SenderID != aliceID || m.ChatID != aliceID {
			t.Errorf("admitted %+v; want sender and chat %s", m, aliceID)
		}
	}
}
