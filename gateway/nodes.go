package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/protocol"
)

// Nodes (protocol §4.1 node.*, §2.4 step 13): a connection with role node
// registers its declared surface under nodeId = its device id. Operators
// list and describe nodes and invoke their commands: node.invoke sends a
// node.invoke.request event to that node's connection only and waits for
// the node's node.invoke.result, which must come from that same
// connection. What a node may run is the intersection of what it declares,
// what the platform allowlist (plus config) admits, and what an operator
// approved in its device record (pairing.ReconcileNode).

// Invoke timing.
const (
	defaultInvokeTimeout = 30 * time.Second
	maxInvokeTimeout     = time.Hour
	// maxPendingInvokes bounds invocations waiting for nodes, gateway-wide.
	maxPendingInvokes = 4096
	// maxNodePublishBytes bounds what node.skills.update and
	// node.pluginTools.update keep per node.
	maxNodePublishBytes = 1 << 20
)

// Invoke error codes carried in details.nodeError.code.
const (
	nodeErrTimeout      = "TIMEOUT"
	nodeErrDisconnected = "DISCONNECTED"
	nodeErrNotConnected = "NOT_CONNECTED"
)

// nodeHub is the gateway's node state: live node sessions, invocations
// waiting for a node, exec approvals and setup codes.
type nodeHub struct {
	srv    *Server
	policy NodePolicy

	mu      sync.Mutex
	nodes   map[string]*nodeSession   // nodeId → current session
	invokes map[string]*pendingInvoke // invoke id → waiting invocation

	approvals  execApprovals
	setupCodes setupCodes
}

// nodeSession is one connected node.
type nodeSession struct {
	conn     *Conn
	nodeID   string
	client   protocol.ClientInfo
	remoteIP string
	pathEnv  string

	connectedAtMs int64

	// Guarded by nodeHub.mu.
	declaredCaps     []string
	declaredCommands []string
	declaredPerms    map[string]bool
	withheld         []string
	caps             []string // effective
	commands         []string // effective
	permissions      map[string]bool
	approved         bool
	approvedAtMs     int64
	pending          *pairing.PendingNode
	displayName      string
	skills           json.RawMessage
	pluginTools      json.RawMessage
	hostStats        json.RawMessage
}

// pendingInvoke is one node.invoke waiting for its node.
type pendingInvoke struct {
	id      string
	nodeID  string
	conn    *Conn // the node connection the request went to
	command string
	done    chan nodeInvokeResult // buffered; receives exactly once
}

// nodeInvokeResult is what the node answered (or why it could not).
type nodeInvokeResult struct {
	OK          bool
	Payload     json.RawMessage
	PayloadJSON *string
	Error       *nodeError
}

type nodeError struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

func (s *Server) registerNodeMethods() {
	s.nodes = &nodeHub{srv: s, policy: s.opts.Nodes,
		nodes: map[string]*nodeSession{}, invokes: map[string]*pendingInvoke{}}
	s.nodes.approvals.init()
	s.nodes.setupCodes.init()
	h := s.nodes
	s.handle("node.list", false, h.methodList)
	s.handle("node.describe", false, h.methodDescribe)
	s.handle("node.invoke", true, h.methodInvoke)
	s.handle("node.invoke.result", false, h.methodInvokeResult)
	s.handle("node.invoke.progress", false, h.methodInvokeProgress)
	s.handle("node.event", false, h.methodEvent)
	s.handle("node.pluginTools.update", false, h.methodPluginTools)
	s.handle("node.skills.update", false, h.methodSkills)
	s.handle("node.runnerInventory.update", false, h.methodRunnerInventory)
	s.handle("node.pluginSurface.refresh", false, h.methodPluginSurface)
	if s.opts.Pairing != nil {
		s.handle("node.rename", false, h.methodRename)
		s.handle("node.pair.list", false, h.methodPairList)
		s.handle("node.pair.approve", false, h.methodPairApprove)
		s.handle("node.pair.reject", false, h.methodPairReject)
		s.handle("node.pair.remove", false, h.methodPairRemove)
		s.handle("device.pair.setupCode", false, h.methodSetupCode)
	}
	s.registerExecApprovalMethods()
}

// nodeEvents are the node and approval events this gateway emits.
func (h *nodeHub) events() []string {
	ev := []string{protocol.EventNodeInvokeRequest, "exec.approval.requested", "exec.approval.resolved"}
	if h.srv.opts.Pairing != nil {
		ev = append(ev, protocol.EventNodePairRequested, protocol.EventNodePairResolved)
	}
	return ev
}

// ---------------------------------------------------------------------------
// Connect and disconnect.

