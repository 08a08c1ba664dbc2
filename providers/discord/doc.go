// Package discord is the Discord provider: one bot on the gateway with
// github.com/bwmarrin/discordgo (this package is the only importer of that
// SDK), with message, direct-message and reaction intents. discordgo's
// Open has no deadline, so Open runs under OpenTimeout and a stuck
// handshake is cut at the socket. discordgo's own reconnect loop is off:
// a dropped gateway ends Run and the Supervisor reopens it after its
// backoff, resuming the session (op 6) so missed events are replayed.
// Messages, edits and reactions all carry the sender's id and guild roles,
// so the same allowlist gates all three.
package discord
