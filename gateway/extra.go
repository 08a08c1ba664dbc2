package gateway

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

// Optional hooks for listeners whose facts are learned after Serve starts
// (the tailnet: its names and addresses exist only once the node has
// joined) and for extra status sections.

// hostList is the listener's Host allowlist: HostsFunc's current answer
// when set (never nil then, so an empty answer refuses every Host), else
// Hosts (nil when unset: the default loopback rules apply).
func (l Listener) hostList() []string {
	if l.HostsFunc != nil {
		if h := l.HostsFunc(); h != nil {
			return h
		}
		return []string{}
	}
	if len(l.Hosts) > 0 {
		return l.Hosts
	}
	return nil
}

// AddStatusSection adds the top-level field name to the status method's
// result, computed on every call by f; admin says whether the caller holds
// operator.admin (keep anything sensitive for admins). Call it before
// Serve; it is not safe to call while serving.
func (s *Server) AddStatusSection(name string, f func(admin bool) any) error {
	m := s.methods["status"]
	if m == nil {
		return fmt.Errorf("gateway.AddStatusSection: no status method")
	}
	orig := m.handle
	m.handle = func(ctx context.Context, c *Conn, params json.RawMessage) (any, error) {
		res, err := orig(ctx, c, params)
		if err != nil {
			return res, err
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(mustJSON(res), &obj); err != nil || obj == nil {
			return res, nil
		}
		admin := false
		if sess := c.Session(); sess != nil {
			admin = authn.Satisfies(sess.Scopes, protocol.ScopeAdmin)
		}
		obj[name] = mustJSON(f(admin))
		return obj, nil
	}
	return nil
}
