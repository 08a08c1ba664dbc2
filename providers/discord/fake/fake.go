package fake

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Fixed ids of the fake (the Discord docs' example message: "Supa Hot" by
// Mason).
const (
	BotUserID = "1234567890123456789"
	SenderID  = "53908099506183680"  // Mason
	DMChannel = "319674150115610528" // Mason's DM channel with the bot
	GuildID   = "290926798626357999"
	GuildChan = "290926798999357250"
	SessionID = "d6e2a1c0f0b04fdb9d6b1b1b1a2f7e11"
)

// Sent is one message the bot created (or edited) over REST.
type Sent struct {
	ChannelID string
	Content   string
	ReplyTo   string
	ID        string
	Edit      bool
}

// Server is the fake Discord: REST under /api/v9 and the gateway over a
// WebSocket.
type Server struct {
	URL   string // base URL: REST at URL+"/api/v9", gateway at ws://host/
	Token string // bot token, without the "Bot " prefix

	// HeartbeatInterval is sent in HELLO (default 1 s).
	HeartbeatInterval time.Duration

	srv *httptest.Server
	up  websocket.Upgrader

	mu         sync.Mutex
	conns      map[*websocket.Conn]*gwConn
	wg         sync.WaitGroup
	seq        int64
	log        []dispatch // every dispatched event, for RESUME
	sent       []Sent
	identifies int
	resumes    int
	heartbeats int
	intents    int
	silent     bool // accept sockets but never say HELLO
	nextID     int64
	closed     bool
}

type gwConn struct {
	ws      *websocket.Conn
	ready   bool // identified or resumed: dispatches flow
	writeMu sync.Mutex
}

type dispatch struct {
	s int64
	t string
	d json.RawMessage
}

// New starts the fake for a bot token.
func New(token string) *Server {
	s := &Server{Token: token, HeartbeatInterval: time.Second, conns: map[*websocket.Conn]*gwConn{},
		nextID: 1000000000000000000}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the fake and waits for its goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.UnderlyingConn().Close()
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
	s.wg.Wait()
}

// SetSilent makes new gateway sockets wait forever without HELLO.
func (s *Server) SetSilent(v bool) {
	s.mu.Lock()
	s.silent = v
	s.mu.Unlock()
}

// SenderID implements the contract's Fake.
func (s *Server) SenderID() string { return SenderID }

// Drop cuts every gateway socket without a close frame.
func (s *Server) Drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.UnderlyingConn().Close()
	}
}

// Reconnect sends op 7 (Reconnect) to every socket.
func (s *Server) Reconnect() { s.sendAll(map[string]any{"op": 7, "d": nil, "s": nil, "t": nil}) }

// Counts of gateway handshakes.
func (s *Server) Identifies() int { s.mu.Lock(); defer s.mu.Unlock(); return s.identifies }

// Resumes returns how many RESUMEs were accepted.
func (s *Server) Resumes() int { s.mu.Lock(); defer s.mu.Unlock(); return s.resumes }

// Heartbeats returns how many op 1 heartbeats the client sent.
func (s *Server) Heartbeats() int { s.mu.Lock(); defer s.mu.Unlock(); return s.heartbeats }

// Intents returns the intents of the last IDENTIFY.
func (s *Server) Intents() int { s.mu.Lock(); defer s.mu.Unlock(); return s.intents }

// Live returns the number of ready sockets.
func (s *Server) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.conns {
		if c.ready {
			n++
		}
	}
	return n
}

// Sent returns the messages the bot created or edited, in order.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

func (s *Server) id() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	return strconv.FormatInt(s.nextID, 10)
}

// User is a user object.
func User(id, name string, bot bool) map[string]any {
	return map[string]any{"id": id, "username": name, "global_name": name, "avatar": "a_bab14f271d565501444b2ca3be944b25",
		"discriminator": "0", "public_flags": 131141, "bot": bot}
}

// Message builds a message object like the docs' example. guildID "" is a
// DM; roles are the author's member roles in the guild.
func Message(id, channelID, guildID, authorID, content string, roles []string) map[string]any {
	m := map[string]any{
		"id": id, "channel_id": channelID, "author": User(authorID, "Mason", false),
		"content": content, "timestamp": "2017-07-11T17:27:07.299000+00:00", "edited_timestamp": nil,
		"tts": false, "mention_everyone": false, "mentions": []any{}, "mention_roles": []any{},
		"attachments": []any{}, "embeds": []any{}, "pinned": false, "type": 0,
	}
	if guildID != "" {
		m["guild_id"] = guildID
		if roles == nil {
			roles = []string{}
		}
		m["member"] = map[string]any{"roles": roles, "joined_at": "2015-04-26T06:26:56.936000+00:00",
			"deaf": false, "mute": false, "flags": 0}
	}
	return m
}

