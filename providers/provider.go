package providers

import (
	"context"
	"errors"
	"time"
)

// Provider is one account on one messaging service.
//
// Run connects and stays connected until ctx ends, handing every inbound
// message to sink.Deliver in the order the service delivered it and
// reporting connection changes with sink.SetState. It returns nil only when
// ctx ended; any other return (or a panic) makes the Supervisor restart it
// after a backoff. Run must leave no goroutine behind when it returns.
//
// Send delivers one outbound text. It must be safe to call concurrently
// with Run and with other Sends, whether or not Run is running.
type Provider interface {
	// Name is the channel id: "telegram", "slack", "discord".
	Name() string
	Capabilities() Capabilities
	Run(ctx context.Context, sink Sink) error
	Send(ctx context.Context, msg Outbound) (Result, error)
}

// Sink receives what a running provider observes. Its methods are safe for
// concurrent use.
type Sink interface {
	// Deliver hands one inbound message to the gateway. It returns once the
	// message is accepted, dropped by policy, or ctx ends; a provider
	// acknowledges the message to its service only after Deliver returns.
	Deliver(ctx context.Context, msg Inbound) error
	// SetState reports a connection change; err explains a disconnect.
	SetState(state State, err error)
}

// Capabilities describe a provider as data.
type Capabilities struct {
	Label      string     // human name: "Telegram"
	IDs        IDSyntax   // how sender and chat IDs look
	ChatTypes  []ChatType // kinds of chat the provider delivers
	MaxTextLen int        // longest outbound text, in characters
	Threads    bool       // Outbound.ThreadID is honoured
	Edits      bool       // delivers KindEdit
	Reactions  bool       // delivers KindReaction
	Mode       string     // "polling", "webhook", "socket", "gateway"
}

// IDSyntax says which strings are valid user and chat IDs for a service,
// so that allowlists can be checked when they are loaded.
type IDSyntax int

const (
	// IDNumeric: decimal integers, possibly negative (Telegram chat ids).
	IDNumeric IDSyntax = iota
	// IDSnowflake: unsigned decimal integers (Discord).
	IDSnowflake
	// IDSlack: upper-case alphanumerics starting with a letter (U0123ABC).
	IDSlack
	// IDOpaque: any non-empty printable string without spaces.
	IDOpaque
)

// Kind is what an inbound event is.
type Kind string

// Inbound kinds.
const (
	KindMessage  Kind = "message"
	KindEdit     Kind = "edit"
	KindReaction Kind = "reaction"
)

// ChatType is the kind of conversation.
type ChatType string

// Chat types.
const (
	ChatDirect  ChatType = "direct"
	ChatGroup   ChatType = "group"
	ChatChannel ChatType = "channel"
)

// Inbound is one message (or edit, or reaction) from a service.
type Inbound struct {
	Channel   string // set by the Supervisor
	AccountID string // set by the Supervisor

	Kind Kind
	// ID is unique per account for this event (the dedupe key): Telegram
	// "<chat>:<message>", Slack event_id, Discord snowflake.
	ID          string
	MessageID   string // the message it concerns
	ChatID      string
	ChatType    ChatType
	ThreadID    string
	SenderID    string   // immutable id; the only thing policy matches
	SenderName  string   // display only; never used for policy
	SenderRoles []string // guild role ids (Discord)
	Text        string   // message text, the new text of an edit, or the reaction emoji
	Time        time.Time

	// FromOwner is set by the Supervisor when SenderID is listed in the
	// account's owners (a wildcard allowlist never implies it).
	FromOwner bool
}

// ConversationKey identifies the conversation a message belongs to.
func (m *Inbound) ConversationKey() ConversationKey {
	return ConversationKey{Channel: m.Channel, AccountID: m.AccountID, ChatID: m.ChatID}
}

// ConversationKey identifies one chat on one account.
type ConversationKey struct {
	Channel, AccountID, ChatID string
}

// Outbound is one text to send.
type Outbound struct {
	To        string // chat or channel id
	Text      string
	ThreadID  string // optional: thread or topic
	ReplyToID string // optional: message to reply to
}

// Result is what the service said about a sent message.
type Result struct {
	MessageID string
	ChatID    string // Telegram chat id
	ChannelID string // Slack and Discord channel id
}

// State is an account's connection state.
type State string

// States.
const (
	StateStopped      State = "stopped"
	StateStarting     State = "starting"
	StateConnected    State = "connected"
	StateReconnecting State = "reconnecting"
	StateFailed       State = "failed"     // a permanent error; not retried
	StateLoggedOut    State = "logged-out" // stopped by channels.logout
)

// Prober checks credentials and reachability without side effects
// (Telegram getMe, Slack auth.test, Discord /users/@me).
type Prober interface {
	Probe(ctx context.Context) (ProbeResult, error)
}

// ProbeResult is what a probe learned.
type ProbeResult struct {
	OK      bool   `json:"ok"`
	BotID   string `json:"botId,omitempty"`
	BotName string `json:"botName,omitempty"`
	Elapsed int64  `json:"elapsedMs"`
	Error   string `json:"error,omitempty"`
}

// LogoutProvider forgets the account's session on the service side (for
// example unlinking a device). Token-based bots do not need it: the
// Supervisor stops the account either way.
type LogoutProvider interface {
	Logout(ctx context.Context) error
}

// Editor replaces the text of a message the account sent.
type Editor interface {
	Edit(ctx context.Context, chatID, messageID, text string) error
}

// Errors shared by providers and the Supervisor.
var (
	ErrUnknownAccount = errors.New("providers: unknown channel or account")
	ErrNoChannel      = errors.New("providers: no channel configured")
	ErrAmbiguous      = errors.New("providers: several channels configured; choose one")
	ErrNotAllowed     = errors.New("providers: destination not in allowTo")
	ErrBadOutbound    = errors.New("providers: invalid outbound message")
	ErrLoggedOut      = errors.New("providers: account is logged out")
	ErrStopped        = errors.New("providers: supervisor is not running")
)

// PermanentError marks an error that retrying will not fix (revoked or
// invalid credentials). The Supervisor stops the account in StateFailed
// instead of restarting it.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}
