package bolt

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/store"
)

func TestSessionsAppendTrimReopen(t *testing.T) {
	path := statePath(t)
	db := mustOpen(t, path)
	if _, _, err := db.SessionHistory("main", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("history of a fresh file: %v, want ErrNotFound", err)
	}
	if _, err := db.AppendMessage("main", store.SessionMeta{}, store.SessionMessage{Role: "user", Text: "x"}, 0); err == nil {
		t.Fatal("a new session without a session id was accepted")
	}
	for i := 1; i <= 7; i++ {
		m, err := db.AppendMessage("main", store.SessionMeta{SessionID: "sid-1"},
			store.SessionMessage{Role: "user", Text: fmt.Sprintf("message %d", i), TimestampMs: int64(1000 + i)}, 5)
		if err != nil {
			t.Fatal(err)
		}
		if want := min(i, 5); m.MessageCount != want {
			t.Fatalf("after %d appends MessageCount = %d, want %d", i, m.MessageCount, want)
		}
	}
	if _, err := db.AppendMessage("telegram:default:42", store.SessionMeta{SessionID: "sid-2", Channel: "telegram", ChatID: "42"},
		store.SessionMessage{Role: "user", Text: strings.Repeat("long ", 100), TimestampMs: 5000}, 5); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = mustOpen(t, path)
	meta, msgs, err := db.SessionHistory("main", 0)
	if err != nil {
		t.Fatal(err)
	}
	if meta.SessionID != "sid-1" || meta.CreatedAtMs != 1001 || meta.UpdatedAtMs != 1007 || len(msgs) != 5 {
		t.Fatalf("meta %+v, %d messages", meta, len(msgs))
	}
	if msgs[0].Text != "message 3" || msgs[4].Text != "message 7" || meta.LastPreview != "message 7" {
		t.Fatalf("kept %q..%q preview %q", msgs[0].Text, msgs[4].Text, meta.LastPreview)
	}
	_, last2, _ := db.SessionHistory("main", 2)
	if len(last2) != 2 || last2[0].Text != "message 6" {
		t.Fatalf("limit 2: %+v", last2)
	}
	list, err := db.ListSessions()
	if err != nil || len(list) != 2 || list[0].Key != "telegram:default:42" || list[0].Channel != "telegram" {
		t.Fatalf("list %+v %v", list, err)
	}
	if n := len([]rune(list[0].LastPreview)); n > 121 {
		t.Fatalf("preview has %d runes", n)
	}
	n, err := db.PruneSessions(2000)
	if err != nil || n != 1 {
		t.Fatalf("prune: %d %v", n, err)
	}
	if _, _, err := db.SessionHistory("main", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("pruned session still there: %v", err)
	}
	if _, _, err := db.SessionHistory("telegram:default:42", 0); err != nil {
		t.Fatalf("recent session pruned: %v", err)
	}
	if _, err := db.AppendMessage("", store.SessionMeta{SessionID: "s"}, store.SessionMessage{}, 0); err == nil {
		t.Fatal("empty key accepted")
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}
