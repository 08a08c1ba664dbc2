package pairing

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/clawgate/clawgate/store"
)

// Node capability pairing (protocol §3.6, v4): a device paired for the
// node role also carries the command surface an operator approved. A node
// that connects declaring commands, caps or permissions beyond that surface
// gets one pending node request (stored in its device record) and, until an
// operator approves it, only the approved part of what it declares is
// effective.

// Bounds on a declared node surface.
const (
	maxNodeCommands   = 256
	maxNodeCaps       = 64
	maxNodePerms      = 64
	maxNodeSurfaceLen = 128
)

// adminApprovalCommands need operator.admin (besides operator.pairing) to
// approve: they run code or reach files on the node's host.
var adminApprovalCommands = map[string]bool{
	"system.run": true, "system.run.prepare": true, "system.which": true,
	"system.execApprovals.get": true, "system.execApprovals.set": true,
	"browser.proxy": true, "browser.proxy.upload.v1": true,
	"fs.listDir": true, "terminal.upload": true,
}

// NodeApprovalScopes returns the operator scopes needed to approve a node
// surface with these commands: operator.pairing alone for none,
// plus operator.write for ordinary commands, plus operator.admin (instead of
// write) when any of them runs code or reaches the host's files.
func NodeApprovalScopes(commands []string) []string {
	for _, c := range commands {
		if adminApprovalCommands[c] {
			return []string{scopePairing, scopeAdmin}
		}
	}
	if len(commands) > 0 {
		return []string{scopePairing, scopeWrite}
	}
	return []string{scopePairing}
}

// NodeConnectInfo is what a node declared at connect, after the gateway's
// command policy withheld what it never admits.
type NodeConnectInfo struct {
	NodeID          string // the device id
	ClientID        string
	ClientMode      string
	DisplayName     string
	Platform        string
	Version         string
	DeviceFamily    string
	ModelIdentifier string
	RemoteIP        string
	Caps            []string
	Commands        []string
	Permissions     map[string]bool
}

// NodeReconcile is what a node connection may use now.
type NodeReconcile struct {
	// Caps, Commands and Permissions are effective: declared and approved.
	Caps        []string
	Commands    []string
	Permissions map[string]bool
	// Approved: the device has an approved node surface (even if empty).
	Approved     bool
	ApprovedAtMs int64
	// Pending is the node's pending request, when what it declared needs
	// approval; Created says it is new (broadcast node.pair.requested).
	Pending *PendingNode
	Created bool
}

// PendingNode is a pending node surface request in its wire shape
// (node.pair.list, node.pair.requested).
type PendingNode struct {
	RequestID             string          `json:"requestId"`
	NodeID                string          `json:"nodeId"`
	ClientID              string          `json:"clientId,omitempty"`
	ClientMode            string          `json:"clientMode,omitempty"`
	DisplayName           string          `json:"displayName,omitempty"`
	Platform              string          `json:"platform,omitempty"`
	Version               string          `json:"version,omitempty"`
	DeviceFamily          string          `json:"deviceFamily,omitempty"`
	ModelIdentifier       string          `json:"modelIdentifier,omitempty"`
	Caps                  []string        `json:"caps"`
	Commands              []string        `json:"commands"`
	RequiredApproveScopes []string        `json:"requiredApproveScopes"`
	Permissions           map[string]bool `json:"permissions,omitempty"`
	RemoteIP              string          `json:"remoteIp,omitempty"`
	Silent                bool            `json:"silent,omitempty"`
	TS                    int64           `json:"ts"`
}

// PairedNode is an approved node surface in its wire shape (node.pair.list,
// node.pair.approve).
type PairedNode struct {
	NodeID          string          `json:"nodeId"`
	ClientID        string          `json:"clientId,omitempty"`
	ClientMode      string          `json:"clientMode,omitempty"`
	DisplayName     string          `json:"displayName,omitempty"`
	Platform        string          `json:"platform,omitempty"`
	Version         string          `json:"version,omitempty"`
	DeviceFamily    string          `json:"deviceFamily,omitempty"`
	ModelIdentifier string          `json:"modelIdentifier,omitempty"`
	Caps            []string        `json:"caps"`
	Commands        []string        `json:"commands"`
	Permissions     map[string]bool `json:"permissions,omitempty"`
	RemoteIP        string          `json:"remoteIp,omitempty"`
	CreatedAtMs     int64           `json:"createdAtMs"`
	ApprovedAtMs    int64           `json:"approvedAtMs"`
}

