package pairing

import "errors"

// Sentinel errors. Every error returned by a Manager method carries the
// method as an op prefix ("pairing.Approve: ...") and wraps one of these (or
// a store error) for errors.Is. None ever contains a token or digest.
var (
	// ErrNotFound: unknown, expired or already resolved requestId; unknown
	// deviceId; no token for that role. Nothing was changed or issued.
	ErrNotFound = errors.New("not found")

	// ErrForbidden: the caller lacks the authority for the operation. A
	// missing scope is reported as a *MissingScopeError, which matches it.
	ErrForbidden = errors.New("forbidden")

	// ErrRotationDenied: device.token.rotate outside the approved role set,
	// the approved scope baseline or the caller's own scopes, or on another
	// device without admin. Its text is the protocol's message.
	ErrRotationDenied = errors.New("device token rotation denied")

	// ErrTokenMismatch: the device token does not verify (unknown device, no
	// live token for that role, wrong token). Maps to AUTH_DEVICE_TOKEN_MISMATCH.
	ErrTokenMismatch = errors.New("device token mismatch")

	// ErrScopeMismatch: the token verifies but its scopes exceed the approved
	// baseline or do not cover the requested scopes. Maps to AUTH_SCOPE_MISMATCH.
	ErrScopeMismatch = errors.New("device token scope mismatch")

	// ErrTokenUnverified: Check was given a ConnectInfo.DeviceToken that
	// did not verify; the error also wraps ErrTokenMismatch or
	// ErrScopeMismatch, or whatever kept Check from verifying it (a closed
	// Manager, a store failure). Nothing was decided or written.
	ErrTokenUnverified = errors.New("device token not verified")

	// ErrNotPaired: EnsureToken for a device or role that is not (or no
	// longer: revoked) approved.
	ErrNotPaired = errors.New("device not paired for this role")

	// ErrTooManyPending: the pending-request cap for this client key or in
	// total is reached; the connect should be refused as retryable.
	ErrTooManyPending = errors.New("too many pending pairing requests")

	// ErrInvalid: malformed input (device id, role, scopes, public key).
	ErrInvalid = errors.New("invalid pairing input")

	// ErrClosed: the Manager was closed.
	ErrClosed = errors.New("pairing manager closed")
)

// MissingScopeError reports the first scope the caller would need. Its text
// is the protocol's "missing scope: <scope>".
type MissingScopeError struct{ Scope string }

func (e *MissingScopeError) Error() string { return "missing scope: " + e.Scope }

// Is makes a MissingScopeError match ErrForbidden.
func (e *MissingScopeError) Is(target error) bool { return target == ErrForbidden }
