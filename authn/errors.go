package authn

import (
	"errors"
	"fmt"

	"github.com/clawgate/clawgate/protocol"
)

// DeviceAuthError is a failed device proof. Code is the wire details.code
// (one of protocol.DetailDevice*), Reason the wire details.reason and Message
// the wire error message; the gateway answers
//
//	{"code":"INVALID_REQUEST","message":Message,"details":{"code":Code,"reason":Reason}}
//
// and closes the socket with 1008 and Message as the close reason. None of
// the three ever contains a secret. Err, when set, is the internal cause (for
// logs, never for the wire).
type DeviceAuthError struct {
	Code    string
	Reason  string
	Message string
	Err     error
}

// Error implements error.
func (e *DeviceAuthError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("authn.VerifyDevice: %s: %v", e.Message, e.Err)
	}
	return "authn.VerifyDevice: " + e.Message
}

// Unwrap returns the internal cause, if any.
func (e *DeviceAuthError) Unwrap() error { return e.Err }

// Is reports whether target is a *DeviceAuthError with the same Code, so
// errors.Is(err, authn.ErrNonceMismatch) works on any returned error.
func (e *DeviceAuthError) Is(target error) bool {
	t, ok := target.(*DeviceAuthError)
	return ok && t.Code == e.Code
}

// Sentinels for each device-proof failure, matched with errors.Is. The
// values VerifyDevice returns are fresh copies, so mutating one never
// changes these.
var (
	ErrDeviceAuthInvalid = &DeviceAuthError{
		Code: protocol.DetailDeviceAuthInvalid, Reason: "device-auth-invalid", Message: "device auth invalid"}
	ErrDeviceIDMismatch = &DeviceAuthError{
		Code: protocol.DetailDeviceIDMismatch, Reason: "device-id-mismatch", Message: "device identity mismatch"}
	ErrSignatureExpired = &DeviceAuthError{
		Code: protocol.DetailDeviceSignatureExpired, Reason: "device-signature-stale", Message: "device signature expired"}
	ErrNonceRequired = &DeviceAuthError{
		Code: protocol.DetailDeviceNonceRequired, Reason: "device-nonce-missing", Message: "device nonce required"}
	ErrNonceMismatch = &DeviceAuthError{
		Code: protocol.DetailDeviceNonceMismatch, Reason: "device-nonce-mismatch", Message: "device nonce mismatch"}
	ErrSignatureInvalid = &DeviceAuthError{
		Code: protocol.DetailDeviceSignatureInvalid, Reason: "device-signature", Message: "device signature invalid"}
	ErrPublicKeyInvalid = &DeviceAuthError{
		Code: protocol.DetailDevicePublicKeyInvalid, Reason: "device-public-key", Message: "device public key invalid"}
)

// deviceErr returns a fresh copy of sentinel carrying cause.
func deviceErr(sentinel *DeviceAuthError, cause error) *DeviceAuthError {
	e := *sentinel
	e.Err = cause
	return &e
}

// Errors from the key and signature decoders.
var (
	ErrPublicKeyEncoding = errors.New("authn: public key is not base64, base64url or an Ed25519 SPKI PEM")
	ErrPublicKeySize     = errors.New("authn: public key is not 32 bytes")
	ErrSignatureEncoding = errors.New("authn: signature is not base64url or base64")
	ErrSignatureSize     = errors.New("authn: signature is not 64 bytes")
)

// Errors about tokens and secrets. They never include the token's value.
var (
	ErrEmptyToken = errors.New("authn: token is empty")
	ErrWeakToken  = errors.New("authn: token is shorter than 24 characters")
)

// ErrInvalidPayloadField is matched (errors.Is) by every *PayloadFieldError.
var ErrInvalidPayloadField = errors.New("authn: invalid signature payload field")

// PayloadFieldError says which signed field broke the payload rules and how.
// Field is the connect-params JSON pointer (e.g. "/client/id"); Problem is a
// short phrase. The field's value is deliberately not kept: it may be a
// token.
type PayloadFieldError struct {
	Field   string
	Problem string
}

// Error implements error.
func (e *PayloadFieldError) Error() string {
	return "authn: signature payload field " + e.Field + ": " + e.Problem
}

// Is makes errors.Is(err, ErrInvalidPayloadField) true.
func (e *PayloadFieldError) Is(target error) bool { return target == ErrInvalidPayloadField }
