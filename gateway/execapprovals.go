package gateway

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

// Exec approvals (exec.approval.*): the per-command approval a node's
// system.run asks for. An operator that wants to run something the node's
// own policy does not allow asks with exec.approval.request; every
// connection with operator.approvals sees exec.approval.requested and one
// answers with exec.approval.resolve (exec.approval.resolved goes out);
// the requester then invokes system.run with runId = the approval id and
// approved: true. The gateway forwards the approval to the node only if the
// record matches: resolved allow-once or allow-always, unexpired, for this
// node, requested by this same device (or connection), for this exact
// argv and cwd, and not used before. Nodes trust the approval flag only
// because nothing else can set it.

const (
	defaultApprovalTimeout = 30 * time.Minute
	maxApprovalTimeout     = 24 * time.Hour
	maxApprovals           = 256
)

// Approval decisions.
const (
	decisionAllowOnce   = "allow-once"
	decisionAllowAlways = "allow-always"
	decisionDeny        = "deny"
)

var allDecisions = []string{decisionAllowOnce, decisionAllowAlways, decisionDeny}

type execApprovals struct {
	mu   sync.Mutex
	recs map[string]*approvalRecord
}

type approvalRecord struct {
	id              string
	request         map[string]any
	nodeID          string
	argv            []string
	cwd             *string
	createdAtMs     int64
	expiresAtMs     int64
	requesterDevice string
	requesterConn   *Conn

	decision     string // "" while pending
	expired      bool
	resolvedAtMs int64
	consumed     bool
	done         chan struct{} // closed once decided or expired
}

func (a *execApprovals) init() { a.recs = map[string]*approvalRecord{} }

func (s *Server) registerExecApprovalMethods() {
	h := s.nodes
	s.handle("exec.approval.request", true, h.methodApprovalRequest)
	s.handle("exec.approval.waitDecision", true, h.methodApprovalWait)
	s.handle("exec.approval.resolve", false, h.methodApprovalResolve)
	s.handle("exec.approval.get", false, h.methodApprovalGet)
	s.handle("exec.approval.list", false, h.methodApprovalList)
}

// sweepLocked expires overdue pending records and forgets lapsed ones;
// resolved records stay until their expiry (unused, they may be used once;
// spent, a replay gets APPROVAL_REQUIRED).
func (a *execApprovals) sweepLocked(now int64) {
	for id, r := range a.recs {
		if now >= r.expiresAtMs && r.decision == "" && !r.expired {
			r.expired = true
			close(r.done)
		}
		if r.expired || now >= r.expiresAtMs {
			delete(a.recs, id)
		}
	}
}

// pendingLocked counts undecided records.
func (a *execApprovals) pendingLocked() int {
	n := 0
	for _, r := range a.recs {
		if r.decision == "" && !r.expired {
			n++
		}
	}
	return n
}

type systemRunPlan struct {
	Argv        []string `json:"argv"`
	Cwd         *string  `json:"cwd"`
	CommandText string   `json:"commandText"`
	AgentID     *string  `json:"agentId"`
	SessionKey  *string  `json:"sessionKey"`
}

type approvalRequestParams struct {
	ID                   *string           `json:"id"`
	Command              string            `json:"command"`
	CommandArgv          []string          `json:"commandArgv"`
	SystemRunPlan        *systemRunPlan    `json:"systemRunPlan"`
	Env                  map[string]string `json:"env"`
	Cwd                  *string           `json:"cwd"`
	NodeID               *string           `json:"nodeId"`
	Host                 *string           `json:"host"`
	Security             *string           `json:"security"`
	Ask                  *string           `json:"ask"`
	WarningText          *string           `json:"warningText"`
	AgentID              *string           `json:"agentId"`
	SessionKey           *string           `json:"sessionKey"`
	RequireDeliveryRoute *bool             `json:"requireDeliveryRoute"`
	TimeoutMs            *int64            `json:"timeoutMs"`
}

