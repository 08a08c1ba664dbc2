// Package agent runs one assistant reply at a time behind a small
// interface, so the gateway can stream it to its clients.
//
// A [Backend] takes a conversation (the [Request]) and streams the reply's
// text through an emit callback until the reply is complete, its context
// ends (an abort or a timeout) or it fails. Two backends ship:
//
//   - [OpenAI]: any OpenAI-compatible streaming chat-completions endpoint
//     (Ollama, llama.cpp server, vLLM, hosted APIs): POST
//     {baseURL}/chat/completions with "stream":true, read as server-sent
//     events. The API key is sent only as a bearer header, never logged,
//     and redirects are not followed (a redirect could carry it elsewhere).
//   - [Exec]: a configured command (argv, no shell) with the prompt on
//     stdin; its stdout is the reply, streamed as it is written. A timeout
//     or an abort kills the whole process group. The child never inherits
//     the gateway's secrets from the environment (CLAWGATE_*,
//     OPENCLAW_GATEWAY_TOKEN and the configured key variables are removed).
//
// Errors are shaped for callers: [ErrTimeout] and [ErrAborted] are
// sentinels, [HTTPError] carries an upstream status, and [Kind] maps any
// error to the protocol's errorKind ("timeout", "rate_limit",
// "context_length", "refusal", "unknown"). The text of an error is safe to
// show a client: it never contains the key or the upstream's raw body
// beyond a short, trimmed message.
//
// The package imports only the standard library.
package agent
