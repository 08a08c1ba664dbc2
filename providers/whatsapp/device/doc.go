// Package device is one linked WhatsApp device ("WhatsApp Web"
// companion) driven by go.mau.fi/whatsmeow, the only package that imports
// that library and the pure-Go SQLite driver its session store runs on. It
// runs in the clawgate-whatsapp process (cmd/clawgate-whatsapp), never in
// the gateway, whose side is package whatsapp.
//
// The session (Signal identity, prekeys, sessions with peers) lives in one
// SQLite file in the state directory: directory 0700, file 0600. A lock
// file beside it is held for the life of the process (taken by the
// gateway, which passes it on: Config.Lock), so a second gateway on the
// host cannot open the same session; it fails with a clear error naming
// the holder instead of fighting the first for the connection.
//
// Linking is by QR code. The provider exposes the rotating QR payloads
// (StartLogin, WaitLogin) so the CLI can draw them in a terminal and the
// gateway can hand them to an admin client (web.login.start/wait). A
// device that is not linked, or that the phone unlinked, is reported as
// "needs re-link" in the account's status, never only in a log line.
//
// whatsmeow calls event handlers synchronously from its connection loop,
// so the handler here never blocks: it puts messages on a bounded queue
// and refuses (leaving the message unacknowledged, for WhatsApp to
// redeliver) when the queue is full. Senders are identified by phone
// number in E.164 form ("+15551234567"); a sender that arrives as a LID
// ("…@lid") is resolved through whatsmeow's LID map, and one that cannot
// be resolved keeps its LID as its id, so it matches no phone-number
// allowlist entry and is dropped (fail closed), with the LID logged.
//
// Reconnects belong to the providers.Supervisor: whatsmeow's own
// auto-reconnect is off, Run returns on a lost connection and is restarted
// with exponential backoff.
package device
