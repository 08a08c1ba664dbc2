package gateway

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/protocol"
)

// Close reason for sockets of a removed device or a rotated/revoked token.
const reasonDeviceRemoved = "device removed"

func (s *Server) registerDeviceMethods() {
	if s.opts.Pairing == nil {
		return
	}
	s.handle("device.pair.list", false, s.methodPairList)
	s.handle("device.pair.approve", false, s.methodPairApprove)
	s.handle("device.pair.reject", false, s.methodPairReject)
	s.handle("device.pair.remove", false, s.methodPairRemove)
	s.handle("device.token.rotate", false, s.methodTokenRotate)
	s.handle("device.token.revoke", false, s.methodTokenRevoke)
}

func caller(c *Conn) pairing.Caller {
	sess := c.Session()
	return pairing.Caller{DeviceID: sess.DeviceID, Scopes: sess.Scopes}
}

// pairingError maps pairing's errors to the protocol's answers. Nothing
// internal reaches the wire.
func pairingError(err error) error {
	var ms *pairing.MissingScopeError
	switch {
	case errors.As(err, &ms):
		return protocol.InvalidRequest("missing scope: " + ms.Scope)
	case errors.Is(err, pairing.ErrNotFound):
		return protocol.InvalidRequest("unknown or expired id")
	case errors.Is(err, pairing.ErrRotationDenied):
		return protocol.InvalidRequest("device token rotation denied")
	case errors.Is(err, pairing.ErrForbidden):
		return &protocol.Error{Code: protocol.ErrForbidden, Message: "forbidden: only the device itself or an admin may do this"}
	case errors.Is(err, pairing.ErrInvalid):
		return protocol.InvalidRequest("unknown or malformed deviceId or role")
	}
	return err
}

// closeDevice closes every socket of deviceID (for one role when role is
// set) with 4001, dropping whatever they had queued.
func (s *Server) closeDevice(deviceID, role string, except *Conn) int {
	n := 0
	for _, o := range s.snapshotConns() {
		sess := o.Session()
		if sess == nil || sess.DeviceID != deviceID || role != "" && sess.Role != role {
			continue
		}
		if o == except {
			o.closeAfterFlush(protocol.CloseAuthChanged, reasonDeviceRemoved)
		} else {
			o.abort(protocol.CloseAuthChanged, reasonDeviceRemoved)
		}
		n++
	}
	return n
}

func (s *Server) methodPairList(_ context.Context, _ *Conn, _ json.RawMessage) (any, error) {
	l, err := s.opts.Pairing.List()
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (s *Server) methodPairApprove(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal(raw, &p)
	res, err := s.opts.Pairing.Approve(p.RequestID, caller(c))
	if err != nil {
		return nil, pairingError(err)
	}
	c.log.Info("device approved", "device", shortID(res.Device.DeviceID), "by", shortID(c.Session().DeviceID))
	s.bus.broadcast(protocol.EventDevicePairResolved, res.Resolved, nil, nil)
	return replyThen{payload: res, after: func() {
		if res.KeyChanged {
			s.closeDevice(res.Device.DeviceID, "", c)
		}
	}}, nil
}

func (s *Server) methodPairReject(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal(raw, &p)
	res, err := s.opts.Pairing.Reject(p.RequestID, caller(c))
	if err != nil {
		return nil, pairingError(err)
	}
	s.bus.broadcast(protocol.EventDevicePairResolved, res, nil, nil)
	return map[string]string{"requestId": res.RequestID, "deviceId": res.DeviceID}, nil
}

func (s *Server) methodPairRemove(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		DeviceID string `json:"deviceId"`
	}
	_ = json.Unmarshal(raw, &p)
	res, err := s.opts.Pairing.Remove(p.DeviceID, caller(c))
	if err != nil {
		return nil, pairingError(err)
	}
	c.log.Info("device removed", "device", shortID(res.DeviceID))
	return replyThen{payload: res, after: func() { s.closeDevice(res.DeviceID, "", c) }}, nil
}

// rotateReply is device.token.rotate's result: the new token only goes
// back to the device it belongs to.
type rotateReply struct {
	DeviceID      string   `json:"deviceId"`
	Role          string   `json:"role"`
	Token         string   `json:"token,omitempty"`
	TokenDelivery string   `json:"tokenDelivery"`
	Scopes        []string `json:"scopes"`
	RotatedAtMs   int64    `json:"rotatedAtMs"`
}

func (s *Server) methodTokenRotate(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		DeviceID string   `json:"deviceId"`
		Role     string   `json:"role"`
		Scopes   []string `json:"scopes"`
	}
	_ = json.Unmarshal(raw, &p)
	res, err := s.opts.Pairing.RotateToken(p.DeviceID, p.Role, p.Scopes, caller(c))
	if err != nil {
		return nil, pairingError(err)
	}
	out := rotateReply{DeviceID: res.DeviceID, Role: res.Role, Scopes: res.Scopes, RotatedAtMs: res.RotatedAtMs,
		TokenDelivery: "withheld-cross-device"}
	if c.Session().DeviceID == res.DeviceID {
		out.Token, out.TokenDelivery = res.Token, "in-band"
	}
	c.log.Info("device token rotated", "device", shortID(res.DeviceID), "role", res.Role)
	return replyThen{payload: out, after: func() { s.closeDevice(res.DeviceID, res.Role, c) }}, nil
}

func (s *Server) methodTokenRevoke(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		DeviceID string `json:"deviceId"`
		Role     string `json:"role"`
	}
	_ = json.Unmarshal(raw, &p)
	res, err := s.opts.Pairing.RevokeToken(p.DeviceID, p.Role, caller(c))
	if err != nil {
		return nil, pairingError(err)
	}
	c.log.Info("device token revoked", "device", shortID(res.DeviceID), "role", res.Role)
	return replyThen{payload: res, after: func() { s.closeDevice(res.DeviceID, res.Role, c) }}, nil
}
