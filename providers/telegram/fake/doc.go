// Package fake is a local Telegram Bot API server for tests: it speaks the
// real HTTP wire protocol (POST /bot<token>/<method> with multipart,
// urlencoded or JSON parameters; {"ok":...,"result":...} answers; long-poll
// getUpdates with offset confirmation) with payloads shaped like the Bot
// API documentation's examples. It imports no Telegram SDK, so it checks a
// client against the protocol rather than against itself.
package fake
