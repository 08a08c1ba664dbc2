package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

// Options configure Dial.
type Options struct {
	URL         string
	Token       string // shared gateway token
	DeviceToken string // device token issued by this gateway
	// BootstrapToken is a setup code's single-use token (first pairing).
	BootstrapToken string
	Identity       *Identity // nil: connect without a device block

	ClientID     string // default "cli"
	ClientMode   string // default "cli"
	Version      string
	Platform     string // default "linux"
	DeviceFamily string
	DisplayName  string
	InstanceID   string
	Role         string   // default operator
	Scopes       []string // default none
	Caps         []string
	Commands     []string
	PathEnv      string // node role: the node's PATH
	MinProtocol  int    // default protocol.Version
	MaxProtocol  int    // default protocol.Version

	// TLSFingerprint pins the gateway's certificate for wss:// URLs: one
	// or more comma-separated SHA-256 fingerprints, "sha256:<hex>" of the
	// leaf certificate (OpenClaw's tlsFingerprint) or "spki-sha256:<hex>"
	// of its public key. The pin is checked inside the TLS handshake (see
	// client/tls.go).
	TLSFingerprint string
	// AllowInsecurePlaintext permits ws:// to a host that is not a
	// loopback IP literal. Dangerous: credentials cross the network in
	// the clear.
	AllowInsecurePlaintext bool

	Dialer *websocket.Dialer
	Header http.Header
	// OnEvent receives every event after the handshake, in order, on the
	// client's reader goroutine; it must not block for long.
	OnEvent func(Event)
	// Now is the clock used for signedAt when the challenge has no ts.
	Now func() time.Time
}

// Event is one received event frame.
type Event struct {
	Name         string
	Payload      json.RawMessage
	Seq          *uint64
	StateVersion *protocol.StateVersion
}

// RemoteError is a failed response from the gateway.
type RemoteError struct {
	protocol.ErrorShape
}

func (e *RemoteError) Error() string {
	return e.Code + ": " + e.Message
}

// DetailCode returns details.code, or "".
func (e *RemoteError) DetailCode() string {
	if m, ok := e.Details.(map[string]any); ok {
		s, _ := m["code"].(string)
		return s
	}
	return ""
}

// CloseError reports that the gateway closed the socket.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("gateway closed the connection: %d %s", e.Code, e.Reason)
}

// Client is a connected, authenticated gateway session.
type Client struct {
	ws    *websocket.Conn
	hello protocol.HelloOK
	opts  Options

	writeMu sync.Mutex
	nextID  atomic.Uint64

	mu      sync.Mutex
	pending map[string]chan frame
	err     error
	done    chan struct{}
}

type frame struct {
	Type         string                 `json:"type"`
	ID           string                 `json:"id"`
	OK           bool                   `json:"ok"`
	Payload      json.RawMessage        `json:"payload"`
	Error        *protocol.ErrorShape   `json:"error"`
	Event        string                 `json:"event"`
	Seq          *uint64                `json:"seq"`
	StateVersion *protocol.StateVersion `json:"stateVersion"`
}