// nodeConnecting prepares a node connection's registration before its
// hello-ok: the declared surface is filtered by policy and reconciled with
// what pairing approved. The returned func queues hello-ok (sendHello) and
// registers the session; the registration ends with the connection,
// failing every invocation still waiting for it.
func (s *Server) nodeConnecting(c *Conn, sess *Session, p *protocol.ConnectParams) (register func(sendHello func())) {
	if sess == nil || sess.Role != protocol.RoleNode || s.nodes == nil {
		return func(sendHello func()) { sendHello() }
	}
	h := s.nodes
	nodeID := sess.DeviceID
	if nodeID == "" {
		nodeID = sess.Client.ID
	}
	declared, withheld := h.policy.filterDeclared(sess.Client.Platform, sess.Client.DeviceFamily, p.Commands)
	if len(withheld) > 0 {
		c.log.Info("node commands withheld by policy", "node", shortID(nodeID), "commands", strings.Join(withheld, ","))
	}
	ns := &nodeSession{
		conn: c, nodeID: nodeID, client: sess.Client, pathEnv: p.PathEnv,
		remoteIP:         c.arrival.Remote.Addr().Unmap().String(),
		connectedAtMs:    sess.ConnectedAt.UnixMilli(),
		declaredCaps:     normalizeList(p.Caps),
		declaredCommands: normalizeList(declared),
		declaredPerms:    maps.Clone(p.Permissions),
		withheld:         withheld,
		displayName:      sess.Client.DisplayName,
	}
	if pm := s.opts.Pairing; pm != nil && sess.DeviceID != "" {
		r, err := pm.ReconcileNode(pairing.NodeConnectInfo{
			NodeID: nodeID, ClientID: sess.Client.ID, ClientMode: sess.Client.Mode,
			DisplayName: sess.Client.DisplayName, Platform: sess.Client.Platform, Version: sess.Client.Version,
			DeviceFamily: sess.Client.DeviceFamily, ModelIdentifier: sess.Client.ModelIdentifier,
			RemoteIP: ns.remoteIP, Caps: ns.declaredCaps, Commands: ns.declaredCommands, Permissions: ns.declaredPerms,
		})
		if err != nil {
			// Nothing is effective without a verdict.
			c.log.Warn("node surface reconcile failed", "node", shortID(nodeID), "err", err)
			ns.caps, ns.commands = []string{}, []string{}
		} else {
			ns.applySurface(r)
			if r.Created && r.Pending != nil {
				s.bus.broadcast(protocol.EventNodePairRequested, r.Pending, nil, nil)
				c.log.Info("node surface awaits approval", "node", shortID(nodeID), "requestId", r.Pending.RequestID,
					"commands", strings.Join(r.Pending.Commands, ","))
			}
		}
	} else {
		// No pairing (bare core): what policy admits is effective.
		ns.caps, ns.commands, ns.permissions = ns.declaredCaps, ns.declaredCommands, ns.declaredPerms
		ns.approved = true
	}

	// hello-ok is queued under the registry lock, in the same critical
	// section that makes the session visible: the node is invocable as soon
	// as it holds its hello-ok, and no node.invoke.request (queued by an
	// invoke after it found the session) can overtake the hello-ok.
	return func(sendHello func()) {
		h.mu.Lock()
		prev := h.nodes[nodeID]
		h.nodes[nodeID] = ns
		sendHello()
		h.mu.Unlock()
		if prev != nil && prev.conn != c {
			h.failInvokes(prev.conn)
		}
		context.AfterFunc(c.ctx, func() { h.nodeDisconnected(c, nodeID) })
	}
}

// applySurface sets the effective surface from a pairing verdict. Callers
// hold h.mu or own ns exclusively.
func (ns *nodeSession) applySurface(r pairing.NodeReconcile) {
	ns.caps, ns.commands, ns.permissions = nonNilList(r.Caps), nonNilList(r.Commands), r.Permissions
	ns.approved, ns.approvedAtMs, ns.pending = r.Approved, r.ApprovedAtMs, r.Pending
}

// nodeDisconnected removes the session (unless a newer connection of the
// same node replaced it) and fails the invocations sent to it at once.
func (h *nodeHub) nodeDisconnected(c *Conn, nodeID string) {
	h.mu.Lock()
	if ns := h.nodes[nodeID]; ns != nil && ns.conn == c {
		delete(h.nodes, nodeID)
	}
	h.mu.Unlock()
	h.failInvokes(c)
}

// failInvokes answers every invocation waiting for conn with DISCONNECTED.
func (h *nodeHub) failInvokes(conn *Conn) {
	h.mu.Lock()
	var failed []*pendingInvoke
	for id, p := range h.invokes {
		if p.conn == conn {
			delete(h.invokes, id)
			failed = append(failed, p)
		}
	}
	h.mu.Unlock()
	for _, p := range failed {
		p.done <- nodeInvokeResult{Error: &nodeError{Code: nodeErrDisconnected, Message: "node disconnected (" + p.command + ")"}}
	}
}

// session returns the live session of nodeID, or nil.
func (h *nodeHub) session(nodeID string) *nodeSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[nodeID]
}

