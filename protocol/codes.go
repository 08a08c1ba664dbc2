package protocol

// Protocol versions. Operators and UIs must speak Version; nodes and probes
// may stay one version behind.
const (
	Version          = 4
	MinClientVersion = 4
	MinNodeVersion   = 3
	MinProbeVersion  = 3
)

// Error codes carried in ErrorShape.Code.
const (
	ErrNotLinked           = "NOT_LINKED"
	ErrNotPaired           = "NOT_PAIRED"
	ErrAgentTimeout        = "AGENT_TIMEOUT"
	ErrInvalidRequest      = "INVALID_REQUEST"
	ErrApprovalNotFound    = "APPROVAL_NOT_FOUND"
	ErrUnavailable         = "UNAVAILABLE"
	ErrForbidden           = "FORBIDDEN"
	ErrAgentResultNotFound = "AGENT_RESULT_NOT_FOUND"
)

// Detail codes carried in ErrorShape.Details["code"].
const (
	DetailMissingScope = "MISSING_SCOPE"

	DetailAuthRequired            = "AUTH_REQUIRED"
	DetailAuthUnauthorized        = "AUTH_UNAUTHORIZED"
	DetailAuthTokenMissing        = "AUTH_TOKEN_MISSING"
	DetailAuthTokenMismatch       = "AUTH_TOKEN_MISMATCH"
	DetailAuthTokenNotConfigured  = "AUTH_TOKEN_NOT_CONFIGURED"
	DetailAuthBootstrapInvalid    = "AUTH_BOOTSTRAP_TOKEN_INVALID"
	DetailAuthDeviceTokenMismatch = "AUTH_DEVICE_TOKEN_MISMATCH"
	DetailAuthRateLimited         = "AUTH_RATE_LIMITED"
	DetailAuthScopeMismatch       = "AUTH_SCOPE_MISMATCH"

	DetailOriginNotAllowed       = "CONTROL_UI_ORIGIN_NOT_ALLOWED"
	DetailDeviceIdentityRequired = "DEVICE_IDENTITY_REQUIRED"
	DetailDeviceAuthInvalid      = "DEVICE_AUTH_INVALID"
	DetailDeviceIDMismatch       = "DEVICE_AUTH_DEVICE_ID_MISMATCH"
	DetailDeviceSignatureExpired = "DEVICE_AUTH_SIGNATURE_EXPIRED"
	DetailDeviceNonceRequired    = "DEVICE_AUTH_NONCE_REQUIRED"
	DetailDeviceNonceMismatch    = "DEVICE_AUTH_NONCE_MISMATCH"
	DetailDeviceSignatureInvalid = "DEVICE_AUTH_SIGNATURE_INVALID"
	DetailDevicePublicKeyInvalid = "DEVICE_AUTH_PUBLIC_KEY_INVALID"
	DetailPairingRequired        = "PAIRING_REQUIRED"
	DetailPairingRejected        = "PAIRING_REJECTED"
	DetailPairingExpired         = "PAIRING_EXPIRED"
	DetailProtocolMismatch       = "PROTOCOL_MISMATCH"
	DetailNotConnected           = "NOT_CONNECTED"
)

// Recommended next steps carried in auth failure details.
const (
	NextRetryWithDeviceToken  = "retry_with_device_token"
	NextUpdateAuthConfig      = "update_auth_configuration"
	NextUpdateAuthCredentials = "update_auth_credentials"
	NextWaitThenRetry         = "wait_then_retry"
	NextReviewAuthConfig      = "review_auth_configuration"
)

// WebSocket close codes the gateway sends.
const (
	CloseNormal         = 1000
	CloseGoingAway      = 1001
	CloseProtocolError  = 1002
	CloseInvalidPayload = 1007
	ClosePolicy         = 1008
	CloseTooBig         = 1009
	CloseServiceRestart = 1012
	CloseAuthChanged    = 4001 // shared secret rotated, or device removed
	CloseTickTimeout    = 4000 // sent by clients
)

// Limits and timers of the protocol.
const (
	MaxPreauthPayload  = 64 << 10 // 65536
	MaxPayload         = 25 << 20 // 26214400
	MaxBufferedBytes   = 50 << 20 // 52428800
	TickIntervalMs     = 30000
	HandshakeTimeoutMs = 15000
	SignatureSkewMs    = 120000
	DedupeTTLMs        = 300000
	DedupeMaxEntries   = 1000
)
