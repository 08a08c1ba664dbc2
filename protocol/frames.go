package protocol

import (
	"encoding/json"
	"errors"
)

// Frame types.
const (
	TypeReq    = "req"
	TypeRes    = "res"
	TypeEvent  = "event"
	TypeCancel = "cancel"
)

// Request is a client → server request frame.
type Request struct {
	Type        string          `json:"type"`
	ID          string          `json:"id"`
	Method      string          `json:"method"`
	Params      json.RawMessage `json:"params,omitempty"`
	Traceparent string          `json:"traceparent,omitempty"`
}

// Response answers a Request with the same ID.
type Response struct {
	Type    string      `json:"type"`
	ID      string      `json:"id"`
	OK      bool        `json:"ok"`
	Payload any         `json:"payload,omitempty"`
	Error   *ErrorShape `json:"error,omitempty"`
}

// Event is a server → client push. Seq is set on broadcasts and counts per
// connection; targeted events carry none.
type Event struct {
	Type         string        `json:"type"`
	Event        string        `json:"event"`
	Payload      any           `json:"payload,omitempty"`
	Seq          *uint64       `json:"seq,omitempty"`
	StateVersion *StateVersion `json:"stateVersion,omitempty"`
}

// StateVersion counts presence and health changes.
type StateVersion struct {
	Presence uint64 `json:"presence"`
	Health   uint64 `json:"health"`
}

// ErrorShape is the error member of a failed Response.
type ErrorShape struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	Details      any    `json:"details,omitempty"`
	Retryable    *bool  `json:"retryable,omitempty"`
	RetryAfterMs *int64 `json:"retryAfterMs,omitempty"`
}

// Error is a protocol error that a handler returns; the gateway writes it as
// the ErrorShape of the response. Close, when non-zero, asks the gateway to
// close the socket with that code after the response is written.
type Error struct {
	Code         string
	Message      string
	Details      map[string]any
	Retryable    bool
	RetryAfterMs int64
	Close        int
	CloseReason  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Shape converts e to its wire form.
func (e *Error) Shape() *ErrorShape {
	s := &ErrorShape{Code: e.Code, Message: e.Message}
	if len(e.Details) > 0 {
		s.Details = e.Details
	}
	if e.Retryable {
		t := true
		s.Retryable = &t
	}
	if e.RetryAfterMs > 0 {
		ms := e.RetryAfterMs
		s.RetryAfterMs = &ms
	}
	return s
}

// NewError returns an *Error with an optional details code.
func NewError(code, message, detailCode string) *Error {
	e := &Error{Code: code, Message: message}
	if detailCode != "" {
		e.Details = map[string]any{"code": detailCode}
	}
	return e
}

// InvalidRequest is shorthand for an INVALID_REQUEST error without details.
func InvalidRequest(message string) *Error {
	return &Error{Code: ErrInvalidRequest, Message: message}
}

// AsError unwraps err to a protocol *Error, or wraps it as UNAVAILABLE with a
// generic message so internal detail never reaches the wire.
func AsError(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Code: ErrUnavailable, Message: "internal error"}
}

// OKResponse builds a successful response frame.
func OKResponse(id string, payload any) *Response {
	return &Response{Type: TypeRes, ID: id, OK: true, Payload: payload}
}

// ErrResponse builds a failed response frame.
func ErrResponse(id string, e *Error) *Response {
	return &Response{Type: TypeRes, ID: id, OK: false, Error: e.Shape()}
}