// NodeListing is the node.pair.list result.
type NodeListing struct {
	Pending []PendingNode `json:"pending"`
	Paired  []PairedNode  `json:"paired"`
}

// NodeRecord is everything pairing knows about one node: a device paired
// for the node role, or one with an approved or pending node surface.
type NodeRecord struct {
	NodeID       string
	DisplayName  string
	Platform     string
	DeviceFamily string
	ClientID     string
	ClientMode   string
	RemoteIP     string
	ApprovedAtMs int64       // device approval
	NodeRole     bool        // the node role is effective (live token)
	Node         *PairedNode // approved surface, or nil
	Pending      *PendingNode
}

// NodeApproveResult is the node.pair.approve result ({requestId, node})
// plus the node.pair.resolved payload to broadcast.
type NodeApproveResult struct {
	RequestID string        `json:"requestId"`
	Node      PairedNode    `json:"node"`
	Resolved  NodeResolved  `json:"-"`
	Surface   NodeReconcile `json:"-"` // the approved surface, for the live session
}

// NodeResolved is the node.pair.resolved event payload.
type NodeResolved struct {
	RequestID string `json:"requestId"`
	NodeID    string `json:"nodeId"`
	Decision  string `json:"decision"`
	TS        int64  `json:"ts"`
}

// DecisionRemoved is node.pair.resolved's decision for a removed node.
const DecisionRemoved = "removed"

// normalizeSurfaceList trims, drops empties and over-long entries, dedupes
// and sorts, keeping at most max entries.
func normalizeSurfaceList(in []string, max int) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s == "" || len(s) > maxNodeSurfaceLen || !printableASCII(s) {
			continue
		}
		out = append(out, s)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > max {
		out = out[:max]
	}
	return out
}

