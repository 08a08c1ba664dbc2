// Package whatsapp is the gateway's side of the WhatsApp provider. The
// linked device itself (whatsmeow, its SQLite session store, package
// device) runs in a separate process, clawgate-whatsapp
// (cmd/clawgate-whatsapp), so the gateway never loads those libraries: its
// idle memory stays small, and a WhatsApp crash cannot take it down.
//
// Provider implements providers.Provider, Prober and LogoutProvider, plus
// QR linking (StartLogin, WaitLogin, Link, LoginStatus, WatchLogin), by
// calling the helper over an ipc connection (wire.go lists the methods).
// New takes the session lock in the gateway, so a second gateway on the
// host fails at startup naming the holder, and passes the locked file to
// each helper it starts. A Run starts a helper and stops it when it
// returns; a helper that dies ends the Run with an error, and the
// Supervisor's restart starts a new one. Inbound messages come back as
// calls that return only once the gateway's Sink.Deliver has, so the
// helper acknowledges them exactly as an in-process provider would.
//
// The package also holds what the gateway needs without whatsmeow: the
// channel's name and capabilities, sender and destination id syntax
// (ValidAllowEntry, ValidDestination), the linking states and the
// sentinel errors, which keep their identity across the ipc connection.
package whatsapp