// callerNodeSession returns the registered session of a node connection.
func (h *nodeHub) callerNodeSession(c *Conn) *nodeSession {
	sess := c.Session()
	id := sess.DeviceID
	if id == "" {
		id = sess.Client.ID
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ns := h.nodes[id]; ns != nil && ns.conn == c {
		return ns
	}
	return nil
}

func callerNodeID(c *Conn) string {
	sess := c.Session()
	if sess.DeviceID != "" {
		return sess.DeviceID
	}
	return sess.Client.ID
}

// ---------------------------------------------------------------------------
// node.list / node.describe.

// nodeView is one NodeListNode (node.list, node.describe).
type nodeView struct {
	NodeID                     string          `json:"nodeId"`
	DisplayName                string          `json:"displayName,omitempty"`
	Platform                   string          `json:"platform,omitempty"`
	Version                    string          `json:"version,omitempty"`
	ClientID                   string          `json:"clientId,omitempty"`
	ClientMode                 string          `json:"clientMode,omitempty"`
	DeviceFamily               string          `json:"deviceFamily,omitempty"`
	ModelIdentifier            string          `json:"modelIdentifier,omitempty"`
	RemoteIP                   string          `json:"remoteIp,omitempty"`
	Caps                       []string        `json:"caps"`
	Commands                   []string        `json:"commands"`
	PathEnv                    string          `json:"pathEnv,omitempty"`
	Permissions                map[string]bool `json:"permissions,omitempty"`
	HostStats                  json.RawMessage `json:"hostStats,omitempty"`
	ApprovalState              string          `json:"approvalState"`
	PendingRequestID           string          `json:"pendingRequestId,omitempty"`
	PendingDeclaredCaps        []string        `json:"pendingDeclaredCaps,omitempty"`
	PendingDeclaredCommands    []string        `json:"pendingDeclaredCommands,omitempty"`
	PendingDeclaredPermissions map[string]bool `json:"pendingDeclaredPermissions,omitempty"`
	ConnectedAtMs              int64           `json:"connectedAtMs,omitempty"`
	ApprovedAtMs               int64           `json:"approvedAtMs,omitempty"`
	Paired                     bool            `json:"paired"`
	Connected                  bool            `json:"connected"`
}

// catalog builds the node views from pairing records and live sessions,
// connected nodes first, then by display name and id.
func (h *nodeHub) catalog() ([]nodeView, error) {
	var recs []pairing.NodeRecord
	if pm := h.srv.opts.Pairing; pm != nil {
		var err error
		if recs, err = pm.NodeRecords(); err != nil {
			return nil, err
		}
	}
	byID := map[string]*nodeView{}
	for _, r := range recs {
		v := &nodeView{NodeID: r.NodeID, DisplayName: r.DisplayName, Platform: r.Platform, DeviceFamily: r.DeviceFamily,
			ClientID: r.ClientID, ClientMode: r.ClientMode, RemoteIP: r.RemoteIP, ApprovedAtMs: r.ApprovedAtMs,
			Paired: r.NodeRole, Caps: []string{}, Commands: []string{}}
		v.ApprovalState = "unapproved"
		if n := r.Node; n != nil {
			v.DisplayName = firstOf(n.DisplayName, v.DisplayName)
			v.Version, v.ModelIdentifier = n.Version, n.ModelIdentifier
			v.Caps, v.Commands, v.Permissions = nonNilList(n.Caps), nonNilList(n.Commands), n.Permissions
			v.ApprovedAtMs = n.ApprovedAtMs
			v.ApprovalState = "approved"
		}
		if p := r.Pending; p != nil {
			v.ApprovalState = "pending-approval"
			if r.Node != nil {
				v.ApprovalState = "pending-reapproval"
			}
			v.PendingRequestID = p.RequestID
			v.PendingDeclaredCaps, v.PendingDeclaredCommands, v.PendingDeclaredPermissions = p.Caps, p.Commands, p.Permissions
			v.DisplayName = firstOf(v.DisplayName, p.DisplayName)
		}
		byID[r.NodeID] = v
	}
	h.mu.Lock()
	for id, ns := range h.nodes {
		v := byID[id]
		if v == nil {
			v = &nodeView{NodeID: id, ApprovalState: "unapproved"}
			byID[id] = v
			if ns.approved && h.srv.opts.Pairing == nil {
				v.ApprovalState = "approved"
			}
		}
		v.DisplayName = firstOf(ns.displayName, v.DisplayName)
		v.Platform, v.Version = firstOf(ns.client.Platform, v.Platform), firstOf(ns.client.Version, v.Version)
		v.ClientID, v.ClientMode = ns.client.ID, ns.client.Mode
		v.DeviceFamily = firstOf(ns.client.DeviceFamily, v.DeviceFamily)
		v.ModelIdentifier = firstOf(ns.client.ModelIdentifier, v.ModelIdentifier)
		v.RemoteIP = ns.remoteIP
		v.Caps, v.Commands = slices.Clone(ns.caps), slices.Clone(ns.commands)
		v.Permissions = maps.Clone(ns.permissions)
		v.PathEnv = ns.pathEnv
		v.HostStats = ns.hostStats
		v.ConnectedAtMs = ns.connectedAtMs
		v.Connected = true
	}
	h.mu.Unlock()
	out := make([]nodeView, 0, len(byID))
	for _, v := range byID {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Connected != b.Connected {
			return a.Connected
		}
		an, bn := strings.ToLower(firstOf(a.DisplayName, a.NodeID)), strings.ToLower(firstOf(b.DisplayName, b.NodeID))
		if an != bn {
			return an < bn
		}
		return a.NodeID < b.NodeID
	})
	return out, nil
}

