package device

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/whatsapp"
)

// These tests feed whatsmeow event values through the client's real
// dispatcher (DangerousInternals().DispatchEvent) into the provider's
// handler, queue and serve loop, with no connection.

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// seam is a session on a linked-looking offline store, serving into sink.
type seam struct {
	s    *session
	sink *recSink
	logs *syncBuffer
	done chan error
	stop context.CancelFunc
}

var ownJID = types.NewADJID("15550000001", 0, 7)

func newSeam(t testing.TB, queue int) *seam {
	t.Helper()
	sink := &recSink{}
	sm := newSeamSink(t, queue, sink)
	sm.sink = sink
	return sm
}

// newSeamSink starts the serve loop delivering to sink.
func newSeamSink(t testing.TB, queue int, sink providers.Sink) *seam {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(Config{Dir: t.TempDir() + "/wa", Logger: log, QueueSize: queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx := context.Background()
	st, err := openStore(ctx, p.cfg.Dir, p.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.close)
	jid := ownJID
	st.dev.ID = &jid
	st.dev.Account = &waAdv.ADVSignedDeviceIdentity{Details: []byte{0}, AccountSignature: make([]byte, 64),
		AccountSignatureKey: make([]byte, 32), DeviceSignature: make([]byte, 64)}
	if err := st.dev.Save(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(p, st, sink, true)
	s.jid = jid
	rctx, cancel := context.WithCancel(ctx)
	s.attach(rctx)
	sm := &seam{s: s, logs: logs, done: make(chan error, 1), stop: cancel}
	go func() { sm.done <- s.serve(rctx) }()
	t.Cleanup(func() {
		cancel()
		<-sm.done
		s.detach()
	})
	eventually(t, "serve started", func() bool { return p.client() != nil })
	return sm
}

// dispatch runs evt through whatsmeow's dispatcher and reports whether a
// handler refused it.
func (sm *seam) dispatch(evt any) (refused bool) {
	return sm.s.cli.DangerousInternals().DispatchEvent(evt)
}

func msgInfo(chat, sender types.JID, id string) types.MessageInfo {
	return types.MessageInfo{MessageSource: types.MessageSource{Chat: chat, Sender: sender,
		IsGroup: chat.Server == types.GroupServer}, ID: id, PushName: "Alice", Timestamp: time.Unix(1700000000, 0)}
}

func text(s string) *waE2E.Message { return &waE2E.Message{Conversation: proto.String(s)} }

var (
	alicePN  = types.NewJID(alicePhone, types.DefaultUserServer)
	aliceLID = types.NewJID("987654321012345", types.HiddenUserServer)
	group    = types.NewJID("120363012345678901", types.GroupServer)
)

func TestEventsThroughHandler(t *testing.T) {
	sm := newSeam(t, 16)
	ctx := context.Background()
	mappedLID := types.NewJID("111222333444555", types.HiddenUserServer)
	if err := sm.s.st.dev.LIDs.PutLIDMapping(ctx, mappedLID, types.NewJID("15557654321", types.DefaultUserServer)); err != nil {
		t.Fatal(err)
	}
	withAlt := func(i types.MessageInfo, alt types.JID) types.MessageInfo { i.SenderAlt = alt; return i }
	edit := (&events.Message{Info: msgInfo(alicePN, alicePN, "E1"), RawMessage: &waE2E.Message{
		EditedMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
			Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(), Key: &waCommon.MessageKey{ID: proto.String("M1")},
			EditedMessage: text("hello, edited")}}}}}).UnwrapRaw()
	own := msgInfo(alicePN, ownJID, "O1")
	own.IsFromMe = true

	cases := []struct {
		name string
		evt  any
		want *providers.Inbound // nil: nothing delivered
	}{
		{"direct text", &events.Message{Info: msgInfo(alicePN, alicePN, "M1"), Message: text("hi")},
			&providers.Inbound{Kind: providers.KindMessage, ID: aliceID + ":M1", MessageID: "M1", ChatID: aliceID,
				ChatType: providers.ChatDirect, SenderID: aliceID, SenderName: "Alice", Text: "hi"}},
		{"extended text from a device", &events.Message{Info: msgInfo(alicePN, types.NewADJID(alicePhone, 0, 3), "M2"),
			Message: &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("linky")}}},
			&providers.Inbound{Kind: providers.KindMessage, ID: aliceID + ":M2", MessageID: "M2", ChatID: aliceID,
				ChatType: providers.ChatDirect, SenderID: aliceID, SenderName: "Alice", Text: "linky"}},
		{"group, phone-number participant", &events.Message{Info: msgInfo(group, alicePN, "G1"), Message: text("to all")},
			&providers.Inbound{Kind: providers.KindMessage, ID: group.String() + ":G1", MessageID: "G1", ChatID: group.String(),
				ChatType: providers.ChatGroup, SenderID: aliceID, SenderName: "Alice", Text: "to all"}},
		{"group, LID participant with its phone number", &events.Message{Info: withAlt(msgInfo(group, aliceLID, "G2"), alicePN),
			Message: text("lid+pn")},
			&providers.Inbound{Kind: providers.KindMessage, ID: group.String() + ":G2", MessageID: "G2", ChatID: group.String(),
				ChatType: providers.ChatGroup, SenderID: aliceID, SenderName: "Alice", Text: "lid+pn"}},
		{"direct from a LID in the LID map", &events.Message{Info: msgInfo(mappedLID, mappedLID, "L1"), Message: text("mapped")},
			&providers.Inbound{Kind: providers.KindMessage, ID: "+15557654321:L1", MessageID: "L1", ChatID: "+15557654321",
				ChatType: providers.ChatDirect, SenderID: "+15557654321", SenderName: "Alice", Text: "mapped"}},
		{"group, LID participant with no mapping", &events.Message{Info: msgInfo(group, aliceLID, "G3"), Message: text("who?")},
			&providers.Inbound{Kind: providers.KindMessage, ID: group.String() + ":G3", MessageID: "G3", ChatID: group.String(),
				ChatType: providers.ChatGroup, SenderID: "987654321012345@lid", SenderName: "Alice", Text: "who?"}},
		{"edit", edit,
			&providers.Inbound{Kind: providers.KindEdit, ID: aliceID + ":E1", MessageID: "M1", ChatID: aliceID,
				ChatType: providers.ChatDirect, SenderID: aliceID, SenderName: "Alice", Text: "hello, edited"}},
		{"reaction", &events.Message{Info: msgInfo(alicePN, alicePN, "R1"), Message: &waE2E.Message{
			ReactionMessage: &waE2E.ReactionMessage{Key: &waCommon.MessageKey{ID: proto.String("M1")}, Text: proto.String("👍")}}},
			&providers.Inbound{Kind: providers.KindReaction, ID: aliceID + ":R1", MessageID: "M1", ChatID: aliceID,
				ChatType: providers.ChatDirect, SenderID: aliceID, SenderName: "Alice", Text: "👍"}},
		{"removed reaction", &events.Message{Info: msgInfo(alicePN, alicePN, "R2"), Message: &waE2E.Message{
			ReactionMessage: &waE2E.ReactionMessage{Key: &waCommon.MessageKey{ID: proto.String("M1")}, Text: proto.String("")}}}, nil},
		{"revoke", &events.Message{Info: msgInfo(alicePN, alicePN, "X1"), Message: &waE2E.Message{
			ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum()}}}, nil},
		{"own message", &events.Message{Info: own, Message: text("mine")}, nil},
		{"status broadcast", &events.Message{Info: msgInfo(types.StatusBroadcastJID, alicePN, "S1"), Message: text("story")}, nil},
		{"image without caption", &events.Message{Info: msgInfo(alicePN, alicePN, "I1"),
			Message: &waE2E.Message{ImageMessage: &waE2E.ImageMessage{}}}, nil},
		{"delivery receipt", &events.Receipt{MessageSource: types.MessageSource{Chat: alicePN, Sender: alicePN},
			MessageIDs: []types.MessageID{"M1"}, Type: types.ReceiptTypeDelivered}, nil},
		{"read receipt", &events.Receipt{MessageSource: types.MessageSource{Chat: alicePN, Sender: alicePN},
			MessageIDs: []types.MessageID{"M1"}, Type: types.ReceiptTypeRead}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(sm.sink.inbound())
			if refused := sm.dispatch(tc.evt); refused {
				t.Fatalf("handler refused %T", tc.evt)
			}
			// A sentinel after the event: once it arrives, the event was
			// handled (the queue is ordered).
			sentinel := "sentinel-" + tc.name
			sm.dispatch(&events.Message{Info: msgInfo(alicePN, alicePN, "S-"+tc.name), Message: text(sentinel)})
			eventually(t, "sentinel", func() bool {
				in := sm.sink.inbound()
				return len(in) > 0 && in[len(in)-1].Text == sentinel
			})
			got := sm.sink.inbound()[before:]
			got = got[:len(got)-1]
			switch {
			case tc.want == nil && len(got) != 0:
				t.Fatalf("delivered %+v; want nothing", got)
			case tc.want != nil && len(got) != 1:
				t.Fatalf("delivered %d messages; want 1: %+v", len(got), got)
			case tc.want != nil:
				g := got[0]
				g.Time = time.Time{}
				if !reflect.DeepEqual(g, *tc.want) {
					t.Fatalf("delivered\n %+v\nwant\n %+v", g, *tc.want)
				}
			}
		})
	}
	if logs := sm.logs.String(); !strings.Contains(logs, "lid=987654321012345@lid") {
		t.Errorf("the unmatched LID is not in the log:\n%s", logs)
	}
}

