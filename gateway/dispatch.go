package gateway

import (
	"context"
	"encoding/json"
	"sort"
	"strings"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

// maxUnauthorizedStreak is how many consecutive scope or role refusals a
// connection gets before it is closed (attack A22).
const maxUnauthorizedStreak = 10

// handlerFunc serves one method. params is the raw params (nil when absent),
// already validated against the method's schema.
type handlerFunc func(ctx context.Context, c *Conn, params json.RawMessage) (any, error)

type method struct {
	name   string
	handle handlerFunc
	// async methods run on their own goroutine so a long wait does not
	// stall the connection's reader; at most maxInflight at once.
	async bool
}

func (s *Server) handle(name string, async bool, h handlerFunc) {
	s.methods[name] = &method{name: name, handle: h, async: async}
}

// methodNames lists the implemented methods for hello-ok. clawgate's own
// extensions ("clawgate.*") are callable but not advertised, so OpenClaw
// clients only ever discover OpenClaw methods.
func (s *Server) methodNames() []string {
	names := make([]string, 0, len(s.methods))
	for n := range s.methods {
		if unadvertised(n) {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// dispatch authorizes and runs one request, in the real gateway's order:
// role, then scope (unclassified methods need admin), then existence.
func (s *Server) dispatch(c *Conn, req *protocol.Request, params any) {
	sess := c.Session()
	if perr := authorize(sess, req.Method); perr != nil {
		c.send(protocol.ErrResponse(req.ID, perr))
		c.unauthorizedStreak++
		if c.unauthorizedStreak > maxUnauthorizedStreak {
			c.closeAfterFlush(protocol.ClosePolicy, "repeated unauthorized calls")
		}
		return
	}
	c.unauthorizedStreak = 0
	if req.Method == "connect" {
		c.send(protocol.ErrResponse(req.ID, protocol.InvalidRequest("connect is only valid as the first request")))
		return
	}
	m, ok := s.methods[req.Method]
	if !ok {
		c.send(protocol.ErrResponse(req.ID, protocol.InvalidRequest("unknown method: "+req.Method)))
		return
	}
	if err := s.contract.ValidateParams(req.Method, params); err != nil {
		c.send(protocol.ErrResponse(req.ID, protocol.InvalidRequest("invalid "+req.Method+" params: "+err.Error())))
		return
	}
	if !m.async {
		s.run(c, m, req)
		return
	}
	if c.inflight.Add(1) > maxInflight {
		c.inflight.Add(-1)
		c.send(protocol.ErrResponse(req.ID, &protocol.Error{Code: protocol.ErrUnavailable,
			Message: "too many requests in flight", Retryable: true, RetryAfterMs: 100}))
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer c.inflight.Add(-1)
		s.run(c, m, req)
	}()
}

// replyThen is a handler result whose after func runs once the response
// is queued (for example: close sockets, possibly the caller's own, after
// it has its answer).
type replyThen struct {
	payload any
	after   func()
}

func (s *Server) run(c *Conn, m *method, req *protocol.Request) {
	payload, err := m.handle(c.ctx, c, req.Params)
	if mr, ok := payload.(multiReply); ok && err == nil {
		mr.reply(c, req.ID) // agent: the ack now, the final later (agent.go)
		return
	}
	if rt, ok := payload.(replyThen); ok && err == nil {
		c.send(protocol.OKResponse(req.ID, rt.payload))
		if rt.after != nil {
			rt.after()
		}
		return
	}
	if err != nil {
		perr := protocol.AsError(err)
		if perr.Code == protocol.ErrUnavailable && perr.Message == "internal error" {
			c.log.Error("method failed", "method", m.name, "err", err)
		}
		c.send(protocol.ErrResponse(req.ID, perr))
		return
	}
	c.send(protocol.OKResponse(req.ID, payload))
}

// authorize applies role and scope gating.
func authorize(sess *Session, method string) *protocol.Error {
	if method == "health" {
		return nil
	}
	if !protocol.RoleAllowed(sess.Role, method) {
		return protocol.InvalidRequest("unauthorized role: " + sess.Role)
	}
	if sess.Role == protocol.RoleNode {
		return nil
	}
	need := protocol.MethodScope(method)
	if authn.Satisfies(sess.Scopes, need) {
		return nil
	}
	return &protocol.Error{Code: protocol.ErrForbidden, Message: "missing scope: " + need,
		Details: map[string]any{"code": protocol.DetailMissingScope, "missingScope": need, "requiredScopes": []string{need}}}
}

// unadvertised reports clawgate's own methods (clawgate.*, the canvas
// host's canvas.*) and protocol-3 names that OpenClaw 2026.9 no longer
// lists: they stay callable, but hello-ok advertises only what an OpenClaw
// client knows.
func unadvertised(method string) bool {
	return strings.HasPrefix(method, "clawgate.") || strings.HasPrefix(method, "canvas.") ||
		method == "node.canvas.capability.refresh"
}
