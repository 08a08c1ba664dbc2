package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/canvas"
	"github.com/clawgate/clawgate/protocol"
)

// The gateway side of the canvas host (package canvas, served on its own
// listener): operators write pages with canvas.put (operator.write),
// list them with canvas.list (operator.read) and delete them with
// canvas.remove; a node gets a capability URL in hello-ok (v4
// pluginSurfaceUrls.canvas, v3 canvasHostUrl), bound to its connection and
// its address, and refreshes it with node.canvas.capability.refresh (or,
// on v4, node.pluginSurface.refresh with surface "canvas").

// CanvasOptions connect the gateway to the canvas host.
type CanvasOptions struct {
	// Host stores and serves canvases; nil leaves the canvas out (no
	// canvas methods, no URL in hello-ok). Nodes that arrived over
	// loopback reach it at Host.BaseURL().
	Host *canvas.Host
	// TailnetURL, when set, returns where tailnet peers reach the canvas
	// host ("http://gw.tailnet-x.ts.net:18793"), or "" while it is not
	// up; nodes that arrived over the tailnet get their URLs there.
	TailnetURL func() string
}

// canvasSurface is the plugin surface name of the canvas in v4.
const canvasSurface = "canvas"

func (s *Server) registerCanvas() {
	if s.opts.Canvas.Host == nil {
		return
	}
	s.handle("canvas.put", false, s.methodCanvasPut)
	s.handle("canvas.list", false, s.methodCanvasList)
	s.handle("canvas.remove", false, s.methodCanvasRemove)
	s.handle("node.canvas.capability.refresh", false, s.methodCanvasRefresh)
	// v4 nodes refresh through node.pluginSurface.refresh: answer it for
	// the canvas surface and leave every other surface to its handler.
	if prev := s.methods["node.pluginSurface.refresh"]; prev != nil {
		inner := prev.handle
		s.handle(prev.name, prev.async, func(ctx context.Context, c *Conn, raw json.RawMessage) (any, error) {
			var p struct {
				Surface string `json:"surface"`
			}
			_ = json.Unmarshal(raw, &p)
			if strings.TrimSpace(p.Surface) != canvasSurface {
				return inner(ctx, c, raw)
			}
			capab, url, err := s.mintCanvas(c, c.Session())
			if err != nil {
				return nil, err
			}
			return map[string]any{"surface": canvasSurface, "pluginSurfaceUrls": map[string]string{canvasSurface: url},
				"expiresAtMs": capab.ExpiresAt.UnixMilli()}, nil
		})
	}
}

// canvasBase is where a connection reaches the canvas host, by how it
// arrived: loopback, or the tailnet (never through Funnel); "" for any
// other way in (the canvas host does not listen there).
func (s *Server) canvasBase(c *Conn) string {
	o := s.opts.Canvas
	switch c.arrival.Path {
	case authn.PathLoopback:
		return o.Host.BaseURL()
	case authn.PathTailnet:
		if o.TailnetURL != nil && (c.arrival.Peer == nil || !c.arrival.Peer.Funnel) {
			return o.TailnetURL()
		}
	}
	return ""
}

// mintCanvas issues a capability for a node connection, honoured only
// from the node's own address and only while the connection lives.
func (s *Server) mintCanvas(c *Conn, sess *Session) (canvas.Capability, string, error) {
	h := s.opts.Canvas.Host
	unavailable := &protocol.Error{Code: protocol.ErrUnavailable, Message: "canvas host unavailable"}
	if h == nil || sess == nil || sess.Role != protocol.RoleNode {
		return canvas.Capability{}, "", unavailable
	}
	base := s.canvasBase(c)
	if base == "" {
		return canvas.Capability{}, "", unavailable
	}
	node := sess.DeviceID
	if node == "" {
		node = sess.Client.ID
	}
	capab, err := h.Mint(canvas.Binding{Session: c.id, Node: shortID(node),
		Remote: c.arrival.Remote.Addr().Unmap(), Done: c.Context().Done()})
	if err != nil {
		s.log.Warn("canvas capability not issued", "node", shortID(node), "err", err)
		return canvas.Capability{}, "", unavailable
	}
	return capab, canvas.ScopedURL(base, capab.Token), nil
}

