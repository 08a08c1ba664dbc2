// Package fake is a local Slack for tests: the Web API over HTTP
// (apps.connections.open, auth.test, chat.postMessage, chat.update; the
// token from Authorization: Bearer or the form body) and Socket Mode over a
// WebSocket (PING frames, hello, events_api envelopes shaped like Slack's
// documentation, envelope acks, redelivery of unacknowledged envelopes on
// the next connection, disconnect frames). It imports no Slack SDK, so it
// checks a client against the protocol rather than against itself.
package fake
