package providers

import (
	"strings"
	"testing"
	"time"
)

func TestValidID(t *testing.T) {
	cases := []struct {
		syntax IDSyntax
		id     string
		ok     bool
	}{
		{IDNumeric, "1111111", true},
		{IDNumeric, "-1001234567890", true},
		{IDNumeric, "", false},
		{IDNumeric, "@alice", false},
		{IDNumeric, "+9991111111", false},
		{IDNumeric, "01111111", false},
		{IDNumeric, "-0", false},
		{IDNumeric, " 1111111", false},
		{IDNumeric, "1111111 ", false},
		{IDNumeric, "99999999999999999999", false}, // overflows int64
		{IDSnowflake, "175928847299117063", true},
		{IDSnowflake, "-175928847299117063", false},
		{IDSnowflake, "0", false},
		{IDSlack, "U0123ABCD", true},
		{IDSlack, "C024BE91L", true},
		{IDSlack, "u0123abcd", false},
		{IDSlack, "U", false},
		{IDSlack, "@alice", false},
		{IDOpaque, "abc-DEF_1", true},
		{IDOpaque, "a b", false},
		{IDOpaque, "a\u200bb", false},
		{IDOpaque, "a\x00b", false},
		{IDOpaque, strings.Repeat("x", 129), false},
	}
	for _, c := range cases {
		if got := ValidID(c.syntax, c.id); got != c.ok {
			t.Errorf("ValidID(%d, %q) = %v, want %v", c.syntax, c.id, got, c.ok)
		}
	}
}

// TestPolicyConfigRejectsUsernames is attack I2: an allowlist entry can
// never be a username, which can be given up and taken over.
func TestPolicyConfigRejectsUsernames(t *testing.T) {
	for _, syntax := range []IDSyntax{IDNumeric, IDSnowflake, IDSlack} {
		err := CheckPolicy(Policy{AllowFrom: []string{"@alice"}}, syntax)
		if err == nil || !strings.Contains(err.Error(), "not a username") {
			t.Errorf("syntax %d: @alice accepted or unclear error: %v", syntax, err)
		}
	}
	if err := CheckPolicy(Policy{Owners: []string{"*"}}, IDNumeric); err == nil {
		t.Error("owners: [\"*\"] accepted")
	}
	if err := CheckPolicy(Policy{AllowTo: []string{"alice"}}, IDNumeric); err == nil {
		t.Error("allowTo with a name accepted")
	}
	if err := CheckPolicy(Policy{AllowFrom: []string{"1111111", "*"}, AllowTo: []string{"*"}, Owners: []string{"1111111"}}, IDNumeric); err != nil {
		t.Errorf("valid policy refused: %v", err)
	}
}

