// Package tsipc is the wire contract between the gateway and
// clawgate-tailnet, the helper process that runs the tailnet node: the
// names of the calls each side makes over its ipc connection and their
// parameters and results. It imports nothing from tailscale.com, so the
// gateway can speak to the helper without linking the node.
//
// The gateway calls the helper:
//
//   - [MethodStart] ([Start]) once, first: the node's options,
//     the auth key among them (it travels only in this call, never in argv
//     or the environment);
//   - [MethodListen] ([Listen]) for each port to serve on the tailnet;
//   - [MethodIdentify] ([Identify] → [Identified]) for each connection:
//     WhoIs of its remote address and the trust verdict.
//
// The helper calls the gateway:
//
//   - [MethodAccept] ([Accept], with one descriptor: the gateway's end of a
//     Unix socket pair whose other end the helper relays to the tailnet
//     connection, both ways, half-close included);
//   - [MethodState] ([State]) whenever the node's status or Host names
//     change, so the gateway answers both without a call;
//   - [MethodPeerGone] ([PeerGone]) when a peer leaves the netmap or its key
//     expires.
//
// The helper exits when the connection closes.
package tsipc

import (
	"log/slog"
	"net/netip"
)

// Version is the wire version of these calls. The gateway sends it in
// Start; a helper from another release refuses to start rather than
// misread the calls.
const Version = 1

// HelperName is the helper binary's name: the gateway looks for it next
// to itself (or in $CLAWGATE_HELPER_DIR; never on $PATH).
const HelperName = "clawgate-tailnet"

// Method names.
const (
	MethodStart    = "start"
	MethodListen   = "listen"
	MethodIdentify = "identify"
	MethodAccept   = "accept"
	MethodState    = "state"
	MethodPeerGone = "peerGone"
)

// Start configures and starts the node (tsnode.Options and the trust
// policy).
type Start struct {
	Version       int      `json:"version"` // the caller's Version
	Dir           string   `json:"dir"`
	Hostname      string   `json:"hostname"`
	AuthKey       string   `json:"authKey,omitempty"` // secret: never logged
	ControlURL    string   `json:"controlURL,omitempty"`
	Ephemeral     bool     `json:"ephemeral,omitempty"`
	AdvertiseTags []string `json:"advertiseTags,omitempty"`
	UploadLogs    bool     `json:"uploadLogs,omitempty"`
	// LogLevel is the least level the helper logs (slog.Level);
	// BackendLogs adds tailscale's own log at debug level.
	LogLevel    slog.Level `json:"logLevel"`
	BackendLogs bool       `json:"backendLogs,omitempty"`
	// AllowedLogins and AllowedTags are the trust policy (tsnode.Policy).
	AllowedLogins []string `json:"allowedLogins,omitempty"`
	AllowedTags   []string `json:"allowedTags,omitempty"`
}

// Listen asks the helper to accept tailnet connections on Port.
type Listen struct {
	Port int `json:"port"`
}

// Accept hands the gateway one accepted tailnet connection: the descriptor
// sent with the call stands for it. Remote and Local are the connection's
// tailnet addresses ("ip:port"); Port is the listening port it came in on.
type Accept struct {
	Port   int    `json:"port"`
	Remote string `json:"remote"`
	Local  string `json:"local"`
}

// Identify asks who the peer at Remote ("ip:port" of an accepted
// connection) is. A failed identification is an error: the caller treats
// the peer as unidentified.
type Identify struct {
	Remote string `json:"remote"`
}

// Identified is WhoIs's answer and the policy's verdict.
type Identified struct {
	Identity Identity `json:"identity"`
	Verdict  Verdict  `json:"verdict"`
}

// Identity is who the tailnet says a peer is (tsnode.Identity). Every
// field comes from the node's netmap (WhoIs), never from the connection's
// payload.
type Identity struct {
	NodeID    string       `json:"nodeId"`              // stable node ID
	NodeName  string       `json:"nodeName,omitempty"`  // MagicDNS FQDN, no trailing dot
	UserLogin string       `json:"userLogin,omitempty"` // owner login; "" for tagged nodes
	Tags      []string     `json:"tags,omitempty"`      // ACL tags
	Addrs     []netip.Addr `json:"addrs,omitempty"`     // the node's tailnet addresses
	// SharedIn: the node belongs to another tailnet (shared into this
	// one, or a sharee's device).
	SharedIn bool `json:"sharedIn,omitempty"`
	// Funnel: the connection came from the public internet through
	// Tailscale Funnel (or from a Funnel ingress relay).
	Funnel bool `json:"funnel,omitempty"`
}

// LogValue keeps log lines short and structured.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("node", id.NodeID), slog.String("name", id.NodeName),
		slog.String("login", id.UserLogin), slog.Any("tags", id.Tags),
		slog.Bool("sharedIn", id.SharedIn), slog.Bool("funnel", id.Funnel))
}

// Verdict is a trust decision and why (tsnode.Verdict).
type Verdict struct {
	Trusted bool   `json:"trusted"`
	Reason  string `json:"reason"`
}

// State is the node's status and the Host header values that name it.
type State struct {
	Status Status   `json:"status"`
	Hosts  []string `json:"hosts,omitempty"`
}

// Status is a snapshot of the node (tsnode.Status).
type Status struct {
	// State is the backend state: NoState, NeedsLogin,
	// NeedsMachineAuth, Stopped, Starting or Running.
	State string `json:"state"`
	// NodeID is the node's stable ID once registered.
	NodeID string `json:"nodeId,omitempty"`
	// LoginURL is set while interactive login is needed. Whoever opens
	// it first decides which tailnet the node joins: show it only to
	// the operator.
	LoginURL       string       `json:"loginURL,omitempty"`
	Hostname       string       `json:"hostname"`
	DNSName        string       `json:"dnsName,omitempty"` // MagicDNS FQDN, no trailing dot
	IPs            []netip.Addr `json:"ips,omitempty"`
	Tailnet        string       `json:"tailnet,omitempty"`
	MagicDNSSuffix string       `json:"magicDNSSuffix,omitempty"`
	// OwnerLogin is the login that owns this node; "" for a tagged node.
	OwnerLogin string   `json:"ownerLogin,omitempty"`
	Tags       []string `json:"tags,omitempty"`
	Peers      int      `json:"peers"`
	// Error is the last backend error (e.g. an invalid auth key).
	Error string `json:"error,omitempty"`
}

// StateRunning is the backend state of a node on the tailnet (the
// string form of tailscale's ipn.Running).
const StateRunning = "Running"

// Running reports whether the node is on the tailnet with an address.
func (s Status) Running() bool { return s.State == StateRunning && len(s.IPs) > 0 }

// PeerGone names a peer that left the netmap or whose key expired.
type PeerGone struct {
	NodeID string `json:"nodeId"`
}
