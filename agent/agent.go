package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Roles of a conversation message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Message is one turn of the conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Request is one reply to produce.
type Request struct {
	// Messages is the conversation, oldest first; the last one is the
	// user's new message. A system prompt, if any, comes first.
	Messages []Message
	// RunID and SessionKey identify the run (the exec backend passes them
	// to the command in its environment).
	RunID      string
	SessionKey string
}

// Prompt returns the text of the last user message.
func (r *Request) Prompt() string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == RoleUser {
			return r.Messages[i].Content
		}
	}
	return ""
}

// Result describes a finished reply.
type Result struct {
	// StopReason is why the reply ended: "stop", "length", or the
	// backend's own word.
	StopReason string
	Usage      *Usage
}

// Usage counts tokens, when the backend reports them.
type Usage struct {
	Input  int `json:"input"`
	Output int `json:"output"`
	Total  int `json:"total"`
}

// Backend produces replies. Stream calls emit with each new piece of text,
// in order, from the calling goroutine, and returns when the reply is
// complete, ctx ends, or the backend fails. When ctx ends Stream returns
// promptly with an error wrapping ctx's cause ([ErrAborted] or
// [ErrTimeout] when the gateway set one). A Backend is safe for concurrent
// use.
type Backend interface {
	Stream(ctx context.Context, req Request, emit func(text string)) (Result, error)
}

// Describer is an optional ability: a short, secret-free description of the
// backend for logs and status ("openai http://127.0.0.1:11434/v1 model=x").
type Describer interface {
	Describe() string
}

// Sentinel errors.
var (
	// ErrTimeout: the run took longer than its timeout.
	ErrTimeout = errors.New("agent: run timed out")
	// ErrAborted: the run was aborted by a client.
	ErrAborted = errors.New("agent: run aborted")
)

// HTTPError is an error status from an HTTP backend. Message is the
// upstream's own error message, trimmed and bounded; it never contains the
// API key.
type HTTPError struct {
	Status  int
	Type    string // the upstream's error type or code, if any
	Message string
}

func (e *HTTPError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("agent: backend answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("agent: backend answered HTTP %d: %s", e.Status, e.Message)
}

// ExitError is a command that exited unsuccessfully.
type ExitError struct {
	Code   int    // exit status, -1 when killed by a signal
	Stderr string // the last bytes of its stderr, for the log only
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("agent: command exited with status %d", e.Code)
}

// Kind maps err to the protocol's chat errorKind.
func Kind(err error) string {
	var he *HTTPError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &he):
		low := strings.ToLower(he.Type + " " + he.Message)
		switch {
		case he.Status == 429:
			return "rate_limit"
		case strings.Contains(low, "context_length") || strings.Contains(low, "context length") ||
			strings.Contains(low, "maximum context"):
			return "context_length"
		case strings.Contains(low, "content_filter") || strings.Contains(low, "refus"):
			return "refusal"
		case he.Status == 408 || he.Status == 504:
			return "timeout"
		}
	}
	return "unknown"
}

// cause returns ctx's cause mapped onto the package sentinels.
func cause(ctx context.Context) error {
	c := context.Cause(ctx)
	switch {
	case errors.Is(c, ErrAborted), errors.Is(c, ErrTimeout):
		return c
	case errors.Is(c, context.DeadlineExceeded):
		return ErrTimeout
	}
	return ErrAborted
}
