// Package authn holds clawgate's authentication decisions as pure functions:
// the device-signature payloads (v3 and v2) and their verification in the
// real OpenClaw gateway's order, Ed25519 key and signature encodings, the
// shared-secret compare, roles and scopes with their implication rules, the
// locality decision ("did this socket really come from this machine?") and
// the auth-failure rate limiter. It also mints what the gateway hands out:
// challenge nonces and tokens.
//
// authn does no I/O (beyond crypto/rand when minting) and starts no
// goroutines. Time is always an argument, so every decision can be replayed
// in a test. It imports only the standard library and package protocol,
// whose detail codes it returns.
//
// The gateway calls it roughly in this order for a connect request:
//
//	key := authn.NewLimitKey(authn.LimitSharedSecret, arrival)
//	if retry, locked := limiter.Check(key, now); locked { ... AUTH_RATE_LIMITED ... }
//	if err := authn.ValidateClaims(claims); err != nil { ... invalid connect params ... }
//	dev, err := authn.VerifyDevice(proof, claims, challengeNonce, now)
//	var dae *authn.DeviceAuthError
//	if errors.As(err, &dae) { ... INVALID_REQUEST, details{code: dae.Code, reason: dae.Reason}, close 1008 ... }
//	if !secret.Equal(token) { limiter.Fail(key, now) } else { limiter.Succeed(key) }
//
// Secrets never leave this package in printable form: [SharedSecret] formats
// as "[redacted]" under every fmt verb and in log/slog, and no error built
// here carries a token's value.
package authn
