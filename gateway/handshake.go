package gateway

import (
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/pairing"
	"github.com/clawgate/clawgate/protocol"
)

// devicelessScopes caps what a shared-token connection without a device
// identity may hold: enough for the CLI's read and send calls, never admin,
// pairing or approvals (attack A12).
var devicelessScopes = []string{protocol.ScopeRead, protocol.ScopeWrite}

// browserClients must come from an allowed browser Origin.
var browserClients = map[string]bool{"webchat-ui": true, "openclaw-control-ui": true, "webchat": true}

// connectAttempt carries one connect request through the pipeline.
type connectAttempt struct {
	reqID    string
	params   protocol.ConnectParams
	role     string
	protocol int
	device   *authn.VerifiedDevice
	method   string // how the connection authenticated: token, device-token
	scopes   []string
	token    string // freshly minted device token for hello-ok, if any
	issuedAt int64

	// checked: the pairing decision (or its error) was taken while the
	// device token was verified, in the same read (authenticateDeviceToken).
	checked bool
	dec     pairing.Decision
	decErr  error
}

// handshake reads the first frame and runs the connect pipeline, in the
// real gateway's order. It returns false when the connection must end; the
// error response and close have been queued by then.
func (c *Conn) handshake() bool {
	data, ok := c.readFrame()
	if !ok {
		return false
	}
	a, ok := c.parseConnect(data)
	if !ok {
		return false
	}
	steps := []func(*connectAttempt) *protocol.Error{
		c.negotiateProtocol,
		c.checkRole,
		c.checkBrowserClient,
		c.authenticate,
		c.pair,
	}
	for _, step := range steps {
		if perr := step(a); perr != nil {
			c.fail(a.reqID, perr)
			return false
		}
	}
	c.accept(a)
	return true
}

// fail answers the connect request with perr and closes the socket with the
// error's close code (1008 unless the step chose another).
func (c *Conn) fail(reqID string, perr *protocol.Error) {
	c.srv.metrics.handshakesFailed.Add(1)
	c.send(protocol.ErrResponse(reqID, perr))
	code := perr.Close
	if code == 0 {
		code = protocol.ClosePolicy
	}
	reason := perr.CloseReason
	if reason == "" {
		reason = perr.Message
	}
	c.closeAfterFlush(code, reason)
}

// parseConnect applies the frame rules of the first message: JSON, a valid
// request frame, method connect, valid params.
func (c *Conn) parseConnect(data []byte) (*connectAttempt, bool) {
	v, err := protocol.ParseStrict(data)
	if err != nil {
		if errors.Is(err, protocol.ErrNotJSON) {
			// Like the real gateway: not JSON at all ends with a plain 1000.
			c.closeAfterFlush(protocol.CloseNormal, "")
		} else {
			c.closeAfterFlush(protocol.ClosePolicy, "invalid request frame: "+err.Error())
		}
		c.srv.metrics.handshakesFailed.Add(1)
		return nil, false
	}
	if c.srv.contract.Validate("RequestFrame", v) != nil {
		c.srv.metrics.handshakesFailed.Add(1)
		c.closeAfterFlush(protocol.ClosePolicy, "invalid request frame")
		return nil, false
	}
	obj := v.(map[string]any)
	id := obj["id"].(string)
	if obj["method"] != "connect" {
		c.fail(id, protocol.InvalidRequest("invalid handshake: first request must be connect"))
		return nil, false
	}
	params := obj["params"]
	if err := c.srv.contract.Validate("ConnectParams", params); err != nil {
		c.fail(id, protocol.InvalidRequest("invalid connect params: "+err.Error()))
		return nil, false
	}
	// The usual connect converts from the parsed value; anything unusual
	// goes through encoding/json, whose errors are the ones clients see.
	cp, fast := protocol.DecodeConnectParams(params)
	if !fast {
		var req struct {
			Params protocol.ConnectParams `json:"params"`
		}
		if err := json.Unmarshal(data, &req); err != nil {
			c.fail(id, protocol.InvalidRequest("invalid connect params: "+err.Error()))
			return nil, false
		}
		cp = req.Params
	}
	a := &connectAttempt{reqID: id, params: cp, role: cp.ResolvedRole()}
	if err := authn.ValidateClaims(a.claims()); err != nil {
		c.fail(id, protocol.InvalidRequest("invalid connect params: "+err.Error()))
		return nil, false
	}
	return a, true
}

