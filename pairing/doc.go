// Package pairing is clawgate's device pairing state machine: pending
// requests → approved (paired) / rejected / removed, one device token per
// (device, role), and the role and scope rules that bound both. All pairing
// policy lives here; persistence is behind store.PairingStore, and every
// operation is one store transaction, so a decision and the state it rests
// on are read and written atomically.
//
// The gateway calls, for a connect that has already proven its device key:
//
//	// paired? needs approval? With DeviceToken (auth.deviceToken, else
//	// auth.token), Check verifies it first, as VerifyDeviceToken would, in
//	// the same read: errors.Is(err, ErrTokenUnverified) is an auth failure.
//	d, err := m.Check(pairing.ConnectInfo{..., DeviceToken: token, IssueToken: true})
//	switch d.Outcome {
//	case pairing.PendingRequired:  // broadcast device.pair.requested if d.Created; NOT_PAIRED, close 1008
//	case pairing.ApprovedSilently: // broadcast device.pair.resolved (d.Resolved); continue
//	case pairing.Paired:           // continue
//	}
//	// hello-ok.auth.deviceToken: d.Token when set (with IssueToken, Check
//	// has done EnsureToken's work; without it, call EnsureToken here)
//
// and, for the device.pair.* and device.token.* methods, List, Approve,
// Reject, Remove, RotateToken and RevokeToken with the calling connection's
// identity ([Caller]). An approval never grants more than the approver
// holds, and a non-admin caller may manage only its own device.
//
// Tokens are 256-bit crypto/rand values (43 base64url characters). Only
// their SHA-256 digest is stored, so a stored token can never be returned
// again: a token is handed out exactly once, by the call that minted it
// (EnsureToken at connect, or RotateToken). Approve mints and stores the
// token record in the same transaction that marks the device paired, but
// cannot reach the device, so that first token's plaintext is discarded; the
// device's next connect (EnsureToken, or Check with IssueToken) replaces it
// with the one it receives in hello-ok. A silent approval with ConnectInfo.IssueToken instead mints
// the token the connecting device receives in the approving transaction
// (Decision.Token), so a new local device costs one write transaction, and
// Check's writes go through store's BatchPairing, so concurrent first
// connects share one commit and one fsync. Nothing here ever logs or
// returns a digest.
//
// A connect costs no fsync: Check and VerifyDeviceToken on a paired device
// only read; lastUsedAtMs and refreshed connect metadata are kept in memory
// and written at most once per Options.FlushInterval (and on Close).
//
// Departures from OpenClaw [A], all toward refusing: a role-upgrade is never
// approved silently (attack row B3), nor is a request from a different key
// for a known deviceId (B4); rotating a revoked token needs admin; a caller
// without a device identity needs admin for remove/rotate/revoke.
package pairing
