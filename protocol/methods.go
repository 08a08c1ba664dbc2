package protocol

// Operator scopes.
const (
	ScopeRead        = "operator.read"
	ScopeWrite       = "operator.write"
	ScopeAdmin       = "operator.admin"
	ScopeApprovals   = "operator.approvals"
	ScopePairing     = "operator.pairing"
	ScopeTalkSecrets = "operator.talk.secrets"
)

// Event names.
const (
	EventChallenge           = "connect.challenge"
	EventTick                = "tick"
	EventPresence            = "presence"
	EventHealth              = "health"
	EventShutdown            = "shutdown"
	EventHeartbeat           = "heartbeat"
	EventDevicePairRequested = "device.pair.requested"
	EventDevicePairResolved  = "device.pair.resolved"
	EventNodePairRequested   = "node.pair.requested"
	EventNodePairResolved    = "node.pair.resolved"
	EventNodeInvokeRequest   = "node.invoke.request"
	EventAgent               = "agent"
	EventChat                = "chat"
)

// methodScopes is the least-privilege operator scope of each method, from
// the OpenClaw method-scope table. A method missing here needs
// operator.admin (default deny).
var methodScopes = map[string]string{
	"health": ScopeRead, "status": ScopeRead, "system-presence": ScopeRead,
	"last-heartbeat": ScopeRead, "logs.tail": ScopeRead, "channels.status": ScopeRead,
	"node.list": ScopeRead, "node.describe": ScopeRead, "chat.history": ScopeRead,
	"sessions.list": ScopeRead, "cron.list": ScopeRead, "cron.status": ScopeRead,
	"cron.runs": ScopeRead, "models.list": ScopeRead, "agents.list": ScopeRead,
	"gateway.identity.get": ScopeRead, "cron.get": ScopeRead, "canvas.list": ScopeRead,

	"send": ScopeWrite, "poll": ScopeWrite, "message.action": ScopeWrite,
	"agent": ScopeWrite, "agent.wait": ScopeWrite, "wake": ScopeWrite,
	"chat.send": ScopeWrite, "chat.abort": ScopeWrite, "node.invoke": ScopeWrite,
	"canvas.put": ScopeWrite, "canvas.remove": ScopeWrite,

	"device.pair.list": ScopePairing, "device.pair.approve": ScopePairing,
	"device.pair.reject": ScopePairing, "device.pair.remove": ScopePairing,
	"device.token.rotate": ScopePairing, "device.token.revoke": ScopePairing,
	"node.pair.list": ScopePairing, "node.pair.approve": ScopePairing,
	"node.pair.reject": ScopePairing, "node.pair.remove": ScopePairing,
	"node.rename": ScopePairing,

	"exec.approval.get": ScopeApprovals, "exec.approval.list": ScopeApprovals,
	"exec.approval.request": ScopeApprovals, "exec.approval.waitDecision": ScopeApprovals,
	"exec.approval.resolve": ScopeApprovals,
}

// nodeMethods are the only methods the node role may call (besides health).
var nodeMethods = map[string]bool{
	"node.invoke.result": true, "node.event": true, "node.pending.drain": true,
	"node.pending.pull": true, "node.pending.ack": true,
	"node.canvas.capability.refresh": true, "skills.bins": true,
	// v4 node host publications and streaming.
	"node.pluginSurface.refresh": true, "node.pluginTools.update": true,
	"node.skills.update": true, "node.runnerInventory.update": true,
	"node.invoke.progress": true,
}

// MethodScope returns the operator scope a method requires. Unclassified
// methods require operator.admin.
func MethodScope(method string) string {
	if s, ok := methodScopes[method]; ok {
		return s
	}
	return ScopeAdmin
}

// RoleAllowed reports whether role may call method. health is open to
// every role.
func RoleAllowed(role, method string) bool {
	if method == "health" {
		return true
	}
	switch role {
	case RoleNode:
		return nodeMethods[method]
	case RoleOperator:
		return !nodeMethods[method]
	}
	return false
}