func (a *connectAttempt) claims() authn.SignedClaims {
	p := &a.params
	var tok, devTok, boot string
	if p.Auth != nil {
		tok, devTok, boot = p.Auth.Token, p.Auth.DeviceToken, p.Auth.BootstrapToken
	}
	return authn.SignedClaims{
		ClientID:     p.Client.ID,
		ClientMode:   p.Client.Mode,
		Role:         a.role,
		Scopes:       p.Scopes,
		Token:        authn.PickToken(tok, devTok, boot),
		Platform:     p.Client.Platform,
		DeviceFamily: p.Client.DeviceFamily,
	}
}

// negotiateProtocol: operators and UIs must include the current version;
// nodes and probes may speak one version back.
func (c *Conn) negotiateProtocol(a *connectAttempt) *protocol.Error {
	p := &a.params
	lowest := protocol.MinClientVersion
	if a.role == protocol.RoleNode && p.Client.Mode == protocol.ModeNode || p.Client.Mode == protocol.ModeProbe {
		lowest = protocol.MinNodeVersion
	}
	if p.MinProtocol > p.MaxProtocol || p.MaxProtocol < lowest || p.MinProtocol > protocol.Version {
		return &protocol.Error{
			Code: protocol.ErrInvalidRequest, Message: "protocol mismatch",
			Details: map[string]any{
				"code":                 protocol.DetailProtocolMismatch,
				"clientMinProtocol":    p.MinProtocol,
				"clientMaxProtocol":    p.MaxProtocol,
				"expectedProtocol":     protocol.Version,
				"minimumProbeProtocol": protocol.MinProbeVersion,
			},
			Close: protocol.CloseProtocolError, CloseReason: "protocol mismatch",
		}
	}
	a.protocol = min(p.MaxProtocol, protocol.Version)
	return nil
}

func (c *Conn) checkRole(a *connectAttempt) *protocol.Error {
	if !authn.ValidRole(a.role) {
		return protocol.InvalidRequest("invalid role")
	}
	return nil
}

// checkBrowserClient: browser clients must arrive with an Origin (which the
// upgrade already matched against the allowlist).
func (c *Conn) checkBrowserClient(a *connectAttempt) *protocol.Error {
	if browserClients[a.params.Client.ID] || a.params.Client.Mode == protocol.ModeWebchat {
		if o := c.arrival.Origin; o == "" || o == "null" {
			return protocol.NewError(protocol.ErrInvalidRequest, "origin not allowed", protocol.DetailOriginNotAllowed)
		}
	}
	return nil
}

// authenticate checks the shared token and the device proof.
func (c *Conn) authenticate(a *connectAttempt) *protocol.Error {
	p := &a.params
	token := ""
	if p.Auth != nil {
		token = p.Auth.Token
	}
	lim, now := c.srv.opts.Limiter, c.srv.opts.Now()
	key := authn.NewLimitKey(authn.LimitSharedSecret, c.authnArrival())
	presented := token != "" || p.Device != nil || p.Auth != nil && p.Auth.DeviceToken != ""
	if presented {
		// A correct credential during a lockout is refused too (A18).
		if retry, locked := lim.Check(key, now); locked {
			return c.rateLimited(retry)
		}
	}
	sharedOK := token != "" && c.srv.opts.Token.Equal(token)
	if p.Device == nil {
		if !sharedOK {
			if token != "" {
				lim.Fail(key, now)
			}
			return c.unauthorized(a, token)
		}
		lim.Succeed(key)
		if a.role == protocol.RoleNode {
			return protocol.NewError(protocol.ErrNotPaired, "device identity required", protocol.DetailDeviceIdentityRequired)
		}
		a.method = "token"
		a.scopes = filterScopes(p.Scopes, devicelessScopes)
		return nil
	}
	d := p.Device
	vd, err := authn.VerifyDevice(authn.DeviceProof{
		ID: d.ID, PublicKey: d.PublicKey, Signature: d.Signature, SignedAt: d.SignedAt, Nonce: d.Nonce,
	}, a.claims(), c.nonce, c.srv.opts.Now())
	if err != nil {
		var de *authn.DeviceAuthError
		if !errors.As(err, &de) {
			return protocol.InvalidRequest("device auth invalid")
		}
		c.srv.metrics.authFailures.Add(1)
		lim.Fail(key, now)
		c.log.Info("device proof refused", "reason", de.Reason)
		return &protocol.Error{Code: protocol.ErrInvalidRequest, Message: de.Message,
			Details: map[string]any{"code": de.Code, "reason": de.Reason}}
	}
	a.device = &vd
	if !sharedOK && p.Auth != nil && p.Auth.BootstrapToken != "" && p.Auth.DeviceToken == "" {
		return c.authenticateBootstrap(a, key) // setupcode.go
	}
	if sharedOK {
		lim.Succeed(key)
		a.method = "token"
		a.scopes = slices.Clone(p.Scopes)
		if a.scopes == nil {
			a.scopes = []string{}
		}
		return nil
	}
	return c.authenticateDeviceToken(a, token, key)
}

