// Package slack is the Slack provider: one app installation reached over
// Socket Mode with github.com/slack-go/slack (this package is the only
// importer of that SDK). Every envelope is acknowledged once handled, so
// Slack stops retrying it; events are keyed by their event_id, which Slack
// keeps across retries, so a replay is processed once. Text is sent with
// chat.postMessage.
//
// Socket Mode has no inbound HTTP endpoint, so there is no request
// signature to check: the WebSocket is opened by this side with the
// app-level token.
package slack