// visibleTo narrows a view for a caller without pairing rights: never a
// node that is neither paired nor connected, and pending details only for
// the caller's own node.
func visibleTo(v nodeView, c *Conn) (nodeView, bool) {
	sess := c.Session()
	if authn.Satisfies(sess.Scopes, protocol.ScopePairing) {
		return v, true
	}
	if !v.Paired && !v.Connected {
		return v, false
	}
	own := sess.DeviceID != "" && sess.DeviceID == v.NodeID
	if !own {
		v.PendingRequestID = ""
	}
	v.PendingDeclaredCaps, v.PendingDeclaredCommands, v.PendingDeclaredPermissions = nil, nil, nil
	return v, true
}

func (h *nodeHub) methodList(_ context.Context, c *Conn, _ json.RawMessage) (any, error) {
	all, err := h.catalog()
	if err != nil {
		return nil, err
	}
	nodes := make([]nodeView, 0, len(all))
	for _, v := range all {
		if v, ok := visibleTo(v, c); ok {
			nodes = append(nodes, v)
		}
	}
	return map[string]any{"ts": h.srv.nowMs(), "nodes": nodes}, nil
}

func (h *nodeHub) methodDescribe(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		NodeID string `json:"nodeId"`
	}
	_ = json.Unmarshal(raw, &p)
	id := strings.TrimSpace(p.NodeID)
	if id == "" {
		return nil, protocol.InvalidRequest("nodeId required")
	}
	all, err := h.catalog()
	if err != nil {
		return nil, err
	}
	for _, v := range all {
		if v.NodeID != id {
			continue
		}
		if v, ok := visibleTo(v, c); ok {
			out := map[string]any{}
			_ = json.Unmarshal(mustJSON(v), &out)
			out["ts"] = h.srv.nowMs()
			return out, nil
		}
	}
	return nil, protocol.InvalidRequest("unknown nodeId")
}

// ---------------------------------------------------------------------------
// node.invoke.

type invokeParams struct {
	NodeID         string          `json:"nodeId"`
	Command        string          `json:"command"`
	Params         json.RawMessage `json:"params"`
	TimeoutMs      *int64          `json:"timeoutMs"`
	IdempotencyKey string          `json:"idempotencyKey"`
	SessionKey     string          `json:"sessionKey"`
}

// invokeRequestEvent is the node.invoke.request payload
// (NodeInvokeRequestEvent).
type invokeRequestEvent struct {
	ID             string  `json:"id"`
	NodeID         string  `json:"nodeId"`
	Command        string  `json:"command"`
	ParamsJSON     *string `json:"paramsJSON,omitempty"`
	TimeoutMs      int64   `json:"timeoutMs"`
	IdempotencyKey string  `json:"idempotencyKey,omitempty"`
}

// invokeError is the UNAVAILABLE answer for a node-side failure.
func invokeError(e *nodeError, dispatched bool) *protocol.Error {
	msg := strings.TrimSpace(e.Message)
	if msg == "" {
		msg = "node invoke failed"
	}
	if code := strings.TrimSpace(e.Code); code != "" {
		msg = code + ": " + msg
	}
	return &protocol.Error{Code: protocol.ErrUnavailable, Message: msg,
		Details: map[string]any{"nodeError": e, "nodeCommandDispatched": dispatched}}
}

func missingScopeError(scope string, required ...string) *protocol.Error {
	if len(required) == 0 {
		required = []string{scope}
	}
	return &protocol.Error{Code: protocol.ErrForbidden, Message: "missing scope: " + scope,
		Details: map[string]any{"code": protocol.DetailMissingScope, "missingScope": scope, "requiredScopes": required}}
}