// authenticateDeviceToken is the fallback when the shared token did not
// match: auth.deviceToken, else auth.token, verified against the device's
// stored token digest for this role.
func (c *Conn) authenticateDeviceToken(a *connectAttempt, token string, sharedKey authn.LimitKey) *protocol.Error {
	p := &a.params
	lim, now := c.srv.opts.Limiter, c.srv.opts.Now()
	devTok := ""
	if p.Auth != nil {
		devTok = p.Auth.DeviceToken
	}
	candidate := devTok
	if candidate == "" {
		candidate = token
	}
	if c.srv.opts.Pairing == nil || candidate == "" {
		if token != "" {
			lim.Fail(sharedKey, now)
		}
		return c.unauthorized(a, token)
	}
	key := authn.NewLimitKey(authn.LimitDeviceToken, c.authnArrival())
	if retry, locked := lim.Check(key, now); locked {
		return c.rateLimited(retry)
	}
	// Check verifies the token first, as VerifyDeviceToken would, and in the
	// same read takes the pairing decision that pair acts on.
	dec, err := c.srv.opts.Pairing.Check(c.connectInfo(a, c.silentPairingAllowed(), candidate))
	if !errors.Is(err, pairing.ErrTokenUnverified) {
		a.checked, a.dec, a.decErr = true, dec, err
		lim.Succeed(key)
		a.method = "device-token"
		a.scopes = slices.Clone(p.Scopes)
		if a.scopes == nil {
			a.scopes = []string{}
		}
		return nil
	}
	lim.Fail(key, now)
	if token != "" {
		// The shared token was wrong too: it counts against the shared
		// secret's bucket as well, so a device block cannot be used to
		// guess the shared token outside its limiter (A14, A18).
		lim.Fail(sharedKey, now)
	}
	c.srv.metrics.authFailures.Add(1)
	switch {
	case errors.Is(err, pairing.ErrScopeMismatch):
		return authError("scope_mismatch", protocol.DetailAuthScopeMismatch,
			"unauthorized: device token scope mismatch (re-pair or approve scope upgrade)", false, protocol.NextReviewAuthConfig)
	case devTok != "":
		return authError("device_token_mismatch", protocol.DetailAuthDeviceTokenMismatch,
			"unauthorized: device token mismatch (rotate/reissue device token)", false, protocol.NextUpdateAuthCredentials)
	}
	return c.unauthorized(a, token)
}

func authError(reason, code, msg string, canRetry bool, next string) *protocol.Error {
	return &protocol.Error{Code: protocol.ErrInvalidRequest, Message: msg, Details: map[string]any{
		"code": code, "authReason": reason, "canRetryWithDeviceToken": canRetry, "recommendedNextStep": next,
	}}
}

