package pairing

import (
	"fmt"
	"log/slog"
)

// Reason says why a connect needs an operator's approval.
type Reason string

// Reasons, as sent in details.reason of PAIRING_REQUIRED.
const (
	ReasonNotPaired       Reason = "not-paired"
	ReasonRoleUpgrade     Reason = "role-upgrade"
	ReasonScopeUpgrade    Reason = "scope-upgrade"
	ReasonMetadataUpgrade Reason = "metadata-upgrade"
)

// Outcome is the kind of a connect Decision.
type Outcome int

// Outcomes of Check.
const (
	// Paired: the device is approved for this role and these scopes.
	Paired Outcome = iota + 1
	// ApprovedSilently: the gateway allowed silent approval and the request
	// was approved on the spot; broadcast Decision.Resolved and continue.
	ApprovedSilently
	// PendingRequired: an operator must approve Decision.Request; refuse the
	// connect with NOT_PAIRED "pairing required".
	PendingRequired
)

func (o Outcome) String() string {
	switch o {
	case Paired:
		return "paired"
	case ApprovedSilently:
		return "approved-silently"
	case PendingRequired:
		return "pending-required"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// ConnectInfo is what the gateway knows about a connect whose device key is
// already proven. PublicKey is the raw 32-byte Ed25519 key in base64
// (base64url unpadded is canonical; padded and standard alphabets are
// accepted, PEM is not: the gateway decodes PEM first).
type ConnectInfo struct {
	DeviceID     string
	PublicKey    string
	Role         string   // "" means operator
	Scopes       []string // as requested; normalized here
	ClientID     string
	ClientMode   string
	Platform     string
	DeviceFamily string
	DisplayName  string
	RemoteIP     string
	// ClientKey is the key pending requests are capped under (the gateway's
	// rate-limit key: remote address, tailnet node, browser origin...).
	// Empty means RemoteIP.
	ClientKey string
	// SilentAllowed is the gateway's locality verdict: the connection may be
	// approved without an operator (protocol §3.3). Pairing still refuses
	// silence for anything but a first pairing of an unknown device.
	SilentAllowed bool
	// DeviceToken, when set, is the device token the connect presented:
	// Check verifies it first, as VerifyDeviceToken(DeviceID, Role,
	// DeviceToken, Scopes) would, in the same read transaction as its
	// decision (one read for the connect), and fails with an error wrapping
	// ErrTokenUnverified when it does not verify. A bearer secret: never log
	// a ConnectInfo.
	DeviceToken string
	// IssueToken asks Check to do EnsureToken's work for a connect it lets
	// through, in its own transaction: when it approves the connect
	// silently, or the paired device's token for Role was never handed out
	// or does not cover the request, it mints the device's token and returns
	// it in Decision.Token; when the device's token already covers the
	// request, it only reads and Decision.Token is zero (the device keeps the
	// token it has). So a new device's connect costs one write transaction
	// instead of two, and a paired one a single read. Set it only when the
	// token will be handed to the device (hello-ok.auth.deviceToken): it is
	// stored as issued, so a later EnsureToken will not mint another.
	IssueToken bool
}

// Decision is the result of Check.
type Decision struct {
	Outcome Outcome

	// Paired and ApprovedSilently: the connection's effective role and
	// scopes (the requested scopes, normalized; always within the approval)
	// and the pinned platform and device family, which replace the claimed
	// ones.
	Role         string
	Scopes       []string
	Platform     string
	DeviceFamily string
	Device       *PairedDevice

	// ApprovedSilently and PendingRequired: why approval was needed and the
	// request. PendingRequired: Created says a new request (new requestId)
	// was stored, so broadcast device.pair.requested; Superseded lists
	// requestIds it replaced; ExpiresAtMs is when it lapses.
	Reason      Reason
	Request     *PendingRequest
	Created     bool
	Superseded  []string
	ExpiresAtMs int64

	// ApprovedSilently: the device.pair.resolved payload to broadcast.
	Resolved *Resolved

	// ApprovedSilently or Paired with ConnectInfo.IssueToken: the device's
	// new token for Role, when one was minted, stored (as a digest) in
	// Check's transaction, for hello-ok.auth; EnsureToken is then not
	// needed. Otherwise zero.
	Token IssuedToken
}

// IssuedToken is a device token in the clear, handed out exactly once. It
// never prints, logs or JSON-encodes the token: read the field.
type IssuedToken struct {
	Token      string
	IssuedAtMs int64
}

// redacted is c without its device token, for printing.
func (c ConnectInfo) redacted() any {
	type plain ConnectInfo // without these methods
	p := plain(c)
	if p.DeviceToken != "" {
		p.DeviceToken = "[redacted]"
	}
	return p
}

// String keeps the device token out of %v and %s.
func (c ConnectInfo) String() string { return fmt.Sprintf("%+v", c.redacted()) }

// GoString keeps the device token out of %#v.
func (c ConnectInfo) GoString() string { return fmt.Sprintf("%#v", c.redacted()) }

// LogValue keeps the device token out of structured logs.
func (c ConnectInfo) LogValue() slog.Value { return slog.AnyValue(c.redacted()) }

// MarshalJSON leaves the token out.
func (t IssuedToken) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"issued":%t,"issuedAtMs":%d}`, t.Token != "", t.IssuedAtMs), nil
}

func (t IssuedToken) String() string {
	if t.Token == "" {
		return "{token:none}"
	}
	return fmt.Sprintf("{token:[redacted] issuedAtMs:%d}", t.IssuedAtMs)
}

// GoString keeps the token out of %#v.
func (t IssuedToken) GoString() string { return "pairing.IssuedToken" + t.String() }

// LogValue keeps the token out of structured logs.
func (t IssuedToken) LogValue() slog.Value {
	return slog.GroupValue(slog.Bool("issued", t.Token != ""), slog.Int64("issuedAtMs", t.IssuedAtMs))
}

// PendingRequest is a pending pairing request in its wire shape
// (device.pair.list, device.pair.requested).
type PendingRequest struct {
	RequestID    string   `json:"requestId"`
	DeviceID     string   `json:"deviceId"`
	PublicKey    string   `json:"publicKey"`
	DisplayName  string   `json:"displayName,omitempty"`
	Platform     string   `json:"platform,omitempty"`
	DeviceFamily string   `json:"deviceFamily,omitempty"`
	ClientID     string   `json:"clientId,omitempty"`
	ClientMode   string   `json:"clientMode,omitempty"`
	Role         string   `json:"role"`
	Roles        []string `json:"roles,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	RemoteIP     string   `json:"remoteIp,omitempty"`
	Silent       bool     `json:"silent"`
	IsRepair     bool     `json:"isRepair,omitempty"`
	TS           int64    `json:"ts"`
}