// canvasHello adds the node's canvas URL to its hello-ok.
func (s *Server) canvasHello(c *Conn, sess *Session, h *protocol.HelloOK) {
	if s.opts.Canvas.Host == nil || sess.Role != protocol.RoleNode {
		return
	}
	_, url, err := s.mintCanvas(c, sess)
	if err != nil {
		return
	}
	if sess.Protocol < 4 {
		h.CanvasHostURL = url
		return
	}
	h.PluginSurfaceURLs = map[string]string{canvasSurface: url}
}

func (s *Server) methodCanvasRefresh(_ context.Context, c *Conn, _ json.RawMessage) (any, error) {
	capab, url, err := s.mintCanvas(c, c.Session())
	if err != nil {
		return nil, err
	}
	return map[string]any{"canvasCapability": capab.Token, "canvasCapabilityExpiresAtMs": capab.ExpiresAt.UnixMilli(),
		"canvasHostUrl": url}, nil
}

func canvasAgent(id string) string {
	if id == "" {
		return canvas.DefaultAgent
	}
	return id
}

// canvasError maps a canvas host error to a protocol answer.
func (s *Server) canvasError(method string, err error) error {
	for _, e := range []error{canvas.ErrBadAgent, canvas.ErrBadPath, canvas.ErrBadType, canvas.ErrTooLarge, canvas.ErrQuota} {
		if errors.Is(err, e) {
			return protocol.InvalidRequest("invalid " + method + " params: " + err.Error())
		}
	}
	s.log.Error("canvas write failed", "method", method, "err", err)
	return &protocol.Error{Code: protocol.ErrUnavailable, Message: "canvas storage unavailable", Retryable: true, RetryAfterMs: 1000}
}

func (s *Server) methodCanvasPut(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		AgentID       string  `json:"agentId"`
		Path          string  `json:"path"`
		Content       *string `json:"content"`
		ContentBase64 *string `json:"contentBase64"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, protocol.InvalidRequest("invalid canvas.put params: " + err.Error())
	}
	var data []byte
	switch {
	case (p.Content == nil) == (p.ContentBase64 == nil):
		return nil, protocol.InvalidRequest("invalid canvas.put params: give exactly one of content and contentBase64")
	case p.Content != nil:
		data = []byte(*p.Content)
	default:
		b, err := base64.StdEncoding.DecodeString(*p.ContentBase64)
		if err != nil {
			return nil, protocol.InvalidRequest("invalid canvas.put params: contentBase64 is not base64")
		}
		data = b
	}
	agentID := canvasAgent(p.AgentID)
	fi, err := s.opts.Canvas.Host.Write(agentID, p.Path, data)
	if err != nil {
		return nil, s.canvasError("canvas.put", err)
	}
	s.log.Info("canvas page written", "agent", agentID, "path", fi.Path, "bytes", fi.Bytes)
	return map[string]any{"ok": true, "agentId": agentID, "path": fi.Path, "bytes": fi.Bytes, "updatedAtMs": fi.UpdatedAtMs}, nil
}

func (s *Server) methodCanvasList(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		AgentID string `json:"agentId"`
	}
	_ = json.Unmarshal(raw, &p)
	agentID := canvasAgent(p.AgentID)
	files, err := s.opts.Canvas.Host.List(agentID)
	if err != nil {
		return nil, s.canvasError("canvas.list", err)
	}
	return map[string]any{"agentId": agentID, "files": files}, nil
}

func (s *Server) methodCanvasRemove(_ context.Context, _ *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		AgentID string `json:"agentId"`
		Path    string `json:"path"`
	}
	_ = json.Unmarshal(raw, &p)
	agentID := canvasAgent(p.AgentID)
	removed, err := s.opts.Canvas.Host.Remove(agentID, p.Path)
	if err != nil {
		return nil, s.canvasError("canvas.remove", err)
	}
	return map[string]any{"ok": true, "removed": removed}, nil
}
