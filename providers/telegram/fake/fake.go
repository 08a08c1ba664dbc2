package fake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// BotID and BotUsername describe the fake bot (getMe).
const (
	BotID       = 123456789
	BotUsername = "clawgate_test_bot"
	// SenderID is the private-chat user Inject speaks as (the Bot API docs'
	// webhook example user).
	SenderID = 1111111
)

// Sent is one message the bot sent (sendMessage) or edited.
type Sent struct {
	ChatID    string
	Text      string
	ThreadID  string
	ReplyTo   string
	MessageID int
	Edit      bool
}

// Server is the fake Bot API.
type Server struct {
	URL   string
	Token string

	srv *httptest.Server
	// MaxHold caps how long getUpdates is held open (default 2 s).
	MaxHold time.Duration

	mu          sync.Mutex
	updates     []json.RawMessage // queued, in update_id order
	updateIDs   []int64
	nextUpdate  int64
	nextMessage int
	confirmed   int64 // highest update_id confirmed by an offset
	offsets     []int64
	sent        []Sent
	calls       map[string]int
	failNext    int
	webhookURL  string
	webhookSec  string
	wake        chan struct{} // closed and replaced when updates arrive or Drop
	closed      bool
}

// New starts a fake for token on a loopback port.
func New(token string) *Server {
	s := &Server{Token: token, MaxHold: 2 * time.Second, nextUpdate: 10000, nextMessage: 1365,
		calls: map[string]int{}, wake: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the server, ending every held request.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.kickLocked()
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

func (s *Server) kickLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// Drop cuts every open client connection (an in-flight long poll fails)
// and answers the next getUpdates with 502 Bad Gateway, as Telegram's
// front end does in an outage.
func (s *Server) Drop() {
	s.mu.Lock()
	s.failNext = 1
	s.kickLocked()
	s.mu.Unlock()
	s.srv.CloseClientConnections()
}

// SenderID implements the contract's Fake.
func (s *Server) SenderID() string { return strconv.Itoa(SenderID) }

// Inject queues a private-chat text message from SenderID and returns the
// chat id.
func (s *Server) Inject(text string) string {
	s.InjectMessage(SenderID, "private", SenderID, text)
	return strconv.Itoa(SenderID)
}

// InjectMessage queues a message update. chatType is "private", "group",
// "supergroup" or "channel". It returns the update_id.
func (s *Server) InjectMessage(chatID int64, chatType string, fromID int64, text string) int64 {
	s.mu.Lock()
	mid := s.nextMessage
	s.nextMessage++
	s.mu.Unlock()
	return s.InjectUpdate(map[string]any{"message": Message(mid, chatID, chatType, fromID, text)})
}

// Message builds a Message object shaped like the Bot API docs' example.
func Message(messageID int, chatID int64, chatType string, fromID int64, text string) map[string]any {
	chat := map[string]any{"id": chatID, "type": chatType}
	if chatType == "private" {
		chat["first_name"] = "Test"
		chat["last_name"] = "Lastname"
		chat["username"] = "Test"
	} else {
		chat["title"] = "Test group"
	}
	return map[string]any{
		"message_id": messageID,
		"from": map[string]any{"id": fromID, "is_bot": false, "first_name": "Test",
			"last_name": "Lastname", "username": "Test", "language_code": "en"},
		"chat": chat,
		"date": 1441645532,
		"text": text,
	}
}

// InjectUpdate queues an update with the next update_id; fields are the
// update's payload (e.g. {"message": {...}}).
func (s *Server) InjectUpdate(fields map[string]any) int64 {
	s.mu.Lock()
	id := s.nextUpdate
	s.nextUpdate++
	s.mu.Unlock()
	s.InjectUpdateWithID(id, fields)
	return id
}

// InjectUpdateWithID queues an update with a chosen update_id, so a test
// can redeliver one (at-least-once delivery).
func (s *Server) InjectUpdateWithID(id int64, fields map[string]any) {
	u := map[string]any{"update_id": id}
	for k, v := range fields {
		u[k] = v
	}
	raw, _ := json.Marshal(u)
	s.mu.Lock()
	defer s.mu.Unlock()
	if id >= s.nextUpdate {
		s.nextUpdate = id + 1
	}
	s.updates = append(s.updates, raw)
	s.updateIDs = append(s.updateIDs, id)
	s.kickLocked()
}

// Sent returns the messages the bot sent, in order.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// Calls returns how many times method was called.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Offsets returns the offset of every getUpdates call, in order.
func (s *Server) Offsets() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.offsets...)
}

// Pending returns how many updates are not yet confirmed.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.updates)
}

// Webhook returns the URL and secret token of the last setWebhook.
func (s *Server) Webhook() (url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.webhookURL, s.webhookSec
}

// PostWebhook delivers one update to the registered webhook the way
// Telegram does: a JSON POST with X-Telegram-Bot-Api-Secret-Token. It
// returns the HTTP status.
func (s *Server) PostWebhook(ctx context.Context, update map[string]any) (int, error) {
	url, secret := s.Webhook()
	if url == "" {
		return 0, fmt.Errorf("fake: no webhook set")
	}
	body, _ := json.Marshal(update)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, desc string) {
	writeJSON(w, status, map[string]any{"ok": false, "error_code": status, "description": desc})
}

