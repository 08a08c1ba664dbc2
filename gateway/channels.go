package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/clawgate/clawgate/protocol"
	"github.com/clawgate/clawgate/providers"
)

// Channel method limits.
const (
	// sendTimeout bounds one provider send; it does not depend on the
	// caller's connection, so a retry after a disconnect finds the real
	// outcome in the dedupe cache.
	sendTimeout = 30 * time.Second
	// probeTimeout is the default and the cap of channels.status probes.
	probeTimeout    = 10 * time.Second
	maxProbeTimeout = 30 * time.Second
	logoutTimeout   = 15 * time.Second
)

// EventSessionMessage carries one message appended to a session.
const EventSessionMessage = "session.message"

// noChannelMessage is the real gateway's answer to send without channels.
const noChannelMessage = "Error: Channel is required (no configured channels detected). " +
	"Add a telegram, slack or discord section to the config file's \"channels\"."

func (s *Server) registerChannelMethods() {
	s.handle("send", true, s.methodSend)
	s.handle("channels.status", true, s.methodChannelsStatus)
	s.handle("channels.logout", true, s.methodChannelsLogout)
	s.handle("channels.pairing.list", false, s.methodChannelsPairingList)
	s.handle("channels.pairing.approve", true, s.methodChannelsPairingApprove)
	s.handle("channels.pairing.dismiss", false, s.methodChannelsPairingDismiss)
	s.registerWebLogin() // web.login.start/wait (weblogin.go)
}

// watchChannels turns admitted inbound messages into session.message and
// chat events for operators with read scope, and status changes into a
// health event. The returned func stops it.
func (s *Server) watchChannels() (stop func()) {
	hub := s.opts.Providers
	if hub == nil {
		return func() {}
	}
	stopLogin := s.watchWebLogin() // web.login events (weblogin.go)
	stopHub := hub.Watch(func(ev providers.Event) {
		switch {
		case ev.Inbound != nil:
			s.emitInbound(ev.Inbound)
		case ev.Status != nil:
			s.bumpHealth()
		}
	})
	return func() { stopHub(); stopLogin() }
}

// inboundMessage is the message object of an inbound event, shaped like a
// transcript entry.
type inboundMessage struct {
	Role       string         `json:"role"`
	Content    []inboundPart  `json:"content"`
	Timestamp  int64          `json:"timestamp"`
	Channel    string         `json:"channel"`
	AccountID  string         `json:"accountId"`
	SenderID   string         `json:"senderId"`
	SenderName string         `json:"senderName,omitempty"`
	MessageID  string         `json:"messageId,omitempty"`
	Provenance map[string]any `json:"provenance,omitempty"`
}

type inboundPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// sessionMessageEvent is the payload of session.message for an inbound
// provider message, edit or reaction.
type sessionMessageEvent struct {
	SessionKey string         `json:"sessionKey"`
	Message    inboundMessage `json:"message"`
	Kind       string         `json:"kind"`
	Channel    string         `json:"channel"`
	AccountID  string         `json:"accountId"`
	ChatID     string         `json:"chatId"`
	ChatType   string         `json:"chatType"`
	ThreadID   string         `json:"threadId,omitempty"`
	MessageID  string         `json:"messageId,omitempty"`
	SenderID   string         `json:"senderId"`
	SenderName string         `json:"senderName,omitempty"`
	FromOwner  bool           `json:"fromOwner"`
	Ts         int64          `json:"ts"`
}

// inboundChatEvent is a chat event (state final, role user) for an
// inbound message; its fields are those ChatEvent allows.
type inboundChatEvent struct {
	RunID      string         `json:"runId"`
	SessionKey string         `json:"sessionKey"`
	Seq        int            `json:"seq"`
	State      string         `json:"state"`
	Message    inboundMessage `json:"message"`
}