// Inject dispatches MESSAGE_CREATE in the DM channel from SenderID.
func (s *Server) Inject(text string) string {
	s.Dispatch("MESSAGE_CREATE", Message(s.id(), DMChannel, "", SenderID, text, nil))
	return DMChannel
}

// InjectGuild dispatches MESSAGE_CREATE in the guild channel and returns
// the message id.
func (s *Server) InjectGuild(authorID, text string, roles []string) string {
	id := s.id()
	s.Dispatch("MESSAGE_CREATE", Message(id, GuildChan, GuildID, authorID, text, roles))
	return id
}

// Dispatch sends an op 0 event to every ready socket (and keeps it for
// RESUME). Dispatches are written under the server lock, so every socket
// sees them in sequence order.
func (s *Server) Dispatch(t string, d any) {
	raw, _ := json.Marshal(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	ev := dispatch{s: s.seq, t: t, d: raw}
	s.log = append(s.log, ev)
	for _, c := range s.conns {
		if c.ready {
			s.writeDispatch(c, ev, false)
		}
	}
}

func (s *Server) writeDispatch(c *gwConn, ev dispatch, binary bool) {
	frame, _ := json.Marshal(map[string]any{"op": 0, "s": ev.s, "t": ev.t, "d": ev.d})
	s.writeFrame(c, frame, binary)
}

// writeFrame sends a text frame, or a zlib-compressed binary frame as the
// gateway does for large payloads when the client asked for compression.
func (s *Server) writeFrame(c *gwConn, frame []byte, binary bool) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if binary {
		var buf bytes.Buffer
		zw := zlib.NewWriter(&buf)
		_, _ = zw.Write(frame)
		_ = zw.Close()
		_ = c.ws.WriteMessage(websocket.BinaryMessage, buf.Bytes())
		return
	}
	_ = c.ws.WriteMessage(websocket.TextMessage, frame)
}

func (s *Server) sendAll(v any) {
	frame, _ := json.Marshal(v)
	s.mu.Lock()
	var targets []*gwConn
	for _, c := range s.conns {
		targets = append(targets, c)
	}
	s.mu.Unlock()
	for _, c := range targets {
		s.writeFrame(c, frame, false)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		s.serveGateway(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v9/")
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "404: Not Found", "code": 0})
		return
	}
	if r.Header.Get("Authorization") != "Bot "+s.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "401: Unauthorized", "code": 0})
		return
	}
	parts := strings.Split(rest, "/")
	switch {
	case r.Method == http.MethodGet && rest == "gateway":
		writeJSON(w, http.StatusOK, map[string]any{"url": "ws" + strings.TrimPrefix(s.URL, "http")})
	case r.Method == http.MethodGet && rest == "gateway/bot":
		writeJSON(w, http.StatusOK, map[string]any{"url": "ws" + strings.TrimPrefix(s.URL, "http"), "shards": 1,
			"session_start_limit": map[string]any{"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1}})
	case r.Method == http.MethodGet && rest == "users/@me":
		writeJSON(w, http.StatusOK, User(BotUserID, "clawgate-test", true))
	case len(parts) == 3 && parts[0] == "channels" && parts[2] == "messages" && r.Method == http.MethodPost:
		s.createMessage(w, r, parts[1])
	case len(parts) == 4 && parts[0] == "channels" && parts[2] == "messages" && r.Method == http.MethodPatch:
		s.editMessage(w, r, parts[1], parts[3])
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "404: Not Found", "code": 0})
	}
}

type messageSend struct {
	Content   string `json:"content"`
	Reference *struct {
		MessageID string `json:"message_id"`
	} `json:"message_reference"`
}

