package fake

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Fixed ids of the fake workspace (shaped like Slack's documentation
// examples).
const (
	TeamID   = "T061EG9R6"
	AppID    = "A01K58AR4RF"
	BotUser  = "U0BOT0001"
	BotID    = "B0BOT0001"
	SenderID = "U061F7AUR" // the user Inject speaks as
	DMChat   = "D024BE91L" // SenderID's direct-message channel with the bot
)

// Sent is one chat.postMessage (or chat.update) the fake accepted.
type Sent struct {
	Channel  string
	Text     string
	ThreadTS string
	TS       string
	Update   bool
}

// Server is the fake Slack: Web API over HTTP and Socket Mode over a
// WebSocket.
type Server struct {
	URL    string // base URL; the API is at URL+"/api/"
	APIURL string // URL + "/api/", for slack.OptionAPIURL

	BotToken string
	AppToken string

	// PingEvery is how often the WebSocket side sends PING control frames
	// (Slack does this; the client reconnects without them).
	PingEvery time.Duration

	srv *httptest.Server
	up  websocket.Upgrader

	mu      sync.Mutex
	conns   map[*websocket.Conn]chan struct{} // live sockets → closed when their writer must stop
	wg      sync.WaitGroup
	unacked map[string][]byte // envelope id → frame, resent on the next connection
	order   []string
	acks    []string
	sent    []Sent
	calls   map[string]int
	opens   int
	nextEnv int
	nextEvt int
	nextTS  int64
	closed  bool
}

// New starts the fake for the given bot (xoxb-) and app-level (xapp-)
// tokens.
func New(botToken, appToken string) *Server {
	s := &Server{BotToken: botToken, AppToken: appToken, PingEvery: 300 * time.Millisecond,
		conns: map[*websocket.Conn]chan struct{}{}, unacked: map[string][]byte{}, calls: map[string]int{},
		nextTS: 1355517523}
	// Slack's socket accepts the Origin its SDKs send.
	s.up.CheckOrigin = func(r *http.Request) bool {
		o := r.Header.Get("Origin")
		return o == "" || o == "https://api.slack.com"
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	s.APIURL = s.srv.URL + "/api/"
	return s
}

// Close stops the fake and waits for its goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c, stop := range s.conns {
		close(stop)
		_ = c.UnderlyingConn().Close()
		delete(s.conns, c)
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
	s.wg.Wait()
}

// SenderID implements the contract's Fake.
func (s *Server) SenderID() string { return SenderID }

// Drop cuts every Socket Mode connection without a close frame.
func (s *Server) Drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, stop := range s.conns {
		close(stop)
		_ = c.UnderlyingConn().Close()
		delete(s.conns, c)
	}
}

// Disconnect asks every connection to reconnect the way Slack does before
// it rotates a socket: a {"type":"disconnect"} frame.
func (s *Server) Disconnect() {
	frame := []byte(`{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"applink-7fc4fdbb64-4x5xq"}}`)
	s.broadcast(frame)
}

// Connections returns how many times apps.connections.open was called.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens
}

// Live returns the number of open sockets.
func (s *Server) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Acks returns the envelope ids the client acknowledged, in order.
func (s *Server) Acks() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.acks...)
}

// Unacked returns how many envelopes wait for an ack.
func (s *Server) Unacked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.unacked)
}

// Sent returns the messages the app posted, in order.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// Calls returns how many times a Web API method was called.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Inject delivers a direct message from SenderID and returns the channel.
func (s *Server) Inject(text string) string {
	s.InjectMessage(DMChat, "im", SenderID, text)
	return DMChat
}

// InjectMessage delivers a message event (events_api envelope) and
// returns its event_id.
func (s *Server) InjectMessage(channel, channelType, user, text string) string {
	ts := s.ts()
	return s.InjectEvent(map[string]any{
		"type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
		"event_ts": ts, "channel_type": channelType, "client_msg_id": fmt.Sprintf("%08d-0000-4000-8000-000000000000", s.seq()),
		"team": TeamID,
	}, "")
}

func (s *Server) ts() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextTS++
	return strconv.FormatInt(s.nextTS, 10) + ".000100"
}

func (s *Server) seq() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextEvt++
	return s.nextEvt
}

// InjectEvent wraps an inner event in an event_callback and an
// events_api envelope and sends it. eventID "" picks a fresh one; reusing
// one replays the event (Slack retries with the same event_id).
func (s *Server) InjectEvent(inner map[string]any, eventID string) string {
	if eventID == "" {
		eventID = fmt.Sprintf("Ev%010d", s.seq())
	}
	s.mu.Lock()
	s.nextEnv++
	env := fmt.Sprintf("%08x-3b9f-4c2e-9c1c-%012d", s.nextEnv, s.nextEnv)
	s.mu.Unlock()
	frame, _ := json.Marshal(map[string]any{
		"envelope_id": env, "type": "events_api", "accepts_response_payload": false,
		"retry_attempt": 0, "retry_reason": "",
		"payload": map[string]any{
			"token": "XXYYZZ", "team_id": TeamID, "api_app_id": AppID, "event": inner,
			"type": "event_callback", "event_id": eventID, "event_time": time.Now().Unix(),
			"authorizations": []any{map[string]any{"enterprise_id": nil, "team_id": TeamID,
				"user_id": BotUser, "is_bot": true, "is_enterprise_install": false}},
			"is_ext_shared_channel": false, "event_context": "4-eyJldCI6Im1lc3NhZ2UifQ",
		},
	})
	s.mu.Lock()
	s.unacked[env] = frame
	s.order = append(s.order, env)
	s.mu.Unlock()
	s.broadcast(frame)
	return eventID
}

