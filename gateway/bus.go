package gateway

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

// maxPresence bounds the presence table.
const maxPresence = 200

// bus fans events out to connections and keeps the presence table and the
// state version counters.
type bus struct {
	srv *Server

	mu       sync.Mutex
	presence map[string]protocol.PresenceEntry // key → entry, without self
	version  protocol.StateVersion

	// presenceKick wakes presenceLoop, which coalesces bursts of joins and
	// leaves into one presence event per presenceWindow: connection churn
	// then costs O(connections) per window, not per connect.
	presenceKick chan struct{}

	// flushMu orders presence broadcasts; presenceSent is the presence
	// version the last one carried (under mu). A version is sent once.
	flushMu      sync.Mutex
	presenceSent uint64
}

// presenceWindow is how long presence changes are gathered before one
// presence event carries them all.
const presenceWindow = 50 * time.Millisecond

func (b *bus) init(s *Server) {
	b.srv = s
	b.presence = make(map[string]protocol.PresenceEntry)
	b.version = protocol.StateVersion{Presence: 1, Health: 1}
	b.presenceSent = b.version.Presence // the table hello-ok snapshots
	b.presenceKick = make(chan struct{}, 1)
}

// presenceChanged schedules a presence broadcast.
func (b *bus) presenceChanged() {
	select {
	case b.presenceKick <- struct{}{}:
	default:
	}
}

// presenceLoop sends at most one presence event per presenceWindow, with
// the table as it is when the window closes.
func (b *bus) presenceLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.presenceKick:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(presenceWindow):
		}
		b.flushPresence()
	}
}

// flushPresence broadcasts the presence table unless its version was sent
// already. A change made during a window both lands in that window's event
// and leaves a kick behind; that next window has nothing new and must not
// repeat the version, which clients take as the order of presence states.
func (b *bus) flushPresence() {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	if b.version.Presence == b.presenceSent {
		b.mu.Unlock()
		return
	}
	list, sv := b.presenceListLocked(), b.version
	b.presenceSent = sv.Presence
	b.mu.Unlock()
	b.broadcast(protocol.EventPresence, protocol.PresencePayload{Presence: list}, &sv, nil)
}

// eventGate returns the scope a connection needs to receive an event, or ""
// when the event is open to every authenticated connection.
func eventGate(name string) string {
	switch name {
	case protocol.EventTick, protocol.EventPresence, protocol.EventHealth,
		protocol.EventHeartbeat, protocol.EventShutdown:
		return ""
	case protocol.EventDevicePairRequested, protocol.EventDevicePairResolved,
		protocol.EventNodePairRequested, protocol.EventNodePairResolved:
		return protocol.ScopePairing
	case "exec.approval.requested", "exec.approval.resolved":
		return protocol.ScopeApprovals
	}
	// chat, agent, session and unknown families need read (fail closed).
	return protocol.ScopeRead
}

// broadcast sends an event to every authenticated connection allowed to see
// it, each with its own seq. filter, when set, narrows the recipients.
func (b *bus) broadcast(name string, payload any, sv *protocol.StateVersion, filter func(*Conn) bool) {
	raw := mustJSON(payload)
	gate := eventGate(name)
	for _, c := range b.srv.snapshotConns() {
		sess := c.Session()
		if sess == nil {
			continue
		}
		if gate != "" && (sess.Role != protocol.RoleOperator || !authn.Satisfies(sess.Scopes, gate)) {
			continue
		}
		if filter != nil && !filter(c) {
			continue
		}
		c.enqueueEvent(name, raw, sv)
	}
}

// sendTo sends a targeted event (no seq) to one connection.
func (c *Conn) sendEvent(name string, payload any) bool {
	return c.enqueue(encodeEvent(name, mustJSON(payload), nil, nil))
}

// presenceKey identifies a client in the presence table: its device, else
// its instance, else the connection.
func presenceKey(c *Conn, sess *Session) string {
	switch {
	case sess.DeviceID != "":
		return "device:" + sess.DeviceID
	case sess.Client.InstanceID != "":
		return "instance:" + sess.Client.InstanceID
	}
	return "conn:" + c.id
}

func (s *Server) presenceEntry(c *Conn, sess *Session) protocol.PresenceEntry {
	now := s.nowMs()
	host := sess.Client.DisplayName
	if host == "" {
		host = sess.Client.ID
	}
	ip := c.arrival.Remote.Addr().Unmap().String()
	return protocol.PresenceEntry{
		Host: host, IP: ip, Version: sess.Client.Version, Platform: sess.Client.Platform,
		DeviceFamily: sess.Client.DeviceFamily, ModelIdentifier: sess.Client.ModelIdentifier,
		Mode: sess.Client.Mode, Reason: "connect", Ts: now, OnlineSince: now,
		DeviceID: sess.DeviceID, Roles: []string{sess.Role}, Scopes: sess.Scopes,
		InstanceID: sess.Client.InstanceID,
		Text:       fmt.Sprintf("%s (%s) · app %s · mode %s · reason connect", host, ip, sess.Client.Version, sess.Client.Mode),
	}
}

func (s *Server) selfPresence() protocol.PresenceEntry {
	return protocol.PresenceEntry{
		Host: s.host, IP: s.host, Version: s.opts.Version, Platform: goos(), DeviceFamily: deviceFamily(),
		Mode: "gateway", Reason: "self", InstanceID: s.bootID, Ts: s.nowMs(),
		Text: fmt.Sprintf("Gateway: %s (%s) · app %s · mode gateway · reason self", s.host, s.host, s.opts.Version),
	}
}

// presenceList returns self first, then clients by key.
func (b *bus) presenceList() ([]protocol.PresenceEntry, protocol.StateVersion) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.presenceListLocked(), b.version
}