func (h *nodeHub) methodInvoke(ctx context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p invokeParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid node.invoke params")
	}
	nodeID, command := strings.TrimSpace(p.NodeID), strings.TrimSpace(p.Command)
	if nodeID == "" || command == "" {
		return nil, protocol.InvalidRequest("nodeId and command required")
	}
	if slices.Contains(privateNodeCommands, command) {
		return nil, &protocol.Error{Code: protocol.ErrInvalidRequest, Message: "node.invoke does not allow private node controls",
			Details: map[string]any{"command": command}}
	}
	if slices.Contains(cmdExecApprovals, command) {
		return nil, &protocol.Error{Code: protocol.ErrInvalidRequest,
			Message: "node.invoke does not allow system.execApprovals.*; use exec.approvals.node.*", Details: map[string]any{"command": command}}
	}
	if slices.Contains(adminInvokeCommands, command) && !authn.Satisfies(c.Session().Scopes, protocol.ScopeAdmin) {
		return nil, missingScopeError(protocol.ScopeAdmin)
	}

	ns := h.session(nodeID)
	if ns == nil {
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "node not connected", Details: map[string]any{
			"code": protocol.DetailNotConnected, "nodeError": nodeError{Code: nodeErrNotConnected, Message: "node not connected"},
			"nodeCommandDispatched": false}}
	}
	if perr := h.checkCommand(ns, command); perr != nil {
		return nil, perr
	}
	forwarded, perr := h.sanitizeParams(c, nodeID, command, p.Params)
	if perr != nil {
		return nil, perr
	}

	timeout := defaultInvokeTimeout
	if p.TimeoutMs != nil && *p.TimeoutMs > 0 {
		timeout = min(time.Duration(*p.TimeoutMs)*time.Millisecond, maxInvokeTimeout)
	}
	pi := &pendingInvoke{id: newUUID(), nodeID: nodeID, conn: ns.conn, command: command, done: make(chan nodeInvokeResult, 1)}
	h.mu.Lock()
	if len(h.invokes) >= maxPendingInvokes {
		h.mu.Unlock()
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "too many node invocations in flight",
			Retryable: true, RetryAfterMs: 1000}
	}
	// The session may have been replaced or closed since the lookup.
	if cur := h.nodes[nodeID]; cur == nil || cur.conn != ns.conn {
		h.mu.Unlock()
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "node connection changed before dispatch",
			Retryable: true, Details: map[string]any{"code": "ROUTE_CHANGED"}}
	}
	h.invokes[pi.id] = pi
	h.mu.Unlock()

	ev := invokeRequestEvent{ID: pi.id, NodeID: nodeID, Command: command, TimeoutMs: timeout.Milliseconds(),
		IdempotencyKey: p.IdempotencyKey}
	if forwarded != nil {
		s := string(forwarded)
		ev.ParamsJSON = &s
	}
	if !ns.conn.sendEvent(protocol.EventNodeInvokeRequest, ev) {
		h.forget(pi.id)
		return nil, invokeError(&nodeError{Code: nodeErrNotConnected, Message: "node not connected"}, false)
	}

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var res nodeInvokeResult
	select {
	case res = <-pi.done:
	case <-timer.C:
		if !h.forget(pi.id) {
			res = <-pi.done // answered at the last moment
			break
		}
		return nil, invokeError(&nodeError{Code: nodeErrTimeout, Message: "node invoke timed out"}, true)
	case <-ctx.Done():
		if !h.forget(pi.id) {
			<-pi.done
		}
		return nil, protocol.NewError(protocol.ErrUnavailable, "caller disconnected", "")
	}
	if !res.OK {
		e := res.Error
		if e == nil {
			e = &nodeError{}
		}
		return nil, invokeError(e, true)
	}
	out := map[string]any{"ok": true, "nodeId": nodeID, "command": command, "payloadJSON": nil}
	if res.PayloadJSON != nil {
		out["payloadJSON"] = *res.PayloadJSON
		out["payload"] = parsePayloadJSON(*res.PayloadJSON)
	} else if len(res.Payload) > 0 {
		out["payload"] = res.Payload
	}
	return out, nil
}

// parsePayloadJSON parses a node's payloadJSON; a string that is not JSON
// comes back wrapped as {"payloadJSON": s}.
func parsePayloadJSON(s string) any {
	t := strings.TrimSpace(s)
	if t == "" {
		return nil
	}
	var v json.RawMessage
	if json.Unmarshal([]byte(t), &v) != nil {
		return map[string]string{"payloadJSON": s}
	}
	return v
}

// forget removes a waiting invocation; false when it was already answered.
func (h *nodeHub) forget(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.invokes[id]; !ok {
		return false
	}
	delete(h.invokes, id)
	return true
}