// TestHandlerNeverBlocks: with the queue full and the gateway not taking
// messages, whatsmeow's dispatcher returns at once; the refused messages
// are reported as handler failures (whatsmeow then leaves them
// unacknowledged for WhatsApp to redeliver).
func TestHandlerNeverBlocks(t *testing.T) {
	sm := newSeam(t, 2)
	gate := make(chan struct{})
	sm.sink.mu.Lock()
	sm.sink.block = gate
	sm.sink.mu.Unlock()
	// The first message is taken by the serve loop, which then blocks in
	// Deliver; wait until the queue is empty again.
	sm.dispatch(&events.Message{Info: msgInfo(alicePN, alicePN, "Q0"), Message: text("q0")})
	eventually(t, "serve loop busy", func() bool { return len(sm.s.msgs) == 0 })
	var refused []bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 5; i++ {
			refused = append(refused, sm.dispatch(&events.Message{Info: msgInfo(alicePN, alicePN, "Q"+string(rune('0'+i))),
				Message: text("q")}))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("whatsmeow's dispatcher blocked on a full queue")
	}
	want := []bool{false, false, true, true, true}
	for i := range want {
		if refused[i] != want[i] {
			t.Fatalf("refused = %v; want %v (queue of 2)", refused, want)
		}
	}
	if n := sm.s.refused.Load(); n != 3 {
		t.Errorf("refused counter = %d; want 3", n)
	}
	close(gate)
	eventually(t, "queued messages delivered", func() bool { return len(sm.sink.inbound()) == 3 })
	if !strings.Contains(sm.logs.String(), "inbound queue full") {
		t.Error("a full queue is not logged")
	}
}