func (b *bus) presenceListLocked() []protocol.PresenceEntry {
	keys := make([]string, 0, len(b.presence))
	for k := range b.presence {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]protocol.PresenceEntry, 0, len(keys)+1)
	out = append(out, b.srv.selfPresence())
	for _, k := range keys {
		out = append(out, b.presence[k])
	}
	return out
}

// onConnected registers presence (CLI-mode clients are transient and
// skipped) and broadcasts the change.
func (s *Server) onConnected(c *Conn) {
	sess := c.Session()
	if sess.Client.Mode == protocol.ModeCLI {
		return
	}
	key := sess.PresenceKey // set before the session was published (accept)
	b := &s.bus
	b.mu.Lock()
	if _, exists := b.presence[key]; !exists && len(b.presence) >= maxPresence {
		b.mu.Unlock()
		return
	}
	b.presence[key] = s.presenceEntry(c, sess)
	b.version.Presence++
	b.mu.Unlock()
	b.presenceChanged()
}

// onDisconnected removes the connection's presence unless another live
// connection holds the same key.
func (s *Server) onDisconnected(c *Conn) {
	sess := c.Session()
	if sess == nil || sess.PresenceKey == "" {
		return
	}
	for _, o := range s.snapshotConns() {
		if o != c && o.Session() != nil && o.Session().PresenceKey == sess.PresenceKey {
			return
		}
	}
	b := &s.bus
	b.mu.Lock()
	if _, ok := b.presence[sess.PresenceKey]; !ok {
		b.mu.Unlock()
		return
	}
	delete(b.presence, sess.PresenceKey)
	b.version.Presence++
	b.mu.Unlock()
	b.presenceChanged()
}

// bumpHealth records a health change and broadcasts the new summary.
func (s *Server) bumpHealth() {
	b := &s.bus
	b.mu.Lock()
	b.version.Health++
	sv := b.version
	b.mu.Unlock()
	b.broadcast(protocol.EventHealth, s.healthSummary(), &sv, nil)
}

// tickLoop broadcasts tick at the tick interval, pings every client so
// dead peers are noticed, and refreshes health every minute.
func (s *Server) tickLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.TickInterval)
	defer t.Stop()
	healthEvery := max(1, int(time.Minute/s.opts.TickInterval))
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.tickAll()
		s.dedupe.sweep()
		n++
		if n%healthEvery == 0 {
			s.bumpHealth()
		}
	}
}

// tickAll sends every authenticated connection a ping and the tick event.
// Both go out in one non-blocking write where nothing else is queued for
// the connection (queueFrame), so an idle connection needs no goroutine
// for its tick, and its peer's pong is taken by the poller (takePong).
// Otherwise the tick is queued and the connection's writer sends the
// ping: the tick loop never writes to a socket that could block, because
// a peer that does not read would then hold everyone's ticks and pings.
func (s *Server) tickAll() {
	raw := mustJSON(protocol.TickPayload{Ts: s.nowMs()})
	var buf []byte // each frame is built here; queueFrame copies it if queued
	for _, c := range s.snapshotConns() {
		if c.Session() == nil {
			continue
		}
		c.queueFrame(true, true, func() []byte {
			c.seq++
			seq := c.seq
			buf = appendEvent(buf[:0], protocol.EventTick, raw, &seq, nil)
			return buf
		})
	}
}

// hello builds the hello-ok payload for a new session, without features
// (helloFrame adds the encoded list, hello.go).
func (s *Server) hello(c *Conn, sess *Session, a *connectAttempt) protocol.HelloOK {
	presence, sv := s.bus.presenceList()
	h := protocol.HelloOK{
		Type:     "hello-ok",
		Protocol: sess.Protocol,
		Server:   protocol.ServerInfo{Version: s.opts.Version, BootID: s.bootID, ConnID: c.id},
		Snapshot: protocol.Snapshot{
			Presence: presence, Health: s.healthSummary(), StateVersion: sv,
			UptimeMs: s.uptime().Milliseconds(),
		},
		Auth: protocol.HelloAuth{Role: sess.Role, Scopes: sess.Scopes,
			DeviceToken: a.token, IssuedAtMs: a.issuedAt},
		Policy: protocol.Policy{MaxPayload: protocol.MaxPayload, MaxBufferedBytes: s.opts.MaxBufferedBytes,
			TickIntervalMs: int(s.opts.TickInterval / time.Millisecond)},
	}
	if authn.Satisfies(sess.Scopes, protocol.ScopeAdmin) {
		h.Snapshot.StateDir = s.opts.StateDir
		h.Snapshot.ConfigPath = s.opts.ConfigPath
		h.Snapshot.AuthMode = "token"
	}
	s.canvasHello(c, sess, &h) // a node's canvas capability URL (canvas.go)
	return h
}

// implementedEvents lists only the events this gateway really emits.
func (s *Server) implementedEvents() []string {
	ev := []string{protocol.EventChallenge, protocol.EventTick, protocol.EventPresence,
		protocol.EventHealth, protocol.EventShutdown}
	if s.opts.Pairing != nil {
		ev = append(ev, protocol.EventDevicePairRequested, protocol.EventDevicePairResolved)
	}
	if s.nodes != nil {
		ev = append(ev, s.nodes.events()...)
	}
	ev = append(ev, s.agentEvents()...)
	ev = append(ev, s.automationEvents()...)
	if s.opts.Providers != nil {
		ev = append(ev, EventSessionMessage)
		if _, ok := s.opts.Providers.(WebLoginer); ok {
			ev = append(ev, EventWebLogin)
		}
	}
	return ev
}