// checkCommand applies the command allowlist to one invocation.
func (h *nodeHub) checkCommand(ns *nodeSession, command string) *protocol.Error {
	h.mu.Lock()
	effective := slices.Clone(ns.commands)
	pending := ns.pending
	declared := slices.Contains(ns.declaredCommands, command)
	h.mu.Unlock()
	platform := ns.client.Platform
	reason, hint := "", ""
	switch {
	// Policy first, as if the node's surface were approved: approval is
	// checked next, with a hint naming the request to approve.
	case !h.policy.invokeAllowed(platform, ns.client.DeviceFamily, command, append(effective, command)):
		reason = "command not allowlisted"
		switch {
		case slices.Contains(h.policy.DenyCommands, command):
			hint = `node command not allowed: "` + command + `" is blocked by the node denyCommands policy`
		case slices.Contains(dangerousNodeCommands, command):
			hint = `node command not allowed: "` + command + `" requires an explicit allowCommands opt-in`
		default:
			hint = `node command not allowed: "` + command + `" is not in the allowlist for platform "` + orUnknown(platform) + `"`
		}
	case len(effective) == 0:
		reason = "node did not declare commands"
		hint = "node command not allowed: the node did not declare any supported commands"
		if declared && pending != nil {
			hint = "node command not allowed: the node's declared command surface is pending approval; run `clawgate nodes pending`, then `clawgate nodes approve " + pending.RequestID + "`"
		}
	case !slices.Contains(effective, command):
		reason = "command not declared by node"
		hint = `node command not allowed: the node (platform: ` + orUnknown(platform) + `) does not support "` + command + `"`
		if declared && pending != nil {
			hint = "node command not allowed: \"" + command + "\" is pending approval; run `clawgate nodes approve " + pending.RequestID + "`"
		}
	default:
		return nil
	}
	return &protocol.Error{Code: protocol.ErrInvalidRequest, Message: hint, Details: map[string]any{"reason": reason, "command": command}}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// systemRunParamKeys are the system.run params forwarded to a node; the
// approval fields (approved, approvalDecision) are set only by the gateway
// from a resolved exec approval.
var systemRunParamKeys = []string{"command", "rawCommand", "systemRunPlan", "cwd", "env", "timeoutMs",
	"needsScreenRecording", "agentId", "sessionKey", "runId", "suppressNotifyOnExit"}

// sanitizeParams returns the params to forward (nil: none). For system.run
// an approval claim must be backed by a resolved exec approval for this
// node, this caller and this exact argv and cwd; otherwise approval fields
// never reach the node.
func (h *nodeHub) sanitizeParams(c *Conn, nodeID, command string, raw json.RawMessage) (json.RawMessage, *protocol.Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if command != "system.run" {
		return raw, nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return raw, nil
	}
	next := map[string]json.RawMessage{}
	for _, k := range systemRunParamKeys {
		if v, ok := obj[k]; ok {
			next[k] = v
		}
	}
	approved := string(obj["approved"]) == "true"
	var decision string
	_ = json.Unmarshal(obj["approvalDecision"], &decision)
	if decision != "allow-once" && decision != "allow-always" {
		decision = ""
	}
	if _, src := obj["approvalSource"]; src {
		return nil, guardError("INVALID_APPROVAL_SOURCE", "approval source invalid", nil)
	}
	if approved || decision != "" {
		var runID string
		_ = json.Unmarshal(obj["runId"], &runID)
		var argv []string
		_ = json.Unmarshal(obj["command"], &argv)
		var cwd *string
		_ = json.Unmarshal(obj["cwd"], &cwd)
		got, perr := h.approvals.consume(c, strings.TrimSpace(runID), nodeID, argv, cwd, h.srv.nowMs())
		if perr != nil {
			return nil, perr
		}
		next["approved"] = json.RawMessage("true")
		next["approvalDecision"] = mustJSON(got)
	}
	return mustJSON(next), nil
}

// guardError is a system.run approval refusal.
func guardError(code, msg string, extra map[string]any) *protocol.Error {
	d := map[string]any{"code": code}
	maps.Copy(d, extra)
	return &protocol.Error{Code: protocol.ErrInvalidRequest, Message: msg, Details: d}
}

// ---------------------------------------------------------------------------
// Node-role methods.

type invokeResultParams struct {
	ID          string          `json:"id"`
	NodeID      string          `json:"nodeId"`
	OK          bool            `json:"ok"`
	Payload     json.RawMessage `json:"payload"`
	PayloadJSON *string         `json:"payloadJSON"`
	Error       *nodeError      `json:"error"`
}

// methodInvokeResult accepts a node's answer. The nodeId must be the
// caller's own, and the invocation must have been sent to this very
// connection; anything else (late, unknown, another node's) is answered
// {ok:true, ignored:true} and delivered nowhere.
func (h *nodeHub) methodInvokeResult(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p invokeResultParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid node.invoke.result params")
	}
	if p.NodeID != callerNodeID(c) {
		return nil, protocol.InvalidRequest("nodeId mismatch")
	}
	h.mu.Lock()
	pi := h.invokes[p.ID]
	if pi == nil || pi.nodeID != p.NodeID || pi.conn != c {
		h.mu.Unlock()
		c.log.Debug("late or foreign invoke result ignored", "id", p.ID, "node", shortID(p.NodeID))
		return map[string]any{"ok": true, "ignored": true}, nil
	}
	delete(h.invokes, p.ID)
	h.mu.Unlock()
	res := nodeInvokeResult{OK: p.OK, PayloadJSON: p.PayloadJSON, Error: p.Error}
	if len(p.Payload) > 0 && string(p.Payload) != "null" {
		res.Payload = p.Payload
	}
	pi.done <- res
	return map[string]any{"ok": true}, nil
}