func strOrEmpty(p *string) string {
	if p == nil {
		return ""
	}
	return strings.TrimSpace(*p)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (h *nodeHub) methodApprovalRequest(ctx context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p approvalRequestParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid exec.approval.request params")
	}
	host, nodeID := strOrEmpty(p.Host), strOrEmpty(p.NodeID)
	argv, cwd, text := p.CommandArgv, p.Cwd, strings.TrimSpace(p.Command)
	if pl := p.SystemRunPlan; pl != nil {
		argv, cwd = pl.Argv, pl.Cwd
		text = firstOf(strings.TrimSpace(pl.CommandText), text)
	}
	if text == "" && len(argv) > 0 {
		text = strings.Join(argv, " ")
	}
	switch {
	case host == "node" && nodeID == "":
		return nil, protocol.InvalidRequest("nodeId is required for host=node")
	case host == "node" && p.SystemRunPlan == nil:
		return nil, protocol.InvalidRequest("systemRunPlan is required for host=node")
	case text == "":
		return nil, protocol.InvalidRequest("command is required")
	case host == "node" && len(argv) == 0:
		return nil, protocol.InvalidRequest("commandArgv is required for host=node")
	case len(text) > 16<<10:
		return nil, &protocol.Error{Code: protocol.ErrInvalidRequest, Message: "command exceeds exec approval display limit",
			Details: map[string]any{"reason": "EXEC_APPROVAL_COMMAND_DISPLAY_LIMIT"}}
	}
	id := strOrEmpty(p.ID)
	if strings.HasPrefix(id, "plugin:") {
		return nil, protocol.InvalidRequest("approval ids starting with plugin: are reserved")
	}
	if len(id) > 128 {
		return nil, protocol.InvalidRequest("approval id too long")
	}
	if id == "" {
		id = newUUID()
	}
	timeout := defaultApprovalTimeout
	if p.TimeoutMs != nil && *p.TimeoutMs > 0 {
		timeout = min(time.Duration(*p.TimeoutMs)*time.Millisecond, maxApprovalTimeout)
	}
	envKeys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		envKeys = append(envKeys, k)
	}
	slices.Sort(envKeys)
	request := map[string]any{
		"command": text, "cwd": nullable(strOrEmpty(cwd)), "nodeId": nil, "host": nullable(host),
		"security": nullable(strOrEmpty(p.Security)), "ask": nullable(strOrEmpty(p.Ask)),
		"warningText": nullable(strOrEmpty(p.WarningText)), "agentId": nullable(strOrEmpty(p.AgentID)),
		"sessionKey": nullable(strOrEmpty(p.SessionKey)), "allowedDecisions": allDecisions,
	}
	if host == "node" {
		request["nodeId"] = nodeID
		request["systemRunPlan"] = p.SystemRunPlan
	} else if len(argv) > 0 {
		request["commandArgv"] = argv
	}
	if len(envKeys) > 0 {
		request["envKeys"] = envKeys
	}
	now := h.srv.nowMs()
	sess := c.Session()
	rec := &approvalRecord{id: id, request: request, nodeID: nodeID, argv: slices.Clone(argv), cwd: cwd,
		createdAtMs: now, expiresAtMs: now + timeout.Milliseconds(), requesterDevice: sess.DeviceID, requesterConn: c,
		done: make(chan struct{})}

	a := &h.approvals
	a.mu.Lock()
	a.sweepLocked(now)
	if _, dup := a.recs[id]; dup {
		a.mu.Unlock()
		return nil, protocol.InvalidRequest("approval id already pending")
	}
	if a.pendingLocked() >= maxApprovals || len(a.recs) >= 4*maxApprovals {
		a.mu.Unlock()
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "too many pending exec approvals",
			Retryable: true, RetryAfterMs: 5000}
	}
	a.recs[id] = rec
	a.mu.Unlock()

	requested := map[string]any{"id": id, "request": request, "createdAtMs": rec.createdAtMs, "expiresAtMs": rec.expiresAtMs}
	h.srv.bus.broadcast("exec.approval.requested", requested, nil, func(o *Conn) bool { return o != c })
	// Nobody who could approve is connected: the request lapses at once
	// rather than hang for half an hour (unless the caller asked to wait).
	if (p.RequireDeliveryRoute == nil || *p.RequireDeliveryRoute) && !h.hasApprover(c) {
		a.mu.Lock()
		if rec.decision == "" && !rec.expired {
			rec.expired = true
			close(rec.done)
		}
		a.mu.Unlock()
	}
	return h.awaitDecision(ctx, rec)
}

// hasApprover reports whether an operator connection other than except
// holds operator.approvals.
func (h *nodeHub) hasApprover(except *Conn) bool {
	for _, o := range h.srv.snapshotConns() {
		sess := o.Session()
		if o != except && sess != nil && sess.Role == protocol.RoleOperator && authn.Satisfies(sess.Scopes, protocol.ScopeApprovals) {
			return true
		}
	}
	return false
}

// awaitDecision waits for rec's decision or expiry; decision is null when
// it expired.
func (h *nodeHub) awaitDecision(ctx context.Context, rec *approvalRecord) (any, error) {
	wait := time.Duration(rec.expiresAtMs-h.srv.nowMs()) * time.Millisecond
	timer := time.NewTimer(max(wait, 0))
	defer timer.Stop()
	select {
	case <-rec.done:
	case <-timer.C:
		h.approvals.mu.Lock()
		if rec.decision == "" && !rec.expired {
			rec.expired = true
			close(rec.done)
		}
		h.approvals.mu.Unlock()
	case <-ctx.Done():
		return nil, protocol.NewError(protocol.ErrUnavailable, "caller disconnected", "")
	}
	h.approvals.mu.Lock()
	decision := rec.decision
	h.approvals.mu.Unlock()
	return map[string]any{"id": rec.id, "decision": nullable(decision), "createdAtMs": rec.createdAtMs,
		"expiresAtMs": rec.expiresAtMs}, nil
}

func (h *nodeHub) lookupApproval(id string) *approvalRecord {
	a := &h.approvals
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweepLocked(h.srv.nowMs())
	return a.recs[strings.TrimSpace(id)]
}