func (s *Server) emitInbound(in *providers.Inbound) {
	key := ProviderSessionKey(*in)
	ts := in.Time.UnixMilli()
	msg := inboundMessage{Role: "user", Content: []inboundPart{{Type: "text", Text: in.Text}}, Timestamp: ts,
		Channel: in.Channel, AccountID: in.AccountID, SenderID: in.SenderID, SenderName: in.SenderName,
		MessageID: in.MessageID, Provenance: map[string]any{"kind": "external_user", "channel": in.Channel}}
	s.bus.broadcast(EventSessionMessage, sessionMessageEvent{
		SessionKey: key, Message: msg, Kind: string(in.Kind), Channel: in.Channel, AccountID: in.AccountID,
		ChatID: in.ChatID, ChatType: string(in.ChatType), ThreadID: in.ThreadID, MessageID: in.MessageID,
		SenderID: in.SenderID, SenderName: in.SenderName, FromOwner: in.FromOwner, Ts: s.nowMs(),
	}, nil, nil)
	if in.Kind == providers.KindMessage {
		s.bus.broadcast(protocol.EventChat, inboundChatEvent{
			RunID: "inbound:" + in.Channel + ":" + in.AccountID + ":" + in.ID, SessionKey: key,
			Seq: 0, State: "final", Message: msg,
		}, nil, nil)
	}
}

// sendParams are the send method's params (SendParams).
type sendParams struct {
	To             string   `json:"to"`
	Message        string   `json:"message"`
	MediaURL       string   `json:"mediaUrl"`
	MediaURLs      []string `json:"mediaUrls"`
	Buffer         string   `json:"buffer"`
	Channel        string   `json:"channel"`
	AccountID      string   `json:"accountId"`
	ThreadID       string   `json:"threadId"`
	ReplyToID      string   `json:"replyToId"`
	IdempotencyKey string   `json:"idempotencyKey"`
}

// sendResult is send's result: runId is the idempotency key.
type sendResult struct {
	RunID          string `json:"runId"`
	MessageID      string `json:"messageId"`
	Channel        string `json:"channel"`
	AccountID      string `json:"accountId"`
	ChatID         string `json:"chatId,omitempty"`
	ChannelID      string `json:"channelId,omitempty"`
	ConversationID string `json:"conversationId,omitempty"`
}

// methodSend delivers text through a channel account. The request is
// checked and routed first (mistakes are not cached); then the delivery
// runs once per idempotency key: a retry gets the cached outcome and a
// concurrent duplicate waits for the first, so a message is never sent
// twice.
func (s *Server) methodSend(ctx context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p sendParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid send params: " + err.Error())
	}
	if p.MediaURL != "" || len(p.MediaURLs) > 0 || p.Buffer != "" {
		return nil, protocol.InvalidRequest("send: media is not supported yet; send text in message")
	}
	if strings.TrimSpace(p.Message) == "" {
		return nil, protocol.InvalidRequest("send: message text is empty")
	}
	hub := s.opts.Providers
	if hub == nil {
		return nil, protocol.InvalidRequest(noChannelMessage)
	}
	route, err := hub.Resolve(p.Channel, p.AccountID)
	if err != nil {
		return nil, routeError(hub, p.Channel, p.AccountID, err)
	}
	out := providers.Outbound{To: p.To, Text: p.Message, ThreadID: p.ThreadID, ReplyToID: p.ReplyToID}
	payload, err, cached := s.dedupe.do(ctx, "send:"+p.IdempotencyKey, func() (any, error) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
		defer cancel()
		res, err := hub.Send(sctx, route, out)
		if err != nil {
			return nil, sendError(route, err)
		}
		r := sendResult{RunID: p.IdempotencyKey, MessageID: res.MessageID, Channel: route.Channel,
			AccountID: route.AccountID, ChatID: res.ChatID, ChannelID: res.ChannelID, ConversationID: p.To}
		c.log.Info("message sent", "channel", route.Channel, "account", route.AccountID, "to", p.To)
		return r, nil
	})
	if cached {
		c.log.Debug("send answered from the idempotency cache", "channel", route.Channel)
	}
	return payload, err
}