func (h *nodeHub) methodInvokeProgress(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		InvokeID string `json:"invokeId"`
		NodeID   string `json:"nodeId"`
	}
	_ = json.Unmarshal(raw, &p)
	if p.NodeID != callerNodeID(c) {
		return nil, protocol.InvalidRequest("nodeId mismatch")
	}
	// Progress streaming is not relayed; the final result still is.
	return map[string]any{"ok": true, "ignored": true}, nil
}

// methodEvent accepts a node event. node.host.stats is kept for node.list;
// other events are acknowledged and not acted on.
func (h *nodeHub) methodEvent(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		Event       string          `json:"event"`
		Payload     json.RawMessage `json:"payload"`
		PayloadJSON *string         `json:"payloadJSON"`
	}
	_ = json.Unmarshal(raw, &p)
	if p.Event == "node.host.stats" {
		body := p.Payload
		if p.PayloadJSON != nil {
			body = json.RawMessage(*p.PayloadJSON)
		}
		var stats map[string]any
		if len(body) <= 64<<10 && json.Unmarshal(body, &stats) == nil {
			h.mu.Lock()
			if ns := h.nodes[callerNodeID(c)]; ns != nil && ns.conn == c {
				ns.hostStats = mustJSON(stats)
			}
			h.mu.Unlock()
			return map[string]any{"ok": true, "event": p.Event, "handled": true}, nil
		}
	}
	return map[string]any{"ok": true, "event": p.Event, "handled": false, "reason": "unsupported event"}, nil
}

// nodePublish stores a node's skills or plugin tools (bounded) and echoes them.
func (h *nodeHub) nodePublish(c *Conn, raw json.RawMessage, key string, set func(*nodeSession, json.RawMessage)) (any, error) {
	var p map[string]json.RawMessage
	_ = json.Unmarshal(raw, &p)
	list := p[key]
	if len(list) > maxNodePublishBytes {
		return nil, protocol.InvalidRequest(key + " too large")
	}
	id := callerNodeID(c)
	h.mu.Lock()
	ns := h.nodes[id]
	if ns == nil || ns.conn != c {
		h.mu.Unlock()
		return nil, protocol.InvalidRequest("unknown nodeId")
	}
	set(ns, list)
	h.mu.Unlock()
	return map[string]any{"nodeId": id, key: list}, nil
}

func (h *nodeHub) methodPluginTools(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	return h.nodePublish(c, raw, "tools", func(ns *nodeSession, v json.RawMessage) { ns.pluginTools = v })
}

func (h *nodeHub) methodSkills(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	return h.nodePublish(c, raw, "skills", func(ns *nodeSession, v json.RawMessage) { ns.skills = v })
}

// methodRunnerInventory acknowledges a node host's runner inventory (this
// gateway runs no workers on nodes). While the node's surface awaits its
// first approval it answers as OpenClaw does, naming the request to
// approve; the node host retries after node.pair.resolved.
func (h *nodeHub) methodRunnerInventory(_ context.Context, c *Conn, _ json.RawMessage) (any, error) {
	ns := h.callerNodeSession(c)
	if ns == nil {
		return nil, protocol.InvalidRequest("unknown nodeId")
	}
	h.mu.Lock()
	approved, pending := ns.approved, ns.pending
	h.mu.Unlock()
	if !approved && pending != nil {
		return nil, protocol.NewError(protocol.ErrUnavailable, "node capability surface is awaiting operator approval; run `clawgate nodes approve "+
			pending.RequestID+"` (see `clawgate nodes pending`), then this node retries automatically", "")
	}
	return map[string]any{"nodeId": ns.nodeID}, nil
}

func (h *nodeHub) methodPluginSurface(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		Surface string `json:"surface"`
	}
	_ = json.Unmarshal(raw, &p)
	return nil, protocol.NewError(protocol.ErrUnavailable, strings.TrimSpace(p.Surface)+" plugin surface unavailable", "")
}

// ---------------------------------------------------------------------------
// Node pairing methods.

// nodeCaller is the caller identity for node management: the device only
// counts when the connection authenticated with its device token, as in
// OpenClaw's device-management rules.
func nodeCaller(c *Conn) pairing.Caller {
	sess := c.Session()
	cl := pairing.Caller{Scopes: sess.Scopes}
	if sess.AuthMethod == "device-token" {
		cl.DeviceID = sess.DeviceID
	}
	return cl
}

// nodePairingError maps pairing's node errors to protocol answers.
func nodePairingError(err error, notFound string) error {
	var ms *pairing.MissingScopeError
	switch {
	case errors.As(err, &ms):
		required := []string{protocol.ScopePairing}
		if ms.Scope != protocol.ScopePairing {
			required = append(required, ms.Scope)
		}
		return missingScopeError(ms.Scope, required...)
	case errors.Is(err, pairing.ErrNotFound):
		return protocol.InvalidRequest(notFound)
	case errors.Is(err, pairing.ErrForbidden):
		msg := err.Error()
		if i := strings.LastIndex(msg, "forbidden: "); i >= 0 {
			msg = msg[i+len("forbidden: "):]
		}
		return protocol.InvalidRequest(msg)
	case errors.Is(err, pairing.ErrInvalid):
		return protocol.InvalidRequest("displayName required")
	}
	return err
}