func (h *nodeHub) methodApprovalWait(ctx context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &p)
	rec := h.lookupApproval(p.ID)
	if rec == nil {
		return nil, protocol.InvalidRequest("approval expired or not found")
	}
	return h.awaitDecision(ctx, rec)
}

func (h *nodeHub) methodApprovalResolve(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		ID       string `json:"id"`
		Decision string `json:"decision"`
	}
	_ = json.Unmarshal(raw, &p)
	if !slices.Contains(allDecisions, p.Decision) {
		return nil, protocol.InvalidRequest("invalid decision")
	}
	a := &h.approvals
	now := h.srv.nowMs()
	a.mu.Lock()
	a.sweepLocked(now)
	rec := a.recs[strings.TrimSpace(p.ID)]
	switch {
	case rec == nil || rec.expired:
		a.mu.Unlock()
		return nil, protocol.InvalidRequest("unknown or expired approval id")
	case rec.decision == p.Decision:
		a.mu.Unlock()
		return map[string]any{"ok": true}, nil
	case rec.decision != "":
		a.mu.Unlock()
		return nil, &protocol.Error{Code: protocol.ErrInvalidRequest, Message: "approval already resolved",
			Details: map[string]any{"reason": "APPROVAL_ALREADY_RESOLVED"}}
	}
	rec.decision, rec.resolvedAtMs = p.Decision, now
	close(rec.done)
	a.mu.Unlock()
	by := firstOf(c.Session().Client.DisplayName, c.Session().Client.ID)
	c.log.Info("exec approval resolved", "id", rec.id, "decision", p.Decision, "node", shortID(rec.nodeID))
	h.srv.bus.broadcast("exec.approval.resolved", map[string]any{"id": rec.id, "decision": p.Decision,
		"resolvedBy": by, "ts": now, "request": rec.request}, nil, nil)
	return map[string]any{"ok": true}, nil
}

func (h *nodeHub) methodApprovalGet(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &p)
	rec := h.lookupApproval(p.ID)
	if rec == nil || rec.expired || rec.decision != "" {
		return nil, protocol.InvalidRequest("unknown or expired approval id")
	}
	return map[string]any{"id": rec.id, "commandText": rec.request["command"], "commandPreview": nil,
		"allowedDecisions": allDecisions, "host": rec.request["host"], "nodeId": nullable(rec.nodeID),
		"agentId": rec.request["agentId"], "expiresAtMs": rec.expiresAtMs}, nil
}

func (h *nodeHub) methodApprovalList(_ context.Context, _ *Conn, _ json.RawMessage) (any, error) {
	a := &h.approvals
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweepLocked(h.srv.nowMs())
	out := []map[string]any{}
	for _, r := range a.recs {
		if r.decision == "" && !r.expired {
			out = append(out, map[string]any{"id": r.id, "request": r.request, "createdAtMs": r.createdAtMs, "expiresAtMs": r.expiresAtMs})
		}
	}
	slices.SortFunc(out, func(x, y map[string]any) int { return int(x["createdAtMs"].(int64) - y["createdAtMs"].(int64)) })
	return out, nil
}

// consume checks that a system.run invocation by c is covered by the
// resolved approval runID and spends it. It returns the decision to
// forward.
func (a *execApprovals) consume(c *Conn, runID, nodeID string, argv []string, cwd *string, now int64) (string, *protocol.Error) {
	if runID == "" {
		return "", guardError("MISSING_RUN_ID", "approval override requires params.runId", nil)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweepLocked(now)
	r := a.recs[runID]
	d := map[string]any{"runId": runID}
	switch {
	case r == nil:
		return "", guardError("UNKNOWN_APPROVAL_ID", "unknown or expired approval id", d)
	case r.expired || now > r.expiresAtMs:
		return "", guardError("APPROVAL_EXPIRED", "approval expired", d)
	case r.decision != decisionAllowOnce && r.decision != decisionAllowAlways || r.consumed:
		return "", guardError("APPROVAL_REQUIRED", "approval required", d)
	case r.nodeID == "":
		return "", guardError("APPROVAL_NODE_BINDING_MISSING", "approval id missing node binding", d)
	case r.nodeID != nodeID:
		return "", guardError("APPROVAL_NODE_MISMATCH", "approval id not valid for this node", d)
	}
	sess := c.Session()
	if r.requesterDevice != "" {
		if r.requesterDevice != sess.DeviceID {
			return "", guardError("APPROVAL_DEVICE_MISMATCH", "approval id not valid for this device", d)
		}
	} else if r.requesterConn != c {
		return "", guardError("APPROVAL_CLIENT_MISMATCH", "approval id not valid for this client", d)
	}
	if !slices.Equal(r.argv, argv) || strOrEmpty(r.cwd) != strOrEmpty(cwd) {
		return "", guardError("APPROVAL_REQUEST_MISMATCH", "approval id does not match request", d)
	}
	r.consumed = true
	return r.decision, nil
}