// TestPolicyDecide is attack I7: exact equality on ids, empty means deny,
// and a wildcard never implies owner.
func TestPolicyDecide(t *testing.T) {
	none := func(string) bool { return false }
	msg := func(sender string) *Inbound {
		return &Inbound{Kind: KindMessage, ID: "1", ChatID: "5", ChatType: ChatGroup, SenderID: sender, Text: "hi"}
	}
	mustCompile := func(p Policy) *policy {
		t.Helper()
		c, err := compilePolicy(p, IDNumeric)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	empty := mustCompile(Policy{})
	if v := empty.decide(msg("1111111"), none); v != drop {
		t.Errorf("empty allowFrom admitted a sender (verdict %d)", v)
	}

	list := mustCompile(Policy{AllowFrom: []string{"1111111"}})
	for _, sender := range []string{"9991111111", "11111111", "111111", "-1111111"} {
		if v := list.decide(msg(sender), none); v != drop {
			t.Errorf("allowFrom [1111111] admitted %q", sender)
		}
	}
	if v := list.decide(msg("1111111"), none); v != admit {
		t.Errorf("allowlisted sender dropped")
	}
	if v := list.decide(msg("2222222"), func(id string) bool { return id == "2222222" }); v != admit {
		t.Errorf("pairing-approved sender dropped")
	}

	// An empty sender id is refused by the shape check before any
	// allowlist, wildcard included.
	wild := mustCompile(Policy{AllowFrom: []string{"*"}, Owners: []string{"1111111"}})
	if r := wild.checkShape(msg("")); r == "" {
		t.Error("empty sender id passed the shape check")
	}
	if v := wild.decide(msg("2222222"), none); v != admit {
		t.Error("wildcard did not admit an identified sender")
	}
	if wild.isOwner("2222222") || wild.isOwner("") || wild.isOwner("*") {
		t.Error("wildcard allowFrom implied owner")
	}
	if !wild.isOwner("1111111") {
		t.Error("listed owner not recognised")
	}

	roles := mustCompile(Policy{AllowRoles: []string{"42"}})
	m := msg("3333333")
	if v := roles.decide(m, none); v != drop {
		t.Error("sender without the role admitted")
	}
	m.SenderRoles = []string{"7", "42"}
	if v := roles.decide(m, none); v != admit {
		t.Error("sender with an allowed role dropped")
	}

	pair := mustCompile(Policy{DMPairing: true})
	dm := msg("4444444")
	dm.ChatType = ChatDirect
	if v := pair.decide(dm, none); v != offerPairing {
		t.Errorf("unknown DM sender: verdict %d, want pairing offer", v)
	}
	if v := pair.decide(msg("4444444"), none); v != drop {
		t.Error("pairing offered in a group chat")
	}
	dm.Kind = KindReaction
	if v := pair.decide(dm, none); v != drop {
		t.Error("pairing offered for a reaction")
	}
}

// TestShapeChecks is attack I13 at the policy layer.
func TestShapeChecks(t *testing.T) {
	p, _ := compilePolicy(Policy{AllowFrom: []string{"*"}, MaxTextBytes: 1024}, IDNumeric)
	ok := Inbound{Kind: KindMessage, ID: "5:1", ChatID: "5", SenderID: "5", Text: "hello \u202e RTL is text"}
	if r := p.checkShape(&ok); r != "" {
		t.Fatalf("valid message refused: %s", r)
	}
	bad := map[string]func(*Inbound){
		"too large":      func(m *Inbound) { m.Text = strings.Repeat("a", 1025) },
		"invalid utf8":   func(m *Inbound) { m.Text = "a\xff\xfeb" },
		"no id":          func(m *Inbound) { m.ID = "" },
		"no chat":        func(m *Inbound) { m.ChatID = "" },
		"chat username":  func(m *Inbound) { m.ChatID = "@chan" },
		"sender name":    func(m *Inbound) { m.SenderName = "\xff" },
		"huge thread id": func(m *Inbound) { m.ThreadID = strings.Repeat("1", 200) },
	}
	for name, mut := range bad {
		m := ok
		mut(&m)
		if r := p.checkShape(&m); r == "" {
			t.Errorf("%s: passed the shape check", name)
		}
	}
	def, _ := compilePolicy(Policy{}, IDNumeric)
	huge := ok
	huge.Text = strings.Repeat("a", 10<<20)
	if r := def.checkShape(&huge); r != "text too large" {
		t.Errorf("10 MB text: %q", r)
	}
}

// TestParseCommand: commands are matched only when their name is plain
// ASCII; zero-width and bidi characters make it plain text (I13).
func TestParseCommand(t *testing.T) {
	cases := map[string]string{
		"/config":                     "config",
		"/Config now":                 "config",
		"/start@my_bot hello":         "start",
		"/con\u200bfig":               "",
		"/config\u200b":               "",
		"/\u202egifnoc":               "",
		"/con\u00adfig":               "",
		"/ config":                    "",
		"config":                      "",
		"/":                           "",
		"/cfg@bad\u200bbot":           "",
		"/" + strings.Repeat("a", 33): "",
	}
	for in, want := range cases {
		if got := ParseCommand(in); got != want {
			t.Errorf("ParseCommand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPairingBookBounds(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := newPairingBook(func() time.Time { return now })
	m := func(sender string) *Inbound {
		return &Inbound{Channel: "telegram", AccountID: "default", SenderID: sender, ChatID: sender, ChatType: ChatDirect}
	}
	first := b.offer(m("100"))
	if first == nil || len(first.Code) != pairingCodeLen {
		t.Fatalf("first offer: %+v", first)
	}
	if b.offer(m("100")) != nil {
		t.Error("second code for the same sender within the hour")
	}
	for i := 1; i < MaxPendingPerAcct; i++ {
		if b.offer(m(string(rune('a'+i))+"1")) == nil {
			t.Fatalf("offer %d refused below the bound", i)
		}
	}
	if b.offer(m("999")) != nil {
		t.Errorf("offer beyond %d pending accepted", MaxPendingPerAcct)
	}
	if err := b.dismiss(first.Code); !err {
		t.Fatal("dismiss of a live code failed")
	}
	if b.offer(m("100")) != nil {
		t.Error("a dismissed sender got a new code within the hour")
	}
	now = now.Add(PairingTTL + time.Second)
	again := b.offer(m("100"))
	if again == nil {
		t.Fatal("no new code after the hour")
	}
	if _, ok := b.approve("WRONGCOD"); ok {
		t.Error("unknown code approved")
	}
	req, ok := b.approve(again.Code)
	if !ok || req.SenderID != "100" || !b.isApproved("100") {
		t.Errorf("approve: %+v %v", req, ok)
	}
	if _, ok := b.approve(again.Code); ok {
		t.Error("a code was approved twice")
	}
	for _, c := range again.Code {
		if !strings.ContainsRune(pairingAlphabet, c) {
			t.Errorf("code %q has %q outside the alphabet", again.Code, c)
		}
	}
}
