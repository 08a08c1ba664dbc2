// Package fake is a loopback stand-in for WhatsApp's web socket, for tests
// of the WhatsApp provider. It speaks the real wire protocol that
// whatsmeow speaks, using whatsmeow's own codecs: the
// Noise_XX_25519_AESGCM_SHA256 handshake (its server certificate chain is
// signed by a root key the test installs as whatsmeow.WACertPubKey), WA
// binary XML nodes, QR linking (pair-device refs, then a pair-success
// signed with the account key and the QR's adv secret), login, prekey
// upload, and Signal-encrypted one-to-one messages to and from simulated
// peers, whose own libsignal sessions decrypt the device's replies.
//
// It covers the happy path of one-to-one text and the connection events a
// gateway must handle (drop, device removed, stream replaced, temporary
// ban). Groups, media, app-state sync and retries are out of scope; the
// provider's unit tests cover those event types through whatsmeow's
// dispatcher instead.
package fake