func normalizePermissions(in map[string]bool) map[string]bool {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]bool, len(in))
	for k, v := range in {
		k = strings.TrimSpace(k)
		if k == "" || len(k) > maxNodeSurfaceLen || !printableASCII(k) || len(out) >= maxNodePerms {
			continue
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func intersect(declared, approved []string) []string {
	out := []string{}
	for _, d := range declared {
		if slices.Contains(approved, d) {
			out = append(out, d)
		}
	}
	return out
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// permissionUpgrade: a permission declared true that the approval did not
// grant.
func permissionUpgrade(declared, approved map[string]bool) bool {
	for k, v := range declared {
		if v && !approved[k] {
			return true
		}
	}
	return false
}

func intersectPermissions(declared, approved map[string]bool) map[string]bool {
	if declared == nil || approved == nil {
		return nil
	}
	out := map[string]bool{}
	for k, v := range declared {
		out[k] = v && approved[k]
	}
	return out
}

func sameSurface(a, b *store.NodeSurface) bool {
	return slices.Equal(a.Caps, b.Caps) && slices.Equal(a.Commands, b.Commands) && maps.Equal(a.Permissions, b.Permissions)
}

func normalizeNodeConnect(in NodeConnectInfo) (NodeConnectInfo, error) {
	if err := checkDeviceID(in.NodeID); err != nil {
		return in, err
	}
	return NodeConnectInfo{
		NodeID:          in.NodeID,
		ClientID:        truncate(in.ClientID, maxMetaLen),
		ClientMode:      truncate(in.ClientMode, maxMetaLen),
		DisplayName:     truncate(in.DisplayName, maxDisplayLen),
		Platform:        truncate(in.Platform, maxMetaLen),
		Version:         truncate(in.Version, maxMetaLen),
		DeviceFamily:    truncate(in.DeviceFamily, maxMetaLen),
		ModelIdentifier: truncate(in.ModelIdentifier, maxMetaLen),
		RemoteIP:        truncate(in.RemoteIP, maxIPLen),
		Caps:            normalizeSurfaceList(in.Caps, maxNodeCaps),
		Commands:        normalizeSurfaceList(in.Commands, maxNodeCommands),
		Permissions:     normalizePermissions(in.Permissions),
	}, nil
}

// ReconcileNode decides, for a node connection of a device already paired
// for the node role, which of its declared commands, caps and permissions
// are effective, and creates or refreshes its pending node request when it
// declares more than was approved (or was never approved). A node that
// declares nothing needs no approval. An unchanged reconnect costs no write.
func (m *Manager) ReconcileNode(req NodeConnectInfo) (NodeReconcile, error) {
	const op = "pairing.ReconcileNode"
	if err := m.checkOpen(op); err != nil {
		return NodeReconcile{}, err
	}
	in, err := normalizeNodeConnect(req)
	if err != nil {
		return NodeReconcile{}, fmt.Errorf("%s: %w", op, err)
	}
	var res NodeReconcile
	var needWrite bool
	err = m.st.ViewPairing(func(tx store.PairingTx) error {
		d, err := findDevice(tx, in.NodeID)
		if err != nil {
			return err
		}
		if d == nil || !slices.Contains(effectiveRoles(d), roleNode) {
			return ErrNotPaired
		}
		res, needWrite = reconcileNode(d, in, 0)
		return nil
	})
	if err != nil {
		return NodeReconcile{}, fmt.Errorf("%s: %w", op, err)
	}
	if !needWrite {
		return res, nil
	}
	now := m.nowMs()
	err = m.st.UpdatePairing(func(tx store.PairingTx) error {
		d, err := findDevice(tx, in.NodeID)
		if err != nil {
			return err
		}
		if d == nil || !slices.Contains(effectiveRoles(d), roleNode) {
			return ErrNotPaired
		}
		var write bool
		res, write = reconcileNode(d, in, now)
		if !write {
			return nil
		}
		return tx.PutDevice(*d)
	})
	if err != nil {
		return NodeReconcile{}, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}

// reconcileNode computes the effective surface and updates d.PendingNode in
// place; it reports whether d changed. now 0 means "dry run" (a read-only
// pass that only reports whether a write is needed).
func reconcileNode(d *store.PairedDevice, in NodeConnectInfo, now int64) (NodeReconcile, bool) {
	declared := &store.NodeSurface{Caps: in.Caps, Commands: in.Commands, Permissions: in.Permissions}
	res := NodeReconcile{Caps: []string{}, Commands: []string{}}
	upgrade := false
	if a := d.Node; a != nil {
		res.Approved, res.ApprovedAtMs = true, a.ApprovedAtMs
		res.Caps = intersect(in.Caps, a.Caps)
		res.Commands = intersect(in.Commands, a.Commands)
		res.Permissions = intersectPermissions(in.Permissions, a.Permissions)
		upgrade = !subset(in.Commands, a.Commands) || !subset(in.Caps, a.Caps) || permissionUpgrade(in.Permissions, a.Permissions)
	} else {
		upgrade = len(in.Commands) > 0 || len(in.Caps) > 0 || len(in.Permissions) > 0
	}
	if !upgrade {
		if d.PendingNode == nil {
			return res, false
		}
		if now != 0 {
			d.PendingNode = nil
		}
		return res, true
	}
	if p := d.PendingNode; p != nil && sameSurface(p, declared) {
		pn := toPendingNode(d, p)
		res.Pending = &pn
		return res, false // the same request stands; keep its id and ts
	}
	if now == 0 {
		return res, true
	}
	p := &store.NodeSurface{
		RequestID: newRequestID(), ClientID: in.ClientID, ClientMode: in.ClientMode,
		DisplayName: in.DisplayName, Platform: in.Platform, Version: in.Version,
		DeviceFamily: in.DeviceFamily, ModelIdentifier: in.ModelIdentifier, RemoteIP: in.RemoteIP,
		Caps: slices.Clone(in.Caps), Commands: slices.Clone(in.Commands), Permissions: maps.Clone(in.Permissions),
		TS: now,
	}
	d.PendingNode = p
	pn := toPendingNode(d, p)
	res.Pending, res.Created = &pn, true
	return res, true
}

func toPendingNode(d *store.PairedDevice, p *store.NodeSurface) PendingNode {
	return PendingNode{
		RequestID: p.RequestID, NodeID: d.DeviceID,
		ClientID: firstNonEmpty(p.ClientID, d.ClientID), ClientMode: firstNonEmpty(p.ClientMode, d.ClientMode),
		DisplayName: firstNonEmpty(p.DisplayName, d.DisplayName), Platform: firstNonEmpty(p.Platform, d.Platform),
		Version: p.Version, DeviceFamily: firstNonEmpty(p.DeviceFamily, d.DeviceFamily), ModelIdentifier: p.ModelIdentifier,
		Caps: nonNil(p.Caps), Commands: nonNil(p.Commands), RequiredApproveScopes: NodeApprovalScopes(p.Commands),
		Permissions: maps.Clone(p.Permissions), RemoteIP: firstNonEmpty(p.RemoteIP, d.RemoteIP), Silent: p.Silent, TS: p.TS,
	}
}

func toPairedNode(d *store.PairedDevice) PairedNode {
	a := d.Node
	return PairedNode{
		NodeID: d.DeviceID, ClientID: d.ClientID, ClientMode: d.ClientMode,
		DisplayName: firstNonEmpty(a.DisplayName, d.DisplayName), Platform: d.Platform, Version: a.Version,
		DeviceFamily: d.DeviceFamily, ModelIdentifier: a.ModelIdentifier,
		Caps: nonNil(a.Caps), Commands: nonNil(a.Commands), Permissions: maps.Clone(a.Permissions),
		RemoteIP: d.RemoteIP, CreatedAtMs: a.CreatedAtMs, ApprovedAtMs: a.ApprovedAtMs,
	}
}

// manageNodeAllowed: a caller that authenticated as a device (device
// token) and lacks admin may manage only its own node.
func manageNodeAllowed(caller Caller, nodeID string) bool {
	return caller.DeviceID == "" || caller.DeviceID == nodeID || isAdmin(caller.Scopes)
}

// findPendingNode returns the device whose pending node request is
// requestID, or ErrNotFound.
func findPendingNode(tx store.PairingTx, requestID string) (*store.PairedDevice, error) {
	all, err := tx.AllDevices()
	if err != nil {
		return nil, err
	}
	for i := range all {
		if p := all[i].PendingNode; p != nil && p.RequestID == requestID {
			return &all[i], nil
		}
	}
	return nil, fmt.Errorf("unknown requestId: %w", ErrNotFound)
}

// ApproveNode approves a pending node surface. The approver needs
// operator.pairing and the scopes NodeApprovalScopes names for the
// requested commands (else a *MissingScopeError), and a device-token caller
// without admin may approve only its own node (ErrForbidden). The approved
// surface replaces the previous one and the request is deleted, in one
// transaction.
func (m *Manager) ApproveNode(requestID string, approver Caller) (NodeApproveResult, error) {
	const op = "pairing.ApproveNode"
	if err := m.checkOpen(op); err != nil {
		return NodeApproveResult{}, err
	}
	if err := checkRequestID(requestID); err != nil {
		return NodeApproveResult{}, fmt.Errorf("%s: %w", op, err)
	}
	if !satisfies(approver.Scopes, scopePairing) {
		return NodeApproveResult{}, fmt.Errorf("%s: %w", op, &MissingScopeError{Scope: scopePairing})
	}
	now := m.nowMs()
	var res NodeApproveResult
	err := m.st.UpdatePairing(func(tx store.PairingTx) error {
		d, err := findPendingNode(tx, requestID)
		if err != nil {
			return err
		}
		if !manageNodeAllowed(approver, d.DeviceID) {
			return fmt.Errorf("%w: node pairing approval denied", ErrForbidden)
		}
		p := d.PendingNode
		if s, missing := missingScope(approver.Scopes, NodeApprovalScopes(p.Commands)); missing {
			return &MissingScopeError{Scope: s}
		}
		a := &store.NodeSurface{
			DisplayName: firstNonEmpty(p.DisplayName, d.DisplayName), Version: p.Version, ModelIdentifier: p.ModelIdentifier,
			Caps: nonNil(p.Caps), Commands: nonNil(p.Commands), Permissions: maps.Clone(p.Permissions),
			CreatedAtMs: now, ApprovedAtMs: now,
		}
		if d.Node != nil && d.Node.CreatedAtMs != 0 {
			a.CreatedAtMs = d.Node.CreatedAtMs
			if d.Node.DisplayName != "" {
				a.DisplayName = d.Node.DisplayName // a rename sticks
			}
		}
		d.Node, d.PendingNode = a, nil
		if err := tx.PutDevice(*d); err != nil {
			return err
		}
		res = NodeApproveResult{
			RequestID: requestID, Node: toPairedNode(d),
			Resolved: NodeResolved{RequestID: requestID, NodeID: d.DeviceID, Decision: DecisionApproved, TS: now},
			Surface: NodeReconcile{Caps: nonNil(a.Caps), Commands: nonNil(a.Commands), Permissions: maps.Clone(a.Permissions),
				Approved: true, ApprovedAtMs: now},
		}
		return nil
	})
	if err != nil {
		return NodeApproveResult{}, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}

// RejectNode drops a pending node request; the node keeps its previously
// approved surface.
func (m *Manager) RejectNode(requestID string, approver Caller) (NodeResolved, error) {
	const op = "pairing.RejectNode"
	if err := m.checkOpen(op); err != nil {
		return NodeResolved{}, err
	}
	if err := checkRequestID(requestID); err != nil {
		return NodeResolved{}, fmt.Errorf("%s: %w", op, err)
	}
	if !satisfies(approver.Scopes, scopePairing) {
		return NodeResolved{}, fmt.Errorf("%s: %w", op, &MissingScopeError{Scope: scopePairing})
	}
	now := m.nowMs()
	var res NodeResolved
	err := m.st.UpdatePairing(func(tx store.PairingTx) error {
		d, err := findPendingNode(tx, requestID)
		if err != nil {
			return err
		}
		if !manageNodeAllowed(approver, d.DeviceID) {
			return fmt.Errorf("%w: node pairing rejection denied", ErrForbidden)
		}
		d.PendingNode = nil
		res = NodeResolved{RequestID: requestID, NodeID: d.DeviceID, Decision: DecisionRejected, TS: now}
		return tx.PutDevice(*d)
	})
	if err != nil {
		return NodeResolved{}, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}

// RemoveNode takes the node role away from a device: its node token, its
// approved and pending node surfaces. A device left with no role is
// forgotten. Only admin, or a caller that did not authenticate as a device,
// may do it (a device-token caller cannot remove node roles). Close the
// device's node sockets afterwards.
func (m *Manager) RemoveNode(nodeID string, caller Caller) (removedDevice bool, err error) {
	const op = "pairing.RemoveNode"
	if err := m.checkOpen(op); err != nil {
		return false, err
	}
	if err := checkDeviceID(nodeID); err != nil {
		return false, fmt.Errorf("%s: unknown nodeId: %w", op, ErrNotFound)
	}
	if !satisfies(caller.Scopes, scopePairing) {
		return false, fmt.Errorf("%s: %w", op, &MissingScopeError{Scope: scopePairing})
	}
	err = m.st.UpdatePairing(func(tx store.PairingTx) error {
		d, err := findDevice(tx, nodeID)
		if err != nil {
			return err
		}
		if d == nil || !slices.Contains(d.Roles, roleNode) && d.Node == nil && d.PendingNode == nil {
			return fmt.Errorf("unknown nodeId: %w", ErrNotFound)
		}
		if caller.DeviceID != "" && !isAdmin(caller.Scopes) {
			return fmt.Errorf("%w: node pairing removal denied", ErrForbidden)
		}
		d.Roles = slices.DeleteFunc(d.Roles, func(r string) bool { return r == roleNode })
		delete(d.Tokens, roleNode)
		d.Node, d.PendingNode = nil, nil
		if d.Role == roleNode {
			d.Role = ""
			if len(d.Roles) > 0 {
				d.Role = d.Roles[0]
			}
		}
		d.ApprovedScopes = scopesForRoles(d.Roles, d.ApprovedScopes)
		d.Scopes = slices.Clone(d.ApprovedScopes)
		if len(d.Roles) == 0 {
			removedDevice = true
			return tx.DeleteDevice(nodeID)
		}
		return tx.PutDevice(*d)
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	if removedDevice {
		m.forget(nodeID)
	}
	return removedDevice, nil
}

// RenameNode sets a node's display name (trimmed, non-empty). A
// device-token caller without admin may rename only its own node.
func (m *Manager) RenameNode(nodeID, displayName string, caller Caller) (string, error) {
	const op = "pairing.RenameNode"
	if err := m.checkOpen(op); err != nil {
		return "", err
	}
	name := truncate(displayName, maxDisplayLen)
	if name == "" {
		return "", fmt.Errorf("%s: %w: displayName required", op, ErrInvalid)
	}
	if !satisfies(caller.Scopes, scopePairing) {
		return "", fmt.Errorf("%s: %w", op, &MissingScopeError{Scope: scopePairing})
	}
	if !manageNodeAllowed(caller, nodeID) {
		return "", fmt.Errorf("%s: %w: node rename denied", op, ErrForbidden)
	}
	if err := checkDeviceID(nodeID); err != nil {
		return "", fmt.Errorf("%s: unknown nodeId: %w", op, ErrNotFound)
	}
	err := m.st.UpdatePairing(func(tx store.PairingTx) error {
		d, err := findDevice(tx, nodeID)
		if err != nil {
			return err
		}
		if d == nil || !slices.Contains(d.Roles, roleNode) {
			return fmt.Errorf("unknown nodeId: %w", ErrNotFound)
		}
		if d.Node != nil {
			d.Node.DisplayName = name
		}
		d.DisplayName = name
		return tx.PutDevice(*d)
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	return name, nil
}

// ListNodes returns the pending node requests (newest first) and the
// approved node surfaces (most recently approved first).
func (m *Manager) ListNodes() (NodeListing, error) {
	recs, err := m.NodeRecords()
	if err != nil {
		return NodeListing{}, err
	}
	out := NodeListing{Pending: []PendingNode{}, Paired: []PairedNode{}}
	for _, r := range recs {
		if r.Pending != nil {
			out.Pending = append(out.Pending, *r.Pending)
		}
		if r.Node != nil {
			out.Paired = append(out.Paired, *r.Node)
		}
	}
	sort.SliceStable(out.Pending, func(i, j int) bool { return out.Pending[i].TS > out.Pending[j].TS })
	sort.SliceStable(out.Paired, func(i, j int) bool { return out.Paired[i].ApprovedAtMs > out.Paired[j].ApprovedAtMs })
	return out, nil
}

// NodeRecords returns every device that is, was approved as, or asks to be
// a node, in device id order.
func (m *Manager) NodeRecords() ([]NodeRecord, error) {
	const op = "pairing.NodeRecords"
	if err := m.checkOpen(op); err != nil {
		return nil, err
	}
	var devices []store.PairedDevice
	err := m.st.ViewPairing(func(tx store.PairingTx) error {
		var err error
		devices, err = tx.AllDevices()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var out []NodeRecord
	for i := range devices {
		d := &devices[i]
		role := slices.Contains(effectiveRoles(d), roleNode)
		if !role && d.Node == nil && d.PendingNode == nil {
			continue
		}
		r := NodeRecord{NodeID: d.DeviceID, DisplayName: d.DisplayName, Platform: d.Platform, DeviceFamily: d.DeviceFamily,
			ClientID: d.ClientID, ClientMode: d.ClientMode, RemoteIP: d.RemoteIP, ApprovedAtMs: d.ApprovedAtMs, NodeRole: role}
		if d.Node != nil {
			n := toPairedNode(d)
			r.Node = &n
		}
		if d.PendingNode != nil {
			p := toPendingNode(d, d.PendingNode)
			r.Pending = &p
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out, nil
}
