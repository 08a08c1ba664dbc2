package gateway

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

func (s *Server) registerMethods() {
	s.handle("health", false, s.methodHealth)
	s.handle("status", false, s.methodStatus)
	s.handle("system-presence", false, s.methodSystemPresence)
	s.handle("last-heartbeat", false, s.methodLastHeartbeat)
	s.registerDeviceMethods()
	s.registerChannelMethods()
	s.registerNodeMethods()
	s.registerAutomation() // cron.*, wake, set-heartbeats (cron.go, heartbeat.go)
	s.registerCanvas()     // canvas.*, node.canvas.capability.refresh (canvas.go)
	if s.opts.Backup != nil {
		s.handle("clawgate.backup", false, s.methodBackup)
	}
}

// methodBackup writes a hot copy of the state database. It is admin-only by
// the default-deny scope rule, and only for local connections: a remote
// peer must never choose a path on this host.
func (s *Server) methodBackup(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	if c.authnArrival().Locality() != authn.Local {
		return nil, &protocol.Error{Code: protocol.ErrForbidden, Message: "clawgate.backup is only available to local clients"}
	}
	var p struct {
		Path string `json:"path"`
	}
	_ = json.Unmarshal(raw, &p)
	if !filepath.IsAbs(p.Path) {
		return nil, protocol.InvalidRequest("invalid clawgate.backup params: path must be absolute")
	}
	n, err := s.opts.Backup(p.Path)
	if err != nil {
		c.log.Warn("backup failed", "err", err)
		return nil, &protocol.Error{Code: protocol.ErrUnavailable, Message: "backup failed: " + err.Error()}
	}
	c.log.Info("state backed up", "path", p.Path, "bytes", n)
	return map[string]any{"path": p.Path, "bytes": n}, nil
}

func (s *Server) healthSummary() protocol.HealthSummary {
	now := s.nowMs()
	sessions := protocol.SessionsHealth{Path: s.opts.StateDir, Count: 0, Recent: []any{}}
	channels, channelOrder, channelLabels := s.channelHealth()
	return protocol.HealthSummary{
		OK: true, Ts: now, DurationMs: 0,
		Channels: channels, ChannelOrder: channelOrder, ChannelLabels: channelLabels,
		HeartbeatSeconds: s.heartbeatSeconds(), DefaultAgentID: "main",
		Agents: []protocol.AgentHealth{{AgentID: "main", IsDefault: true, Sessions: sessions,
			Heartbeat: s.heartbeatConfig()}}, // heartbeat.go
		Sessions: sessions,
	}
}

func (s *Server) methodHealth(_ context.Context, _ *Conn, _ json.RawMessage) (any, error) {
	return s.healthSummary(), nil
}

func (s *Server) methodStatus(_ context.Context, c *Conn, _ json.RawMessage) (any, error) {
	res := protocol.StatusResult{
		RuntimeVersion: s.opts.Version,
		UptimeMs:       s.uptime().Milliseconds(),
		ChannelSummary: s.channelSummaryLines(),
		Heartbeat:      protocol.StatusHeartbeat{DefaultAgentID: "main", Agents: []any{}},
		Sessions:       protocol.StatusSessions{Recent: []any{}},
	}
	for _, o := range s.snapshotConns() {
		sess := o.Session()
		if sess == nil {
			continue
		}
		res.Connections.Total++
		if sess.Role == protocol.RoleNode {
			res.Connections.Nodes++
		} else {
			res.Connections.Operators++
		}
	}
	if authn.Satisfies(c.Session().Scopes, protocol.ScopeAdmin) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		res.ProcessMemory = &protocol.ProcessMemory{RSSBytes: readRSS(), HeapUsedBytes: ms.HeapAlloc, HeapTotalBytes: ms.HeapSys}
		res.PID = os.Getpid()
		res.StateDir = s.opts.StateDir
	}
	return res, nil
}

func (s *Server) methodSystemPresence(_ context.Context, _ *Conn, _ json.RawMessage) (any, error) {
	list, _ := s.bus.presenceList()
	return list, nil
}

// readRSS returns the resident set size from /proc, or 0 where there is none.
func readRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb uint64
			for _, f := range strings.Fields(rest) {
				for _, ch := range f {
					if ch < '0' || ch > '9' {
						return kb * 1024
					}
					kb = kb*10 + uint64(ch-'0')
				}
				return kb * 1024
			}
		}
	}
	return 0
}

func deviceFamily() string {
	switch runtime.GOOS {
	case "linux":
		return "Linux"
	case "darwin":
		return "Mac"
	case "windows":
		return "Windows"
	}
	return runtime.GOOS
}