func routeError(hub providers.Hub, channel, account string, err error) error {
	switch {
	case errors.Is(err, providers.ErrNoChannel):
		return protocol.InvalidRequest(noChannelMessage)
	case errors.Is(err, providers.ErrAmbiguous):
		return protocol.InvalidRequest("Error: Channel is required when several channels are configured (" +
			strings.Join(channelNames(hub), ", ") + ")")
	case errors.Is(err, providers.ErrUnknownAccount):
		what := "channel " + quote(channel)
		if account != "" {
			what += " account " + quote(account)
		}
		return protocol.InvalidRequest("unknown " + what + "; configured: " + strings.Join(channelNames(hub), ", "))
	}
	return err
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return fmt.Sprintf("%q", s)
}

func channelNames(hub providers.Hub) []string {
	var out []string
	seen := map[string]bool{}
	for _, st := range hub.Statuses() {
		if !seen[st.Channel] {
			seen[st.Channel] = true
			out = append(out, st.Channel)
		}
	}
	return out
}

// sendError maps a delivery failure to the protocol: policy refusals are
// FORBIDDEN or INVALID_REQUEST, everything the service did is UNAVAILABLE.
func sendError(r providers.Route, err error) error {
	switch {
	case errors.Is(err, providers.ErrNotAllowed):
		return &protocol.Error{Code: protocol.ErrForbidden,
			Message: "send: destination is not in the " + r.Channel + " account's allowTo list",
			Details: map[string]any{"code": "DESTINATION_NOT_ALLOWED", "channel": r.Channel, "accountId": r.AccountID}}
	case errors.Is(err, providers.ErrBadOutbound):
		return protocol.InvalidRequest("send: " + strings.TrimPrefix(err.Error(), "providers: "))
	case errors.Is(err, providers.ErrLoggedOut):
		return &protocol.Error{Code: protocol.ErrUnavailable, Message: "send: " + r.Channel + " account " + r.AccountID + " is logged out",
			Details: map[string]any{"code": "CHANNEL_LOGGED_OUT"}}
	}
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return &protocol.Error{Code: protocol.ErrUnavailable, Message: "send failed: " + msg, Retryable: false}
}

// channelsStatusParams are channels.status's params.
type channelsStatusParams struct {
	Probe     bool   `json:"probe"`
	TimeoutMs int64  `json:"timeoutMs"`
	Channel   string `json:"channel"`
}

// accountStatus is one entry of channelAccounts.
type accountStatus struct {
	AccountID         string                 `json:"accountId"`
	Name              string                 `json:"name,omitempty"`
	Enabled           bool                   `json:"enabled"`
	Configured        bool                   `json:"configured"`
	Running           bool                   `json:"running"`
	Connected         bool                   `json:"connected"`
	ReconnectAttempts int                    `json:"reconnectAttempts"`
	LastConnectedAt   *int64                 `json:"lastConnectedAt"`
	LastError         *string                `json:"lastError"`
	HealthState       string                 `json:"healthState"`
	LastStartAt       *int64                 `json:"lastStartAt"`
	LastStopAt        *int64                 `json:"lastStopAt"`
	LastInboundAt     *int64                 `json:"lastInboundAt"`
	LastOutboundAt    *int64                 `json:"lastOutboundAt"`
	Mode              string                 `json:"mode,omitempty"`
	DMPolicy          string                 `json:"dmPolicy"`
	AllowFrom         []string               `json:"allowFrom"`
	TokenSource       string                 `json:"tokenSource,omitempty"`
	Dropped           int64                  `json:"dropped"`
	Duplicates        int64                  `json:"duplicates"`
	Probe             *providers.ProbeResult `json:"probe,omitempty"`
}

type channelSummary struct {
	Configured bool   `json:"configured"`
	Running    bool   `json:"running"`
	Connected  bool   `json:"connected"`
	Accounts   int    `json:"accounts"`
	LastError  string `json:"lastError,omitempty"`
}