// silentPairingAllowed: direct loopback (no browser, no proxy), or a
// tailnet peer the listener's trust policy vouched for from WhoIs. Nothing
// that arrives with a browser Origin or proxy headers qualifies.
func (c *Conn) silentPairingAllowed() bool {
	arr := c.authnArrival()
	if arr.Locality() == authn.Local {
		return true
	}
	p := c.arrival.Peer
	return c.arrival.Path == authn.PathTailnet && p != nil && p.Trusted && !p.Funnel &&
		!c.arrival.Forwarded && c.arrival.Origin == ""
}

// pair asks the pairing state machine whether this device may connect as
// this role with these scopes. Local devices (direct loopback, no browser,
// no proxy) are approved silently; everyone else waits for an operator.
func (c *Conn) pair(a *connectAttempt) *protocol.Error {
	pm := c.srv.opts.Pairing
	if a.device == nil || pm == nil {
		return nil
	}
	dec, err := a.dec, a.decErr
	if !a.checked {
		dec, err = pm.Check(c.connectInfo(a, c.silentPairingAllowed() || a.method == "bootstrap-token", ""))
	}
	switch {
	case errors.Is(err, pairing.ErrTooManyPending):
		return &protocol.Error{Code: protocol.ErrUnavailable, Message: "too many pending pairing requests; approve or reject some first",
			Retryable: true, RetryAfterMs: 60000}
	case err != nil:
		c.log.Error("pairing check failed", "err", err)
		return &protocol.Error{Code: protocol.ErrUnavailable, Message: "pairing state unavailable", Retryable: true, RetryAfterMs: 1000}
	}
	switch dec.Outcome {
	case pairing.PendingRequired:
		if dec.Created && dec.Request != nil {
			c.srv.bus.broadcast(protocol.EventDevicePairRequested, dec.Request, nil, nil)
		}
		details := map[string]any{"code": protocol.DetailPairingRequired, "reason": string(dec.Reason)}
		if dec.Request != nil {
			details["requestId"] = dec.Request.RequestID
		}
		c.log.Info("pairing required", "device", shortID(a.device.ID), "reason", dec.Reason)
		return &protocol.Error{Code: protocol.ErrNotPaired, Message: "pairing required", Details: details,
			CloseReason: "pairing required"}
	case pairing.ApprovedSilently:
		if dec.Resolved != nil {
			c.srv.bus.broadcast(protocol.EventDevicePairResolved, dec.Resolved, nil, nil)
		}
		how := "local"
		if c.arrival.Path == authn.PathTailnet {
			how = "own tailnet"
		} else if a.method == "bootstrap-token" {
			how = "setup code"
		}
		c.log.Info("device approved silently", "device", shortID(a.device.ID), "role", a.role, "as", how)
	}
	a.scopes = dec.Scopes
	if a.scopes == nil {
		a.scopes = []string{}
	}
	// With IssueToken, Check has made sure the device holds a token for
	// this role covering these scopes: minted now (hello-ok hands it out)
	// or already held (the device keeps using it).
	a.token, a.issuedAt = dec.Token.Token, dec.Token.IssuedAtMs
	return nil
}

// connectInfo is what pairing.Check needs to know about this connect;
// deviceToken, when not "", is a device token for Check to verify first.
func (c *Conn) connectInfo(a *connectAttempt, silent bool, deviceToken string) pairing.ConnectInfo {
	p := &a.params
	return pairing.ConnectInfo{
		DeviceID: a.device.ID, PublicKey: authn.EncodePublicKey(a.device.PublicKey),
		Role: a.role, Scopes: p.Scopes, ClientID: p.Client.ID, ClientMode: p.Client.Mode,
		Platform: p.Client.Platform, DeviceFamily: p.Client.DeviceFamily, DisplayName: p.Client.DisplayName,
		RemoteIP:      c.arrival.Remote.Addr().Unmap().String(),
		ClientKey:     authn.NewLimitKey(authn.LimitSharedSecret, c.authnArrival()).String(),
		SilentAllowed: silent,
		DeviceToken:   deviceToken,
		IssueToken:    true, // hello-ok's token, if one is due, is minted in Check's transaction
	}
}