func (s *Server) createMessage(w http.ResponseWriter, r *http.Request, channelID string) {
	var body messageSend
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "400: Bad Request", "code": 0})
		return
	}
	if strings.TrimSpace(body.Content) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Cannot send an empty message", "code": 50006})
		return
	}
	if len([]rune(body.Content)) > 2000 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Invalid Form Body", "code": 50035})
		return
	}
	id := s.id()
	sent := Sent{ChannelID: channelID, Content: body.Content, ID: id}
	if body.Reference != nil {
		sent.ReplyTo = body.Reference.MessageID
	}
	s.mu.Lock()
	s.sent = append(s.sent, sent)
	s.mu.Unlock()
	m := Message(id, channelID, "", BotUserID, body.Content, nil)
	m["author"] = User(BotUserID, "clawgate-test", true)
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) editMessage(w http.ResponseWriter, r *http.Request, channelID, messageID string) {
	var body messageSend
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "400: Bad Request", "code": 0})
		return
	}
	s.mu.Lock()
	s.sent = append(s.sent, Sent{ChannelID: channelID, Content: body.Content, ID: messageID, Edit: true})
	s.mu.Unlock()
	m := Message(messageID, channelID, "", BotUserID, body.Content, nil)
	m["author"] = User(BotUserID, "clawgate-test", true)
	m["edited_timestamp"] = time.Now().UTC().Format(time.RFC3339Nano)
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("v") != "9" || r.URL.Query().Get("encoding") != "json" {
		http.Error(w, "unsupported gateway version or encoding", http.StatusBadRequest)
		return
	}
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &gwConn{ws: ws}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.Close()
		return
	}
	s.conns[ws] = c
	silent := s.silent
	s.wg.Add(1)
	s.mu.Unlock()
	go s.gateway(c, silent)
}

type gatewayPayload struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d"`
}

// gateway runs one socket: HELLO, then IDENTIFY or RESUME, heartbeats.
func (s *Server) gateway(c *gwConn, silent bool) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c.ws)
		s.mu.Unlock()
		_ = c.ws.Close()
	}()
	if !silent {
		hello := fmt.Sprintf(`{"op":10,"d":{"heartbeat_interval":%d,"_trace":["[\"gateway-prd-us-east1-b-0568\",{\"micros\":0.0}]"]},"s":null,"t":null}`,
			s.HeartbeatInterval.Milliseconds())
		s.writeFrame(c, []byte(hello), false)
	}
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var p gatewayPayload
		if json.Unmarshal(data, &p) != nil {
			s.closeWith(c, 4002, "Error while decoding payload.")
			return
		}
		switch p.Op {
		case 1:
			s.mu.Lock()
			s.heartbeats++
			s.mu.Unlock()
			s.writeFrame(c, []byte(`{"op":11,"d":null,"s":null,"t":null}`), false)
		case 2:
			var id struct {
				Token   string `json:"token"`
				Intents int    `json:"intents"`
			}
			_ = json.Unmarshal(p.D, &id)
			if strings.TrimPrefix(id.Token, "Bot ") != s.Token {
				s.closeWith(c, 4004, "Authentication failed.")
				return
			}
			s.ready(c, id.Intents)
		case 6:
			var rs struct {
				Token     string `json:"token"`
				SessionID string `json:"session_id"`
				Seq       int64  `json:"seq"`
			}
			_ = json.Unmarshal(p.D, &rs)
			if strings.TrimPrefix(rs.Token, "Bot ") != s.Token {
				s.closeWith(c, 4004, "Authentication failed.")
				return
			}
			if rs.SessionID != SessionID {
				s.writeFrame(c, []byte(`{"op":9,"d":false,"s":null,"t":null}`), false)
				continue
			}
			s.resume(c, rs.Seq)
		}
	}
}

func (s *Server) closeWith(c *gwConn, code int, reason string) {
	c.writeMu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	c.writeMu.Unlock()
}

// ready answers IDENTIFY with READY (as a zlib binary frame).
func (s *Server) ready(c *gwConn, intents int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.identifies++
	s.intents = intents
	s.seq++
	d := map[string]any{
		"v": 9, "user": User(BotUserID, "clawgate-test", true), "guilds": []any{map[string]any{"id": GuildID, "unavailable": true}},
		"session_id": SessionID, "resume_gateway_url": "ws" + strings.TrimPrefix(s.URL, "http"),
		"shard": []int{0, 1}, "application": map[string]any{"id": BotUserID, "flags": 565248},
		"private_channels": []any{}, "relationships": []any{}, "presences": []any{},
	}
	raw, _ := json.Marshal(d)
	s.writeDispatch(c, dispatch{s: s.seq, t: "READY", d: raw}, true)
	c.ready = true
}

// resume replays what the session missed after seq, then RESUMED.
func (s *Server) resume(c *gwConn, after int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumes++
	for _, ev := range s.log {
		if ev.s > after {
			s.writeDispatch(c, ev, false)
		}
	}
	s.seq++
	s.writeDispatch(c, dispatch{s: s.seq, t: "RESUMED", d: json.RawMessage(`{"_trace":["[\"gateway-prd-us-east1-b-0568\",{\"micros\":0.0}]"]}`)}, false)
	c.ready = true
}
