package store

import (
	"maps"
	"slices"
)

// PendingRequest is a device pairing request waiting for an operator, as
// stored. Field names follow the OpenClaw protocol (§3.1); ClientKey and
// RefreshedAtMs are clawgate's own bookkeeping and are not part of the wire
// shape.
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

	// ClientKey is the rate-limit key the request is counted under (remote
	// address, tailnet node, browser origin...).
	ClientKey string `json:"clientKey,omitempty"`
	// RefreshedAtMs is when the device last retried; the pending TTL runs
	// from max(TS, RefreshedAtMs).
	RefreshedAtMs int64 `json:"refreshedAtMs,omitempty"`
}

// DeviceToken is one device token record: one per (device, role). The token
// itself is never stored, only its digest.
type DeviceToken struct {
	Digest       TokenDigest `json:"digest"`
	Role         string      `json:"role"`
	Scopes       []string    `json:"scopes"`
	CreatedAtMs  int64       `json:"createdAtMs"`
	RotatedAtMs  int64       `json:"rotatedAtMs,omitempty"`
	RevokedAtMs  int64       `json:"revokedAtMs,omitempty"`
	LastUsedAtMs int64       `json:"lastUsedAtMs,omitempty"`
	// IssuedAtMs is when the token whose digest is stored was handed to
	// someone (the device in hello-ok, or a rotate caller). Zero means the
	// token was minted at approval and its plaintext was discarded unseen:
	// the device's next connect mints the one it will actually use.
	IssuedAtMs int64 `json:"issuedAtMs,omitempty"`
}

// PairedDevice is an approved device, as stored. Tokens is keyed by role.
type PairedDevice struct {
	DeviceID       string                 `json:"deviceId"`
	PublicKey      string                 `json:"publicKey"`
	DisplayName    string                 `json:"displayName,omitempty"`
	Platform       string                 `json:"platform,omitempty"`
	DeviceFamily   string                 `json:"deviceFamily,omitempty"`
	ClientID       string                 `json:"clientId,omitempty"`
	ClientMode     string                 `json:"clientMode,omitempty"`
	Role           string                 `json:"role,omitempty"`
	Roles          []string               `json:"roles"`
	Scopes         []string               `json:"scopes"`
	ApprovedScopes []string               `json:"approvedScopes"`
	RemoteIP       string                 `json:"remoteIp,omitempty"`
	Tokens         map[string]DeviceToken `json:"tokens"`
	CreatedAtMs    int64                  `json:"createdAtMs"`
	ApprovedAtMs   int64                  `json:"approvedAtMs"`

	// Node is the approved node capability surface (commands, caps,
	// permissions) of a device paired for the node role; nil when none was
	// approved. PendingNode is a node surface waiting for an operator.
	Node        *NodeSurface `json:"node,omitempty"`
	PendingNode *NodeSurface `json:"pendingNode,omitempty"`
}

// NodeSurface is a node's declared capability surface, as approved (in
// PairedDevice.Node) or as requested (PairedDevice.PendingNode, with a
// RequestID).
type NodeSurface struct {
	RequestID       string          `json:"requestId,omitempty"`
	DisplayName     string          `json:"displayName,omitempty"`
	ClientID        string          `json:"clientId,omitempty"`
	ClientMode      string          `json:"clientMode,omitempty"`
	Platform        string          `json:"platform,omitempty"`
	Version         string          `json:"version,omitempty"`
	DeviceFamily    string          `json:"deviceFamily,omitempty"`
	ModelIdentifier string          `json:"modelIdentifier,omitempty"`
	RemoteIP        string          `json:"remoteIp,omitempty"`
	Caps            []string        `json:"caps"`
	Commands        []string        `json:"commands"`
	Permissions     map[string]bool `json:"permissions,omitempty"`
	Silent          bool            `json:"silent,omitempty"`
	TS              int64           `json:"ts,omitempty"`
	CreatedAtMs     int64           `json:"createdAtMs,omitempty"`
	ApprovedAtMs    int64           `json:"approvedAtMs,omitempty"`
}

// PairingTx is the pairing data seen from inside one transaction. Every
// value returned is a copy owned by the caller. Writes fail with ErrReadOnly
// inside a read-only transaction. Getters return ErrNotFound for a missing
// key; deletes of a missing key succeed.
type PairingTx interface {
	Pending(requestID string) (PendingRequest, error)
	AllPending() ([]PendingRequest, error)
	PutPending(PendingRequest) error
	DeletePending(requestID string) error

	Device(deviceID string) (PairedDevice, error)
	AllDevices() ([]PairedDevice, error)
	PutDevice(PairedDevice) error
	DeleteDevice(deviceID string) error
}

// PairingStore runs pairing transactions. UpdatePairing commits (durably,
// fsynced) when fn returns nil and rolls back everything fn wrote otherwise,
// so a caller can keep its whole read-check-write in one transaction. fn must
// not retain tx past its return.
//
// BatchPairing is UpdatePairing for hot writes (connect-time approvals):
// concurrent BatchPairing calls may share one transaction and one commit,
// each fn seeing the writes of those before it, so N of them cost one
// fsync instead of N. It has UpdatePairing's guarantees for each caller: it
// returns only after the writes of fn's successful call are committed and
// fsynced; an error from fn is returned to that caller alone, with
// everything that call wrote rolled back, and never fails another caller;
// a failed commit fails every caller of that transaction and keeps none of
// their writes; a transaction in which no fn wrote anything is not
// committed at all (no fsync). The price is that fn may be called more than once: when
// another fn in the shared transaction fails, the transaction is rolled back
// and the others run again. So fn must be a pure read-check-write over tx:
// it sets its results afresh on every call and has no other side effects,
// and only what its last call saw and wrote counts.
type PairingStore interface {
	ViewPairing(fn func(tx PairingTx) error) error
	UpdatePairing(fn func(tx PairingTx) error) error
	BatchPairing(fn func(tx PairingTx) error) error
}

// Clone returns a deep copy of d: no slice, map or NodeSurface is shared
// with d, and nil stays nil while empty stays empty (as a JSON round trip
// keeps them). The string slices of the device and its tokens share one
// allocation, each capped at its length so that appending to one copies it.
func (d PairedDevice) Clone() PairedDevice {
	n := len(d.Roles) + len(d.Scopes) + len(d.ApprovedScopes)
	for _, t := range d.Tokens {
		n += len(t.Scopes)
	}
	pool := make([]string, 0, n)
	take := func(s []string) []string {
		if s == nil {
			return nil
		}
		start := len(pool)
		pool = append(pool, s...)
		return pool[start:len(pool):len(pool)]
	}
	c := d
	c.Roles = take(d.Roles)
	c.Scopes = take(d.Scopes)
	c.ApprovedScopes = take(d.ApprovedScopes)
	if d.Tokens != nil {
		c.Tokens = make(map[string]DeviceToken, len(d.Tokens))
		for k, t := range d.Tokens {
			t.Scopes = take(t.Scopes)
			c.Tokens[k] = t
		}
	}
	c.Node = d.Node.clone()
	c.PendingNode = d.PendingNode.clone()
	return c
}

func (n *NodeSurface) clone() *NodeSurface {
	if n == nil {
		return nil
	}
	c := *n
	c.Caps = slices.Clone(n.Caps)
	c.Commands = slices.Clone(n.Commands)
	c.Permissions = maps.Clone(n.Permissions)
	return &c
}
