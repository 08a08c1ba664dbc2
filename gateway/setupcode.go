package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

// Setup codes: headless pairing without a screen. An admin asks the
// gateway for a setup code (device.pair.setupCode, `clawgate devices
// setup-code`); the code carries the gateway URL and a fresh bootstrap
// token, never the shared token. A device presenting the token as
// auth.bootstrapToken, with a signed device block, is paired at once for
// the code's profile only, and the token is spent: it works once, for
// SetupCodeTTL, and only for the role and scopes of its profile.

// SetupCodeTTL is how long a setup code's bootstrap token lives.
const SetupCodeTTL = 10 * time.Minute

// maxSetupCodes bounds outstanding setup codes.
const maxSetupCodes = 32

// Bootstrap profiles: what a setup code lets a device become.
const (
	profileNode    = "node"    // role node, no scopes
	profileLimited = "limited" // role operator, at most read, write, approvals
)

var limitedProfileScopes = []string{protocol.ScopeRead, protocol.ScopeWrite, protocol.ScopeApprovals}

type bootstrapGrant struct {
	digest    [sha256.Size]byte
	setupID   string
	profile   string
	expiresAt time.Time
}

// setupCodes holds the digests of outstanding bootstrap tokens, in memory
// only: a restart voids every code, which is the safe direction.
type setupCodes struct {
	mu     sync.Mutex
	grants []*bootstrapGrant
}

func (sc *setupCodes) init() {}

// issue mints a bootstrap token for profile and remembers its digest.
func (sc *setupCodes) issue(profile string, now time.Time) (token string, g *bootstrapGrant, err error) {
	token, err = authn.GenerateToken()
	if err != nil {
		return "", nil, err
	}
	g = &bootstrapGrant{digest: sha256.Sum256([]byte(token)), setupID: newUUID(), profile: profile,
		expiresAt: now.Add(SetupCodeTTL)}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.sweepLocked(now)
	if len(sc.grants) >= maxSetupCodes {
		sc.grants = sc.grants[1:] // the oldest outstanding code is voided
	}
	sc.grants = append(sc.grants, g)
	return token, g, nil
}

func (sc *setupCodes) sweepLocked(now time.Time) {
	sc.grants = slices.DeleteFunc(sc.grants, func(g *bootstrapGrant) bool { return !now.Before(g.expiresAt) })
}

// consume spends a bootstrap token if it is outstanding, unexpired and its
// profile allows role and scopes. A token presented for another role or
// wider scopes is refused and stays unspent.
func (sc *setupCodes) consume(token, role string, scopes []string, now time.Time) (*bootstrapGrant, bool) {
	d := sha256.Sum256([]byte(token))
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.sweepLocked(now)
	for i, g := range sc.grants {
		if subtle.ConstantTimeCompare(g.digest[:], d[:]) != 1 {
			continue
		}
		if !profileAllows(g.profile, role, scopes) {
			return nil, false
		}
		sc.grants = slices.Delete(sc.grants, i, i+1)
		return g, true
	}
	return nil, false
}

func profileAllows(profile, role string, scopes []string) bool {
	switch profile {
	case profileNode:
		return role == protocol.RoleNode && len(scopes) == 0
	case profileLimited:
		if role != protocol.RoleOperator {
			return false
		}
		for _, s := range scopes {
			if !slices.Contains(limitedProfileScopes, s) {
				return false
			}
		}
		return true
	}
	return false
}

// SetupPayload is what a setup code encodes (base64url JSON, the format
// OpenClaw's pairing setup codes use).
type SetupPayload struct {
	URL            string `json:"url"`
	BootstrapToken string `json:"bootstrapToken"`
	ExpiresAtMs    int64  `json:"expiresAtMs,omitempty"`
	TLSFingerprint string `json:"tlsFingerprint,omitempty"`
}

// EncodeSetupCode encodes p as a setup code.
func EncodeSetupCode(p SetupPayload) string {
	return base64.RawURLEncoding.EncodeToString(mustJSON(p))
}