func ok(w http.ResponseWriter, result any) {
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "result": result})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rest, found := strings.CutPrefix(r.URL.Path, "/bot")
	if !found {
		fail(w, http.StatusNotFound, "Not Found")
		return
	}
	token, method, found := strings.Cut(rest, "/")
	if !found || method == "" {
		fail(w, http.StatusNotFound, "Not Found")
		return
	}
	if token != s.Token {
		fail(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	params, err := parseParams(r)
	if err != nil {
		fail(w, http.StatusBadRequest, "Bad Request: "+err.Error())
		return
	}
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
	switch method {
	case "getMe":
		ok(w, map[string]any{"id": BotID, "is_bot": true, "first_name": "Clawgate Test",
			"username": BotUsername, "can_join_groups": true, "can_read_all_group_messages": false,
			"supports_inline_queries": false})
	case "getUpdates":
		s.getUpdates(w, r, params)
	case "sendMessage":
		s.sendMessage(w, params, false)
	case "editMessageText":
		s.sendMessage(w, params, true)
	case "setWebhook":
		s.mu.Lock()
		s.webhookURL, s.webhookSec = params.Get("url"), params.Get("secret_token")
		s.mu.Unlock()
		ok(w, true)
	case "deleteWebhook":
		s.mu.Lock()
		s.webhookURL, s.webhookSec = "", ""
		if params.Get("drop_pending_updates") == "true" {
			s.updates, s.updateIDs = nil, nil
		}
		s.mu.Unlock()
		ok(w, true)
	default:
		fail(w, http.StatusNotFound, "Not Found")
	}
}

// parseParams reads parameters the ways the Bot API accepts them: query
// string, urlencoded, multipart/form-data (each field a string; objects
// JSON-encoded) or a JSON body.
func parseParams(r *http.Request) (url.Values, error) {
	v := r.URL.Query()
	ct, ctParams, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := io.LimitReader(r.Body, 50<<20)
	switch ct {
	case "multipart/form-data":
		raw, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			break // a parameterless call (getMe) may send an empty body
		}
		mr := multipart.NewReader(bytes.NewReader(raw), ctParams["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			b, err := io.ReadAll(part)
			if err != nil {
				return nil, err
			}
			v.Add(part.FormName(), string(b))
		}
	case "application/x-www-form-urlencoded":
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		q, err := url.ParseQuery(string(b))
		if err != nil {
			return nil, err
		}
		for k, vals := range q {
			v[k] = append(v[k], vals...)
		}
	case "application/json":
		var m map[string]any
		if err := json.NewDecoder(body).Decode(&m); err != nil {
			return nil, err
		}
		for k, x := range m {
			switch t := x.(type) {
			case string:
				v.Set(k, t)
			default:
				b, _ := json.Marshal(t)
				v.Set(k, string(b))
			}
		}
	}
	return v, nil
}

func (s *Server) getUpdates(w http.ResponseWriter, r *http.Request, p url.Values) {
	offset, _ := strconv.ParseInt(p.Get("offset"), 10, 64)
	limit, _ := strconv.Atoi(p.Get("limit"))
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	timeout, _ := strconv.Atoi(p.Get("timeout"))
	hold := min(time.Duration(timeout)*time.Second, s.MaxHold)

	s.mu.Lock()
	s.offsets = append(s.offsets, offset)
	if s.failNext > 0 {
		s.failNext--
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>")
		return
	}
	if s.webhookURL != "" {
		s.mu.Unlock()
		fail(w, http.StatusConflict, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first")
		return
	}
	s.mu.Unlock()

	deadline := time.NewTimer(hold)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		// An offset confirms every update with a smaller id.
		if offset > 0 {
			keep := 0
			for i, id := range s.updateIDs {
				if id >= offset {
					s.updates[keep], s.updateIDs[keep] = s.updates[i], id
					keep++
				} else if id > s.confirmed {
					s.confirmed = id
				}
			}
			s.updates, s.updateIDs = s.updates[:keep], s.updateIDs[:keep]
		}
		n := min(len(s.updates), limit)
		batch := append([]json.RawMessage(nil), s.updates[:n]...)
		wake, closed := s.wake, s.closed
		s.mu.Unlock()
		if n > 0 || closed {
			ok(w, batch)
			return
		}
		select {
		case <-wake:
		case <-deadline.C:
			ok(w, []json.RawMessage{})
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) sendMessage(w http.ResponseWriter, p url.Values, edit bool) {
	chat := p.Get("chat_id")
	text := p.Get("text")
	chatID, err := strconv.ParseInt(chat, 10, 64)
	switch {
	case chat == "":
		fail(w, http.StatusBadRequest, "Bad Request: chat_id is empty")
		return
	case err != nil:
		fail(w, http.StatusBadRequest, "Bad Request: chat not found")
		return
	case strings.TrimSpace(text) == "":
		fail(w, http.StatusBadRequest, "Bad Request: message text is empty")
		return
	case len([]rune(text)) > 4096:
		fail(w, http.StatusBadRequest, "Bad Request: message is too long")
		return
	}
	s.mu.Lock()
	mid := s.nextMessage
	if edit {
		mid, _ = strconv.Atoi(p.Get("message_id"))
	} else {
		s.nextMessage++
	}
	sent := Sent{ChatID: chat, Text: text, ThreadID: p.Get("message_thread_id"), MessageID: mid, Edit: edit}
	if rp := p.Get("reply_parameters"); rp != "" {
		var x struct {
			MessageID int `json:"message_id"`
		}
		_ = json.Unmarshal([]byte(rp), &x)
		sent.ReplyTo = strconv.Itoa(x.MessageID)
	}
	s.sent = append(s.sent, sent)
	s.mu.Unlock()
	chatType := "private"
	if chatID < 0 {
		chatType = "supergroup"
	}
	msg := map[string]any{
		"message_id": mid,
		"from":       map[string]any{"id": BotID, "is_bot": true, "first_name": "Clawgate Test", "username": BotUsername},
		"chat":       map[string]any{"id": chatID, "type": chatType},
		"date":       time.Now().Unix(),
		"text":       text,
	}
	if edit {
		msg["edit_date"] = time.Now().Unix()
	}
	ok(w, msg)
}