type channelsStatusResult struct {
	Ts                      int64                      `json:"ts"`
	ChannelOrder            []string                   `json:"channelOrder"`
	ChannelLabels           map[string]string          `json:"channelLabels"`
	Channels                map[string]channelSummary  `json:"channels"`
	ChannelAccounts         map[string][]accountStatus `json:"channelAccounts"`
	ChannelDefaultAccountID map[string]string          `json:"channelDefaultAccountId"`
}

func msPtr(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

func toAccountStatus(st providers.Status) accountStatus {
	a := accountStatus{AccountID: st.AccountID, Name: st.Label, Enabled: st.State != providers.StateLoggedOut,
		Configured: true, Running: st.Running(), Connected: st.Connected(), ReconnectAttempts: st.Restarts,
		LastConnectedAt: msPtr(st.LastConnectedAt), HealthState: string(st.State),
		LastStartAt: msPtr(st.LastStartAt), LastStopAt: msPtr(st.LastStopAt),
		LastInboundAt: msPtr(st.LastInboundAt), LastOutboundAt: msPtr(st.LastOutboundAt),
		Mode: st.Mode, DMPolicy: "allowlist", AllowFrom: st.AllowFrom, TokenSource: st.TokenSource,
		Dropped: st.Dropped, Duplicates: st.Duplicates}
	if st.DMPairing {
		a.DMPolicy = "pairing"
	}
	if a.AllowFrom == nil {
		a.AllowFrom = []string{}
	}
	if st.LastError != "" {
		e := st.LastError
		a.LastError = &e
	}
	return a
}

func (s *Server) methodChannelsStatus(ctx context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p channelsStatusParams
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, protocol.InvalidRequest("invalid channels.status params: " + err.Error())
		}
	}
	res := channelsStatusResult{Ts: s.nowMs(), ChannelOrder: []string{}, ChannelLabels: map[string]string{},
		Channels: map[string]channelSummary{}, ChannelAccounts: map[string][]accountStatus{},
		ChannelDefaultAccountID: map[string]string{}}
	hub := s.opts.Providers
	if hub == nil {
		if p.Channel != "" {
			return nil, protocol.InvalidRequest("unknown channel " + quote(p.Channel) + "; none configured")
		}
		return res, nil
	}
	var statuses []providers.Status
	for _, st := range hub.Statuses() {
		if p.Channel == "" || st.Channel == p.Channel {
			statuses = append(statuses, st)
		}
	}
	if p.Channel != "" && len(statuses) == 0 {
		return nil, protocol.InvalidRequest("unknown channel " + quote(p.Channel) + "; configured: " + strings.Join(channelNames(hub), ", "))
	}
	var probes []*providers.ProbeResult
	if p.Probe {
		probes = s.probeAll(ctx, hub, statuses, p.TimeoutMs)
	}
	for i, st := range statuses {
		if _, seen := res.ChannelLabels[st.Channel]; !seen {
			res.ChannelOrder = append(res.ChannelOrder, st.Channel)
			res.ChannelLabels[st.Channel] = st.ChannelLabel
			res.ChannelDefaultAccountID[st.Channel] = st.AccountID
		}
		a := toAccountStatus(st)
		if probes != nil {
			a.Probe = probes[i]
		}
		res.ChannelAccounts[st.Channel] = append(res.ChannelAccounts[st.Channel], a)
		sum := res.Channels[st.Channel]
		sum.Configured = true
		sum.Running = sum.Running || st.Running()
		sum.Connected = (sum.Accounts == 0 || sum.Connected) && st.Connected()
		if sum.LastError == "" {
			sum.LastError = st.LastError
		}
		sum.Accounts++
		res.Channels[st.Channel] = sum
	}
	return res, nil
}

// probeAll probes every account at once, each bounded by the timeout.
func (s *Server) probeAll(ctx context.Context, hub providers.Hub, statuses []providers.Status, timeoutMs int64) []*providers.ProbeResult {
	timeout := probeTimeout
	if timeoutMs > 0 {
		timeout = min(time.Duration(timeoutMs)*time.Millisecond, maxProbeTimeout)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]*providers.ProbeResult, len(statuses))
	var wg sync.WaitGroup
	for i, st := range statuses {
		wg.Go(func() {
			res, ok, err := hub.Probe(pctx, providers.Route{Channel: st.Channel, AccountID: st.AccountID})
			switch {
			case err != nil:
				out[i] = &providers.ProbeResult{Error: err.Error()}
			case ok:
				out[i] = &res
			}
		})
	}
	wg.Wait()
	return out
}