// unauthorized builds the real gateway's answer to a failed shared-secret
// check and counts it.
func (c *Conn) unauthorized(a *connectAttempt, token string) *protocol.Error {
	hint := "provide gateway auth token"
	if a.params.Client.Mode == protocol.ModeCLI || a.params.Client.ID == "cli" {
		hint = "use this gateway's gateway.auth.token or pair the device"
	}
	reason, code, msg := "token_mismatch", protocol.DetailAuthTokenMismatch, "unauthorized: gateway token mismatch ("+hint+")"
	if token == "" {
		reason, code, msg = "token_missing", protocol.DetailAuthTokenMissing, "unauthorized: gateway token missing ("+hint+")"
	} else {
		c.srv.metrics.authFailures.Add(1)
	}
	canRetry := a.params.Device != nil && token != ""
	next := protocol.NextUpdateAuthCredentials
	if canRetry {
		next = protocol.NextRetryWithDeviceToken
	}
	c.log.Info("connect unauthorized", "reason", reason, "client", a.params.Client.ID)
	return &protocol.Error{Code: protocol.ErrInvalidRequest, Message: msg, Details: map[string]any{
		"code": code, "authReason": reason, "canRetryWithDeviceToken": canRetry, "recommendedNextStep": next,
	}}
}

// rateLimited is the answer during a lockout.
func (c *Conn) rateLimited(retry time.Duration) *protocol.Error {
	c.srv.metrics.authFailures.Add(1)
	ms := retry.Milliseconds()
	c.log.Warn("connect refused: auth rate limited", "retryAfterMs", ms)
	return &protocol.Error{Code: protocol.ErrInvalidRequest,
		Message:   "unauthorized: too many failed authentication attempts (retry later)",
		Retryable: true, RetryAfterMs: ms,
		Details: map[string]any{"code": protocol.DetailAuthRateLimited, "authReason": "rate_limited",
			"canRetryWithDeviceToken": false, "recommendedNextStep": protocol.NextWaitThenRetry}}
}

// authnArrival is the connection's arrival in authn's terms.
func (c *Conn) authnArrival() authn.Arrival {
	return authn.Arrival{Path: c.arrival.Path, Remote: c.arrival.Remote, Forwarded: c.arrival.Forwarded, Origin: c.arrival.Origin}
}

func filterScopes(requested, allowed []string) []string {
	out := make([]string, 0, len(requested))
	for _, s := range requested {
		if slices.Contains(allowed, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// accept records the session, registers presence and sends hello-ok.
func (c *Conn) accept(a *connectAttempt) {
	p := &a.params
	sess := &Session{
		Protocol:    a.protocol,
		Role:        a.role,
		Scopes:      a.scopes,
		Client:      p.Client,
		Caps:        p.Caps,
		AuthMethod:  a.method,
		ConnectedAt: c.srv.opts.Now(),
	}
	if a.device != nil {
		sess.DeviceID = a.device.ID
	}
	if p.Client.Mode != protocol.ModeCLI {
		// Set before the session is published: other connections'
		// onDisconnected read it without a lock.
		sess.PresenceKey = presenceKey(c, sess)
	}
	c.srv.metrics.handshakesOK.Add(1)
	register := c.srv.nodeConnecting(c, sess, p) // nodes.go: a role-node surface, reconciled before hello-ok
	hello := c.srv.hello(c, sess, a)
	frame, err := helloFrame(a.reqID, &hello, c.srv.featuresJSON())
	register(func() {
		if err != nil {
			c.log.Error("encode hello-ok", "err", err)
			c.sess.Store(sess)
			return
		}
		// The session is published under the connection's lock, in the
		// same step that queues (or writes) hello-ok: broadcasts go to
		// connections with a session and queue under that lock, so no
		// event (a tick, presence) can reach the client before its
		// hello-ok, and a client that has its hello-ok finds its session
		// published (metrics, presence).
		published := false
		c.enqueueFrame(func() []byte {
			c.sess.Store(sess)
			published = true
			return frame
		})
		if !published { // closing: no hello-ok, but the session stands
			c.sess.Store(sess)
		}
	})
	c.log.Info("connected", "client", p.Client.ID, "mode", p.Client.Mode, "role", a.role,
		"auth", a.method, "device", shortID(sess.DeviceID))
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