// TestConnectionEvents: each connection event ends the run (or not) with
// the error the Supervisor and the status need.
func TestConnectionEvents(t *testing.T) {
	cases := []struct {
		name  string
		evt   any
		check func(error) bool
	}{
		{"disconnected", &events.Disconnected{}, func(err error) bool { return errors.Is(err, errDisconnected) }},
		{"logged out from the phone", &events.LoggedOut{Reason: events.ConnectFailureLoggedOut},
			func(err error) bool { r, ok := relinkReason(err); return ok && r == "logged out from the phone" }},
		{"stream replaced", &events.StreamReplaced{}, func(err error) bool {
			var perm *providers.PermanentError
			return errors.As(err, &perm) && errors.Is(err, errStreamReplaced)
		}},
		{"client outdated", &events.ClientOutdated{}, func(err error) bool {
			var perm *providers.PermanentError
			return errors.As(err, &perm) && errors.Is(err, errOutdated)
		}},
		{"temporary ban", &events.TemporaryBan{Code: events.TempBanSentToTooManyPeople, Expire: time.Hour}, func(err error) bool {
			var ban *whatsapp.BannedError
			return errors.As(err, &ban) && time.Until(ban.Expire) > 50*time.Minute && strings.Contains(err.Error(), "banned")
		}},
		{"keepalive lost for long", &events.KeepAliveTimeout{ErrorCount: 9, LastSuccess: time.Now().Add(-10 * time.Minute)},
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "keepalive") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sm := newSeam(t, 4)
			// A short keepalive gap does not end the run.
			sm.dispatch(&events.KeepAliveTimeout{ErrorCount: 1, LastSuccess: time.Now()})
			sm.dispatch(tc.evt)
			select {
			case err := <-sm.done:
				sm.done <- err // for the cleanup
				if !tc.check(err) {
					t.Fatalf("serve returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("serve did not end on %T", tc.evt)
			}
		})
	}
}

// TestBanReportedAndWaitedOut: a temporary ban ends the connection and
// becomes the account's status ("temporarily banned ... until"), and the
// run waits the ban out instead of reconnecting (which would prolong it);
// a stop during the wait returns at once.
func TestBanReportedAndWaitedOut(t *testing.T) {
	sm := newSeam(t, 4)
	sm.dispatch(&events.TemporaryBan{Code: events.TempBanSentToTooManyPeople, Expire: time.Hour})
	var err error
	select {
	case err = <-sm.done:
		sm.done <- err // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not end on a ban")
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan error, 1)
	go func() { finished <- sm.s.finish(ctx, err) }()
	eventually(t, "banned status", func() bool {
		st := sm.sink.lastState()
		return st.state == providers.StateReconnecting && st.err != nil && strings.Contains(st.err.Error(), "temporarily banned")
	})
	var ban *whatsapp.BannedError
	if !errors.As(sm.sink.lastState().err, &ban) || ban.Code != events.TempBanSentToTooManyPeople.String() {
		t.Fatalf("status error = %v; want a whatsapp.BannedError with the code", sm.sink.lastState().err)
	}
	select {
	case err := <-finished:
		t.Fatalf("finish returned %v during the ban; want it to wait", err)
	default:
	}
	cancel()
	select {
	case err := <-finished:
		if err != nil {
			t.Fatalf("finish after stop = %v; want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("finish did not return on stop")
	}
}