type channelsLogoutParams struct {
	Channel   string `json:"channel"`
	AccountID string `json:"accountId"`
}

// methodChannelsLogout stops an account until the gateway restarts (admin
// only by the default-deny scope rule). Bot tokens stay in their files
// ("cleared": false; remove them there to forget them); a channel linked
// as a device (WhatsApp) forgets its session ("cleared": true) and must be
// linked again.
func (s *Server) methodChannelsLogout(ctx context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p channelsLogoutParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid channels.logout params: " + err.Error())
	}
	hub := s.opts.Providers
	if hub == nil {
		return nil, protocol.InvalidRequest("unknown channel " + quote(p.Channel) + "; none configured")
	}
	route, err := hub.Resolve(p.Channel, p.AccountID)
	if err != nil {
		return nil, routeError(hub, p.Channel, p.AccountID, err)
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logoutTimeout)
	defer cancel()
	st, err := hub.Logout(lctx, route)
	if err != nil {
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "channels.logout: " + err.Error()}
	}
	c.log.Info("channel logged out", "channel", route.Channel, "account", route.AccountID)
	return map[string]any{"channel": route.Channel, "accountId": route.AccountID, "cleared": st.Cleared,
		"loggedOut": st.State == providers.StateLoggedOut, "state": string(st.State)}, nil
}

type pairingParams struct {
	Channel   string `json:"channel"`
	AccountID string `json:"accountId"`
	RequestID string `json:"requestId"`
	Notify    bool   `json:"notify"`
	Bootstrap bool   `json:"bootstrapCommandOwner"`
}

func (s *Server) methodChannelsPairingList(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p pairingParams
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, protocol.InvalidRequest("invalid channels.pairing.list params: " + err.Error())
		}
	}
	accounts := []map[string]any{}
	requests := []map[string]any{}
	res := map[string]any{"accounts": accounts, "requests": requests, "commandOwnerConfigured": false,
		"limits": map[string]any{"pendingPerAccount": providers.MaxPendingPerAcct, "ttlMs": providers.PairingTTL.Milliseconds()}}
	hub := s.opts.Providers
	if hub == nil {
		return res, nil
	}
	match := func(channel, account string) bool {
		return (p.Channel == "" || p.Channel == channel) && (p.AccountID == "" || p.AccountID == account)
	}
	labels := map[string]string{}
	for _, st := range hub.Statuses() {
		labels[st.Channel] = st.ChannelLabel
		if match(st.Channel, st.AccountID) {
			a := map[string]any{"channel": st.Channel, "channelLabel": st.ChannelLabel, "accountId": st.AccountID, "notifySupported": true}
			if st.Label != "" {
				a["accountLabel"] = st.Label
			}
			accounts = append(accounts, a)
		}
	}
	for _, r := range hub.PairingRequests() {
		if !match(r.Channel, r.AccountID) {
			continue
		}
		label := r.SenderName
		if label == "" {
			label = r.SenderID
		}
		requests = append(requests, map[string]any{"requestId": r.Code, "channel": r.Channel,
			"channelLabel": labels[r.Channel], "accountId": r.AccountID, "senderId": r.SenderID, "senderLabel": label,
			"createdAt": r.CreatedAt.UTC().Format(time.RFC3339Nano), "lastSeenAt": r.LastSeenAt.UTC().Format(time.RFC3339Nano),
			"expiresAt": r.ExpiresAt.UTC().Format(time.RFC3339Nano), "notifySupported": true})
	}
	sort.SliceStable(requests, func(i, j int) bool { return requests[i]["createdAt"].(string) < requests[j]["createdAt"].(string) })
	res["accounts"], res["requests"] = accounts, requests
	return res, nil
}

