package whatsapp

import (
	"errors"
	"log/slog"

	"github.com/clawgate/clawgate/ipc"
	"github.com/clawgate/clawgate/providers"
)

// HelperName is the helper binary that runs the WhatsApp session
// (cmd/clawgate-whatsapp): whatsmeow and SQLite live there, not in the
// gateway.
const HelperName = "clawgate-whatsapp"

// The ipc methods between the gateway and its helper. The helper serves one
// session; its first call must be MethodOpen.
const (
	// MethodOpen opens the session: OpenParams, with the session lock the
	// gateway holds as the call's one file.
	MethodOpen = "open"
	// MethodRun runs the device until the call is cancelled or the
	// connection is lost; inbound messages and state changes come back as
	// MethodDeliver and MethodState calls meanwhile.
	MethodRun = "run"
	// MethodSend: providers.Outbound → providers.Result.
	MethodSend = "send"
	// MethodProbe: → ProbeReply.
	MethodProbe = "probe"
	// MethodLoginStart: LoginStartParams → LoginStatus.
	MethodLoginStart = "login.start"
	// MethodLoginWait: LoginWaitParams → LoginStatus.
	MethodLoginWait = "login.wait"
	// MethodLink links a device without a run (the CLI): LinkParams; the
	// codes come as MethodLogin calls.
	MethodLink = "link"
	// MethodLogout unlinks the device and deletes the session.
	MethodLogout = "logout"

	// MethodDeliver (helper → gateway): one providers.Inbound; it returns
	// once the gateway's Sink.Deliver has, so the helper acknowledges
	// messages in the order and at the time an in-process provider would.
	MethodDeliver = "deliver"
	// MethodState (helper → gateway): StateParams.
	MethodState = "state"
	// MethodLogin (helper → gateway): the LoginStatus after each change.
	MethodLogin = "login"
)

// WireVersion changes whenever a method or its types change: a helper
// refuses a gateway of another version (an install mixing releases).
const WireVersion = 2

// OpenParams are MethodOpen's.
type OpenParams struct {
	Version   int // WireVersion
	Dir       string
	QueueSize int
	LogLevel  slog.Level
	// Test points the helper at a loopback fake; nil in production.
	Test *TestEndpoint `json:",omitempty"`
}

// TestEndpoint is a loopback stand-in for WhatsApp (package fake). Only
// tests set one: no flag, environment variable or config field reaches
// it, and the helper accepts it only in MethodOpen from its gateway.
type TestEndpoint struct {
	Addr    string   // the fake's loopback address, dialled whatever host a URL names
	Cert    []byte   // its TLS certificate (DER), the only one trusted
	RootKey [32]byte // the root its Noise certificates are signed with
}

// ProbeReply is MethodProbe's result: Probe returns a result and an error
// together.
type ProbeReply struct {
	Result providers.ProbeResult
	Error  string `json:",omitempty"`
}

// LoginStartParams are MethodLoginStart's.
type LoginStartParams struct{ Force bool }

// LoginWaitParams are MethodLoginWait's.
type LoginWaitParams struct{ CurrentQR string }

// LinkParams are MethodLink's.
type LinkParams struct{ Force bool }

// StateParams are MethodState's.
type StateParams struct {
	State providers.State
	Error string `json:",omitempty"`
}

// Error codes of the ipc errors between gateway and helper.
const (
	codeNotRunning    = "not_running"
	codeSessionLocked = "session_locked"
	codeAlreadyLinked = "already_linked"
	codeQRTimeout     = "qr_timeout"
	codeBadOutbound   = "bad_outbound"
	codePermanent     = "permanent"
)

// codes maps sentinel errors to their codes, most specific first.
var codes = []struct {
	code string
	err  error
}{
	{codeNotRunning, ErrNotRunning},
	{codeSessionLocked, ErrSessionLocked},
	{codeAlreadyLinked, ErrAlreadyLinked},
	{codeQRTimeout, ErrQRTimeout},
	{codeBadOutbound, providers.ErrBadOutbound},
}

// WireError is how the helper returns err to the gateway: the sentinel
// errors of this package and providers.PermanentError keep their meaning
// through an ipc.Error code.
func WireError(err error) error {
	if err == nil {
		return nil
	}
	var perm *providers.PermanentError
	if errors.As(err, &perm) {
		return &ipc.Error{Code: codePermanent, Message: err.Error()}
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return &ipc.Error{Code: c.code, Message: err.Error()}
		}
	}
	return err
}

// remoteError is an error of the helper: its text, and the sentinel its
// code names.
type remoteError struct {
	msg string
	is  error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.is }

// fromWire turns an error of a call to the helper back into what the
// helper's provider returned: errors.Is finds the sentinel, the text is
// the helper's.
func fromWire(err error) error {
	var ie *ipc.Error
	if !errors.As(err, &ie) {
		return err
	}
	if ie.Code == codePermanent {
		return providers.Permanent(errors.New(ie.Message))
	}
	for _, c := range codes {
		if ie.Code == c.code {
			return &remoteError{msg: ie.Message, is: c.err}
		}
	}
	return errors.New(ie.Message)
}