// InjectRaw sends a raw frame to every connection (for hostile input).
func (s *Server) InjectRaw(frame []byte) { s.broadcast(frame) }

func (s *Server) broadcast(frame []byte) {
	s.mu.Lock()
	conns := make([]*websocket.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		s.write(c, frame)
	}
}

// write sends one text frame; gorilla allows one concurrent writer, so
// writes to a connection are serialized on the fake's lock.
func (s *Server) write(c *websocket.Conn, frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, live := s.conns[c]; !live {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = c.WriteMessage(websocket.TextMessage, frame)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code string) {
	writeJSON(w, map[string]any{"ok": false, "error": code})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/link/" || r.URL.Path == "/link" {
		s.serveSocket(w, r)
		return
	}
	method, ok := strings.CutPrefix(r.URL.Path, "/api/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	form, err := parseForm(r)
	if err != nil {
		fail(w, "invalid_form_data")
		return
	}
	token := form.Get("token")
	if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		token = h
	}
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
	switch method {
	case "apps.connections.open":
		if token != s.AppToken {
			fail(w, "invalid_auth")
			return
		}
		s.mu.Lock()
		s.opens++
		s.mu.Unlock()
		u := "ws" + strings.TrimPrefix(s.URL, "http") + "/link/?ticket=" + fmt.Sprintf("fake-ticket-%d", s.Connections()) + "&app_id=" + AppID
		writeJSON(w, map[string]any{"ok": true, "url": u})
	case "auth.test":
		if token != s.BotToken {
			fail(w, "invalid_auth")
			return
		}
		writeJSON(w, map[string]any{"ok": true, "url": "https://subarachnoid.slack.com/", "team": "Subarachnoid Workspace",
			"user": "clawgate", "team_id": TeamID, "user_id": BotUser, "bot_id": BotID, "is_enterprise_install": false})
	case "chat.postMessage", "chat.update":
		if token != s.BotToken {
			fail(w, "invalid_auth")
			return
		}
		s.postMessage(w, form, method == "chat.update")
	default:
		fail(w, "unknown_method")
	}
}

func parseForm(r *http.Request) (url.Values, error) {
	v := r.URL.Query()
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	if err != nil {
		return nil, err
	}
	switch ct {
	case "application/x-www-form-urlencoded", "":
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, err
		}
		for k, vals := range q {
			v[k] = append(v[k], vals...)
		}
	case "application/json":
		if len(strings.TrimSpace(string(body))) == 0 {
			return v, nil
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		for k, x := range m {
			if str, ok := x.(string); ok {
				v.Set(k, str)
			}
		}
	}
	return v, nil
}

func (s *Server) postMessage(w http.ResponseWriter, form url.Values, update bool) {
	channel, text := form.Get("channel"), form.Get("text")
	switch {
	case channel == "":
		fail(w, "channel_not_found")
		return
	case strings.TrimSpace(text) == "":
		fail(w, "no_text")
		return
	case len([]rune(text)) > 40000:
		fail(w, "msg_too_long")
		return
	}
	ts := form.Get("ts")
	if !update {
		ts = s.ts()
	}
	sent := Sent{Channel: channel, Text: text, ThreadTS: form.Get("thread_ts"), TS: ts, Update: update}
	s.mu.Lock()
	s.sent = append(s.sent, sent)
	s.mu.Unlock()
	writeJSON(w, map[string]any{"ok": true, "channel": channel, "ts": ts,
		"message": map[string]any{"type": "message", "subtype": "bot_message", "text": text, "ts": ts,
			"user": BotUser, "bot_id": BotID}})
}

func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Query().Get("ticket"), "fake-ticket-") {
		http.Error(w, "invalid ticket", http.StatusUnauthorized)
		return
	}
	c, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	stop := make(chan struct{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.conns[c] = stop
	pending := make([][]byte, 0, len(s.order))
	for _, env := range s.order {
		if f, ok := s.unacked[env]; ok {
			pending = append(pending, f)
		}
	}
	s.wg.Add(2)
	s.mu.Unlock()

	// Slack pings first, then says hello, then redelivers what was not
	// acknowledged on earlier connections.
	go s.pinger(c, stop)
	_ = c.SetReadDeadline(time.Time{})
	s.write(c, []byte(fmt.Sprintf(`{"type":"hello","num_connections":%d,"debug_info":{"host":"applink-7fc4fdbb64-4x5xq","build_number":10,"approximate_connection_time":18060},"connection_info":{"app_id":"%s"}}`, s.Live(), AppID)))
	for _, f := range pending {
		s.write(c, f)
	}
	go s.reader(c, stop)
}

func (s *Server) pinger(c *websocket.Conn, stop chan struct{}) {
	defer s.wg.Done()
	t := time.NewTicker(s.PingEvery)
	defer t.Stop()
	for {
		s.mu.Lock()
		_, live := s.conns[c]
		if live {
			_ = c.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second))
		}
		s.mu.Unlock()
		if !live {
			return
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// reader records acks ({"envelope_id": ...}) until the socket closes.
func (s *Server) reader(c *websocket.Conn, stop chan struct{}) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		if st, ok := s.conns[c]; ok {
			close(st)
			delete(s.conns, c)
		}
		s.mu.Unlock()
		_ = c.Close()
	}()
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string `json:"envelope_id"`
		}
		if json.Unmarshal(data, &ack) == nil && ack.EnvelopeID != "" {
			s.mu.Lock()
			s.acks = append(s.acks, ack.EnvelopeID)
			delete(s.unacked, ack.EnvelopeID)
			s.mu.Unlock()
		}
	}
}