// methodChannelsPairingApprove admits the sender of a pairing code (admin
// only by the default-deny scope rule) and optionally tells them.
func (s *Server) methodChannelsPairingApprove(ctx context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p pairingParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid channels.pairing.approve params: " + err.Error())
	}
	hub := s.opts.Providers
	if hub == nil {
		return nil, protocol.InvalidRequest("unknown channel " + quote(p.Channel) + "; none configured")
	}
	route := providers.Route{Channel: p.Channel, AccountID: p.AccountID}
	req, err := hub.ApprovePairing(route, strings.ToUpper(strings.TrimSpace(p.RequestID)))
	if err != nil {
		if errors.Is(err, providers.ErrUnknownAccount) {
			return nil, routeError(hub, p.Channel, p.AccountID, err)
		}
		return nil, protocol.InvalidRequest("unknown or expired pairing request")
	}
	c.log.Info("channel pairing approved", "channel", route.Channel, "account", route.AccountID, "sender", req.SenderID)
	notification := "not-requested"
	if p.Notify {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
		_, err := hub.Send(sctx, route, providers.Outbound{To: req.ChatID, Text: "You have been approved; messages you send here now reach the gateway."})
		cancel()
		notification = "sent"
		if err != nil {
			notification = "failed"
		}
	}
	bootstrap := "not-requested"
	if p.Bootstrap {
		bootstrap = "unavailable"
	}
	return map[string]any{"requestId": req.Code, "senderId": req.SenderID, "notification": notification,
		"commandOwnerBootstrap": bootstrap}, nil
}

func (s *Server) methodChannelsPairingDismiss(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p pairingParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid channels.pairing.dismiss params: " + err.Error())
	}
	hub := s.opts.Providers
	if hub == nil {
		return nil, protocol.InvalidRequest("unknown channel " + quote(p.Channel) + "; none configured")
	}
	route := providers.Route{Channel: p.Channel, AccountID: p.AccountID}
	code := strings.ToUpper(strings.TrimSpace(p.RequestID))
	var sender string
	for _, r := range hub.PairingRequests() {
		if r.Channel == route.Channel && r.AccountID == route.AccountID && r.Code == code {
			sender = r.SenderID
		}
	}
	if err := hub.DismissPairing(route, code); err != nil {
		if errors.Is(err, providers.ErrUnknownAccount) {
			return nil, routeError(hub, p.Channel, p.AccountID, err)
		}
		return nil, protocol.InvalidRequest("unknown or expired pairing request")
	}
	return map[string]any{"requestId": code, "senderId": sender}, nil
}

// channelHealth is the channels section of health: one entry per channel
// (all its accounts folded), in configuration order.
func (s *Server) channelHealth() (map[string]protocol.ChannelHealth, []string, map[string]string) {
	channels, order, labels := map[string]protocol.ChannelHealth{}, []string{}, map[string]string{}
	hub := s.opts.Providers
	if hub == nil {
		return channels, order, labels
	}
	for _, st := range hub.Statuses() {
		h, seen := channels[st.Channel]
		if !seen {
			order = append(order, st.Channel)
			labels[st.Channel] = st.ChannelLabel
			h.Connected = true
		}
		h.Configured = true
		h.Running = h.Running || st.Running()
		h.Connected = h.Connected && st.Connected()
		if h.LastError == "" {
			h.LastError = st.LastError
		}
		if h.Status == "" || st.State != providers.StateConnected {
			h.Status = string(st.State)
		}
		channels[st.Channel] = h
	}
	return channels, order, labels
}

// channelSummaryLines is status's channelSummary: one line per account.
func (s *Server) channelSummaryLines() []any {
	out := []any{}
	hub := s.opts.Providers
	if hub == nil {
		return out
	}
	for _, st := range hub.Statuses() {
		line := st.ChannelLabel + " " + st.AccountID + ": " + string(st.State)
		if st.LastError != "" {
			line += " (" + st.LastError + ")"
		}
		out = append(out, line)
	}
	return out
}
