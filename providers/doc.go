// Package providers connects the gateway to messaging services (Telegram,
// Slack, Discord, ...) behind one small interface.
//
// A Provider is one account on one service: it says what it can do
// (Capabilities, plain data), runs its connection until its context ends
// (Run), and delivers outbound text (Send). Extra abilities — probing the
// credentials, logging out, editing a sent message — are one-method
// interfaces found by type assertion (Prober, LogoutProvider, Editor).
//
// The Supervisor owns every provider goroutine. It restarts a provider
// that returns or panics, with exponential backoff, so one crash takes
// nothing else down; it publishes each account's status as it changes; and
// it puts every inbound message through the account's Policy before anyone
// sees it: size and UTF-8 checks, dedupe by the provider's message id, and
// an allowlist matched by immutable numeric or opaque IDs (never by
// username), where an empty allowlist denies everyone. Unknown senders in
// direct chats may be offered a pairing code (at most one per sender per
// hour, a bounded number pending per account). Outbound sends are checked
// against the account's allowTo list.
//
// Each concrete provider lives in providers/<name> and is the only package
// that imports its service's SDK; package main wires them in an explicit
// list. The gateway sees only the Hub interface.
package providers