// PairedDevice is a paired device in its wire shape (device.pair.list,
// device.pair.approve): tokens are summarized, never their digests.
// ApprovedScopes (the scope baseline) is kept for the gateway's own use and
// left out of JSON, as the protocol's list result omits it.
type PairedDevice struct {
	DeviceID       string         `json:"deviceId"`
	PublicKey      string         `json:"publicKey"`
	DisplayName    string         `json:"displayName,omitempty"`
	Platform       string         `json:"platform,omitempty"`
	DeviceFamily   string         `json:"deviceFamily,omitempty"`
	ClientID       string         `json:"clientId,omitempty"`
	ClientMode     string         `json:"clientMode,omitempty"`
	Role           string         `json:"role,omitempty"`
	Roles          []string       `json:"roles"`
	Scopes         []string       `json:"scopes"`
	ApprovedScopes []string       `json:"-"`
	RemoteIP       string         `json:"remoteIp,omitempty"`
	Tokens         []TokenSummary `json:"tokens,omitempty"`
	CreatedAtMs    int64          `json:"createdAtMs"`
	ApprovedAtMs   int64          `json:"approvedAtMs"`
}

// TokenSummary describes one device token without revealing it.
type TokenSummary struct {
	Role         string   `json:"role"`
	Scopes       []string `json:"scopes"`
	CreatedAtMs  int64    `json:"createdAtMs"`
	RotatedAtMs  int64    `json:"rotatedAtMs,omitempty"`
	RevokedAtMs  int64    `json:"revokedAtMs,omitempty"`
	LastUsedAtMs int64    `json:"lastUsedAtMs,omitempty"`
}

// Listing is the device.pair.list result.
type Listing struct {
	Pending []PendingRequest `json:"pending"`
	Paired  []PairedDevice   `json:"paired"`
}

// Caller is the identity of the connection calling an admin method.
type Caller struct {
	// DeviceID is the caller's own proven device id; "" when the
	// connection has no device identity.
	DeviceID string
	// Scopes are the caller connection's live scopes.
	Scopes []string
}

// Decisions carried by device.pair.resolved.
const (
	DecisionApproved = "approved"
	DecisionRejected = "rejected"
)

// Resolved is the device.pair.resolved event payload.
type Resolved struct {
	RequestID string `json:"requestId"`
	DeviceID  string `json:"deviceId"`
	Decision  string `json:"decision"`
	TS        int64  `json:"ts"`
}

// ApproveResult is the device.pair.approve result ({requestId, device}) plus
// what the gateway needs next.
type ApproveResult struct {
	RequestID string       `json:"requestId"`
	Device    PairedDevice `json:"device"`
	// Resolved is the device.pair.resolved payload to broadcast.
	Resolved Resolved `json:"-"`
	// KeyChanged: the approval replaced the device's public key (a
	// re-pair), dropping every earlier token; close the device's sockets.
	KeyChanged bool `json:"-"`
}

// RemoveResult is the device.pair.remove result; close the device's sockets
// with 4001 "device removed".
type RemoveResult struct {
	DeviceID string `json:"deviceId"`
}

// RotateResult is the device.token.rotate result. Token is the new token,
// the only time it exists in the clear: v4 echoes it only to the device
// itself. Close that device+role's sockets (4001). RotateResult never prints
// or logs the token.
type RotateResult struct {
	DeviceID    string   `json:"deviceId"`
	Role        string   `json:"role"`
	Token       string   `json:"token"`
	Scopes      []string `json:"scopes"`
	RotatedAtMs int64    `json:"rotatedAtMs"`
}

func (r RotateResult) String() string {
	return fmt.Sprintf("{deviceId:%s role:%s token:[redacted] scopes:%v rotatedAtMs:%d}", r.DeviceID, r.Role, r.Scopes, r.RotatedAtMs)
}

// GoString keeps the token out of %#v.
func (r RotateResult) GoString() string { return "pairing.RotateResult" + r.String() }

// LogValue keeps the token out of structured logs.
func (r RotateResult) LogValue() slog.Value {
	return slog.GroupValue(slog.String("deviceId", r.DeviceID), slog.String("role", r.Role),
		slog.Any("scopes", r.Scopes), slog.Int64("rotatedAtMs", r.RotatedAtMs))
}

// RevokeResult is the device.token.revoke result; close that device+role's
// sockets (4001).
type RevokeResult struct {
	DeviceID    string `json:"deviceId"`
	Role        string `json:"role"`
	RevokedAtMs int64  `json:"revokedAtMs"`
}