// DecodeSetupCode decodes a setup code (optionally prefixed "oc-pair://").
func DecodeSetupCode(code string) (SetupPayload, error) {
	code = strings.TrimSpace(code)
	if len(code) >= 10 && strings.EqualFold(code[:10], "oc-pair://") {
		code = code[10:]
	}
	var p SetupPayload
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(code, "="))
	if err != nil || json.Unmarshal(raw, &p) != nil || p.URL == "" || p.BootstrapToken == "" {
		return SetupPayload{}, errInvalidSetupCode
	}
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return SetupPayload{}, errInvalidSetupCode
	}
	return p, nil
}

var errInvalidSetupCode = protocol.InvalidRequest("invalid pairing setup code")

// methodSetupCode issues a setup code (device.pair.setupCode; admin).
func (h *nodeHub) methodSetupCode(_ context.Context, c *Conn, raw json.RawMessage) (any, error) {
	var p struct {
		PublicURL        string `json:"publicUrl"`
		BootstrapProfile string `json:"bootstrapProfile"`
	}
	_ = json.Unmarshal(raw, &p)
	profile := p.BootstrapProfile
	if profile == "" {
		profile = profileNode
	}
	gatewayURL, source := strings.TrimSpace(p.PublicURL), "publicUrl"
	if gatewayURL == "" {
		scheme := "ws"
		if c.arrival.Path == authn.PathTLS {
			scheme = "wss"
		}
		gatewayURL, source = scheme+"://"+c.arrival.Host, "request-host"
	}
	if u, err := url.Parse(gatewayURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, protocol.InvalidRequest("publicUrl must be a ws:// or wss:// URL")
	}
	now := h.srv.opts.Now()
	token, g, err := h.setupCodes.issue(profile, now)
	if err != nil {
		return nil, err
	}
	code := EncodeSetupCode(SetupPayload{URL: gatewayURL, BootstrapToken: token, ExpiresAtMs: g.expiresAt.UnixMilli()})
	c.log.Info("setup code issued", "setupId", g.setupID, "profile", profile, "expiresInSec", int(SetupCodeTTL.Seconds()))
	return map[string]any{
		"setupId": g.setupID, "setupCode": code, "gatewayUrl": gatewayURL, "auth": "token",
		"urlSource": source, "access": profile, "expiresAtMs": g.expiresAt.UnixMilli(),
	}, nil
}

// authenticateBootstrap verifies and spends auth.bootstrapToken for a
// connect whose device proof already verified and whose shared token did
// not match. Failures count against the shared-secret limiter bucket.
func (c *Conn) authenticateBootstrap(a *connectAttempt, key authn.LimitKey) *protocol.Error {
	lim, now := c.srv.opts.Limiter, c.srv.opts.Now()
	if retry, locked := lim.Check(key, now); locked {
		return c.rateLimited(retry)
	}
	if c.srv.nodes == nil || c.srv.opts.Pairing == nil {
		lim.Fail(key, now)
		return authError("bootstrap_token_invalid", protocol.DetailAuthBootstrapInvalid,
			"unauthorized: bootstrap token invalid or expired", false, protocol.NextUpdateAuthCredentials)
	}
	g, ok := c.srv.nodes.setupCodes.consume(a.params.Auth.BootstrapToken, a.role, a.params.Scopes, now)
	if !ok {
		lim.Fail(key, now)
		c.srv.metrics.authFailures.Add(1)
		c.log.Info("bootstrap token refused", "client", a.params.Client.ID)
		return authError("bootstrap_token_invalid", protocol.DetailAuthBootstrapInvalid,
			"unauthorized: bootstrap token invalid or expired", false, protocol.NextUpdateAuthCredentials)
	}
	lim.Succeed(key)
	c.log.Info("bootstrap token spent", "setupId", g.setupID, "device", shortID(a.device.ID), "role", a.role)
	a.method = "bootstrap-token"
	a.scopes = slices.Clone(a.params.Scopes)
	if a.scopes == nil {
		a.scopes = []string{}
	}
	return nil
}
