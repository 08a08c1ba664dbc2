// Package telegram is the Telegram provider: a bot account reached through
// the Bot API with github.com/go-telegram/bot (this package is the only
// importer of that SDK). It receives by long polling (getUpdates), or by a
// webhook whose secret header is compared in constant time before any of
// the body is read, and sends with sendMessage.
//
// Delivery is at least once: the offset that confirms updates to Telegram
// never passes the last update the gateway has taken, so a crash or a
// restart re-fetches what was not delivered, and the Supervisor's dedupe
// drops what was.
package telegram