func (h *nodeHub) methodPairList(_ context.Context, c *Conn, _ json.RawMessage) (any, error) {
	l, err := h.srv.opts.Pairing.ListNodes()
	if err != nil {
		return nil, err
	}
	if cl := nodeCaller(c); cl.DeviceID != "" && !authn.Satisfies(cl.Scopes, protocol.ScopeAdmin) {
		l.Pending = slices.DeleteFunc(l.Pending, func(p pairing.PendingNode) bool { return p.NodeID != cl.DeviceID })
		l.Paired = slices.DeleteFunc(l.Paired, func(p pairing.PairedNode) bool { return p.NodeID != cl.DeviceID })
	}
	return l, nil
}

func (h *nodeHub) methodPairApprove(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal(raw, &p)
	res, err := h.srv.opts.Pairing.ApproveNode(p.RequestID, nodeCaller(c))
	if err != nil {
		return nil, nodePairingError(err, "unknown requestId")
	}
	nodeID := res.Node.NodeID
	c.log.Info("node surface approved", "node", shortID(nodeID), "commands", strings.Join(res.Node.Commands, ","))
	// The live session gets the approved part of what it declared, at once.
	h.mu.Lock()
	ns := h.nodes[nodeID]
	if ns != nil {
		s := res.Surface
		s.Caps = intersectList(ns.declaredCaps, s.Caps)
		s.Commands = intersectList(ns.declaredCommands, s.Commands)
		s.Permissions = intersectPerms(ns.declaredPerms, s.Permissions)
		s.Pending = nil
		ns.applySurface(s)
	}
	h.mu.Unlock()
	if ns != nil {
		ns.conn.sendEvent(protocol.EventNodePairResolved, res.Resolved)
	}
	h.srv.bus.broadcast(protocol.EventNodePairResolved, res.Resolved, nil, nil)
	return res, nil
}

func (h *nodeHub) methodPairReject(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal(raw, &p)
	res, err := h.srv.opts.Pairing.RejectNode(p.RequestID, nodeCaller(c))
	if err != nil {
		return nil, nodePairingError(err, "unknown requestId")
	}
	h.mu.Lock()
	if ns := h.nodes[res.NodeID]; ns != nil && ns.pending != nil && ns.pending.RequestID == res.RequestID {
		ns.pending = nil
	}
	h.mu.Unlock()
	h.srv.bus.broadcast(protocol.EventNodePairResolved, res, nil, nil)
	return map[string]string{"requestId": res.RequestID, "nodeId": res.NodeID}, nil
}

func (h *nodeHub) methodPairRemove(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		NodeID string `json:"nodeId"`
	}
	_ = json.Unmarshal(raw, &p)
	nodeID := strings.TrimSpace(p.NodeID)
	if _, err := h.srv.opts.Pairing.RemoveNode(nodeID, nodeCaller(c)); err != nil {
		return nil, nodePairingError(err, "unknown nodeId")
	}
	c.log.Info("node removed", "node", shortID(nodeID))
	h.mu.Lock()
	ns := h.nodes[nodeID]
	delete(h.nodes, nodeID)
	h.mu.Unlock()
	if ns != nil {
		h.failInvokes(ns.conn)
	}
	h.srv.bus.broadcast(protocol.EventNodePairResolved,
		pairing.NodeResolved{NodeID: nodeID, Decision: pairing.DecisionRemoved, TS: h.srv.nowMs()}, nil, nil)
	return replyThen{payload: map[string]string{"nodeId": nodeID}, after: func() {
		h.srv.closeDevice(nodeID, protocol.RoleNode, c)
	}}, nil
}

func (h *nodeHub) methodRename(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		NodeID      string `json:"nodeId"`
		DisplayName string `json:"displayName"`
	}
	_ = json.Unmarshal(raw, &p)
	name, err := h.srv.opts.Pairing.RenameNode(strings.TrimSpace(p.NodeID), p.DisplayName, nodeCaller(c))
	if err != nil {
		return nil, nodePairingError(err, "unknown nodeId")
	}
	h.mu.Lock()
	if ns := h.nodes[strings.TrimSpace(p.NodeID)]; ns != nil {
		ns.displayName = name
	}
	h.mu.Unlock()
	return map[string]string{"nodeId": strings.TrimSpace(p.NodeID), "displayName": name}, nil
}

// ---------------------------------------------------------------------------
// Small helpers.

func normalizeList(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func nonNilList(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func intersectList(declared, approved []string) []string {
	out := []string{}
	for _, d := range declared {
		if slices.Contains(approved, d) {
			out = append(out, d)
		}
	}
	return out
}

func intersectPerms(declared, approved map[string]bool) map[string]bool {
	if declared == nil || approved == nil {
		return nil
	}
	out := map[string]bool{}
	for k, v := range declared {
		out[k] = v && approved[k]
	}
	return out
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