// Dial connects, completes the handshake and returns a ready client.
// Before touching the network it applies the transport policy of
// client/tls.go: plaintext ws:// only to loopback IP literals (unless
// AllowInsecurePlaintext), TLSFingerprint only with wss://. A pin mismatch
// fails inside the TLS handshake (errors.Is tlspin.ErrCertificateChanged);
// an untrusted certificate without a pin is tlspin.ErrUnknownCertificate.
// A refused connect returns a *RemoteError (with the close code in a wrapped
// *CloseError when the gateway sent one).
func Dial(ctx context.Context, opts Options) (*Client, error) {
	opts.defaults()
	d, err := opts.transport()
	if err != nil {
		return nil, err
	}
	ws, resp, err := d.DialContext(ctx, opts.URL, opts.Header)
	if err != nil {
		err = explainDialError(err, d)
		if resp != nil {
			return nil, fmt.Errorf("client.Dial %s: %w (HTTP %d)", opts.URL, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("client.Dial %s: %w", opts.URL, err)
	}
	c := &Client{ws: ws, opts: opts, pending: map[string]chan frame{}, done: make(chan struct{})}
	if dl, ok := ctx.Deadline(); ok {
		_ = ws.SetReadDeadline(dl)
	}
	if err := c.handshake(); err != nil {
		_ = ws.Close()
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Time{})
	go c.readLoop()
	return c, nil
}

func (o *Options) defaults() {
	if o.ClientID == "" {
		o.ClientID = "cli"
	}
	if o.ClientMode == "" {
		o.ClientMode = "cli"
	}
	if o.Version == "" {
		o.Version = "clawgate"
	}
	if o.Platform == "" {
		o.Platform = "linux"
	}
	if o.Role == "" {
		o.Role = protocol.RoleOperator
	}
	if o.MinProtocol == 0 {
		o.MinProtocol = protocol.Version
	}
	if o.MaxProtocol == 0 {
		o.MaxProtocol = protocol.Version
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Scopes == nil {
		o.Scopes = []string{}
	}
}

func (c *Client) readFrame() (frame, error) {
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return frame{}, &CloseError{Code: ce.Code, Reason: ce.Text}
		}
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		return frame{}, fmt.Errorf("client: bad frame from gateway: %w", err)
	}
	return f, nil
}

func (c *Client) handshake() error {
	f, err := c.readFrame()
	if err != nil {
		return fmt.Errorf("client: waiting for connect.challenge: %w", err)
	}
	if f.Type != protocol.TypeEvent || f.Event != protocol.EventChallenge {
		return fmt.Errorf("client: expected connect.challenge, got %s %s", f.Type, f.Event)
	}
	var ch protocol.Challenge
	if err := json.Unmarshal(f.Payload, &ch); err != nil || ch.Nonce == "" {
		return fmt.Errorf("client: bad connect.challenge")
	}
	params := c.connectParams(ch)
	if err := c.write(protocol.Request{Type: protocol.TypeReq, ID: "connect-1", Method: "connect", Params: mustRaw(params)}); err != nil {
		return err
	}
	for {
		f, err := c.readFrame()
		if err != nil {
			return fmt.Errorf("client: connect: %w", err)
		}
		if f.Type != protocol.TypeRes || f.ID != "connect-1" {
			continue
		}
		if !f.OK {
			rerr := &RemoteError{}
			if f.Error != nil {
				rerr.ErrorShape = *f.Error
			}
			return rerr
		}
		if err := json.Unmarshal(f.Payload, &c.hello); err != nil {
			return fmt.Errorf("client: bad hello-ok: %w", err)
		}
		return nil
	}
}

func (c *Client) connectParams(ch protocol.Challenge) protocol.ConnectParams {
	o := &c.opts
	p := protocol.ConnectParams{
		MinProtocol: o.MinProtocol, MaxProtocol: o.MaxProtocol,
		Client: protocol.ClientInfo{ID: o.ClientID, Version: o.Version, Platform: o.Platform,
			DeviceFamily: o.DeviceFamily, Mode: o.ClientMode, DisplayName: o.DisplayName, InstanceID: o.InstanceID},
		Caps: o.Caps, Commands: o.Commands, PathEnv: o.PathEnv, Role: o.Role, Scopes: o.Scopes,
	}
	if o.Token != "" || o.DeviceToken != "" || o.BootstrapToken != "" {
		p.Auth = &protocol.ConnectAuth{Token: o.Token, DeviceToken: o.DeviceToken, BootstrapToken: o.BootstrapToken}
	}
	if o.Identity != nil {
		signedAt := ch.Ts
		if signedAt == 0 {
			signedAt = o.Now().UnixMilli()
		}
		payload := authn.BuildPayloadV3(authn.PayloadFields{
			DeviceID: o.Identity.DeviceID, ClientID: o.ClientID, ClientMode: o.ClientMode,
			Role: o.Role, Scopes: o.Scopes, SignedAtMs: signedAt,
			Token: authn.PickToken(o.Token, o.DeviceToken, o.BootstrapToken), Nonce: ch.Nonce,
			Platform: o.Platform, DeviceFamily: o.DeviceFamily,
		})
		p.Device = &protocol.DeviceProof{ID: o.Identity.DeviceID, PublicKey: o.Identity.PublicKey(),
			Signature: authn.SignPayload(o.Identity.Private, payload), SignedAt: signedAt, Nonce: ch.Nonce}
	}
	return p
}

func mustRaw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (c *Client) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// Hello returns the hello-ok payload of the handshake.
func (c *Client) Hello() *protocol.HelloOK { return &c.hello }

func (c *Client) readLoop() {
	defer close(c.done)
	for {
		f, err := c.readFrame()
		if err != nil {
			c.mu.Lock()
			c.err = err
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		switch f.Type {
		case protocol.TypeRes:
			c.mu.Lock()
			ch := c.pending[f.ID]
			delete(c.pending, f.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		case protocol.TypeEvent:
			if c.opts.OnEvent != nil {
				c.opts.OnEvent(Event{Name: f.Event, Payload: f.Payload, Seq: f.Seq, StateVersion: f.StateVersion})
			}
		}
	}
}

// Call sends one request and waits for its response. A failed response is
// a *RemoteError.
func (c *Client) Call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	id := strconv.FormatUint(c.nextID.Add(1), 10)
	ch := make(chan frame, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.pending[id] = ch
	c.mu.Unlock()
	req := protocol.Request{Type: protocol.TypeReq, ID: id, Method: method}
	if params != nil {
		req.Params = mustRaw(params)
	}
	if err := c.write(req); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, err
	}
	select {
	case f, ok := <-ch:
		if !ok {
			c.mu.Lock()
			err := c.err
			c.mu.Unlock()
			return nil, fmt.Errorf("client: %s: connection lost: %w", method, err)
		}
		if !f.OK {
			rerr := &RemoteError{}
			if f.Error != nil {
				rerr.ErrorShape = *f.Error
			}
			return nil, rerr
		}
		return f.Payload, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// Done is closed when the connection ends; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (a *CloseError when the gateway
// closed it), or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close sends a normal close frame and releases the socket.
func (c *Client) Close() error {
	c.writeMu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.writeMu.Unlock()
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
	return c.ws.Close()
}
