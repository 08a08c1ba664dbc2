package fake

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/state/record"
	sigtests "go.mau.fi/libsignal/tests"
	"go.mau.fi/libsignal/util/keyhelper"
	"go.mau.fi/libsignal/util/optional"
	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
)

var serializer = serialize.NewProtoBufSerializer()

// Peer is a simulated WhatsApp user with its own Signal identity and
// in-memory libsignal stores: it encrypts what it sends to the device and
// decrypts what the device sends it, so a test checks the real end-to-end
// encryption of both directions.
type Peer struct {
	Phone string // digits, no "+"
	Name  string

	mu       sync.Mutex
	ident    *identity.KeyPair
	regID    uint32
	signed   *record.SignedPreKey
	prekeys  []*record.PreKey
	sessions *sigtests.InMemorySession
	prekeyS  *sigtests.InMemoryPreKey
	signedS  *sigtests.InMemorySignedPreKey
	idents   *sigtests.InMemoryIdentityKey
	addr     *protocol.SignalAddress // the device's address, one pointer (the stores key by it)
	cipher   *session.Cipher
	builder  *session.Builder
	started  bool // a session with the device exists
}

// Peer returns the peer with that phone number, creating it.
func (s *Server) Peer(phone, name string) *Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.peers[phone]; p != nil {
		return p
	}
	p := &Peer{Phone: phone, Name: name}
	p.ident, _ = keyhelper.GenerateIdentityKeyPair()
	p.regID = keyhelper.GenerateRegistrationID()
	p.signed, _ = keyhelper.GenerateSignedPreKey(p.ident, 1, serializer.SignedPreKeyRecord)
	p.prekeys, _ = keyhelper.GeneratePreKeys(1, 20, serializer.PreKeyRecord)
	p.reset()
	s.peers[phone] = p
	return p
}

// reset forgets the session with the device (a new device was linked).
func (p *Peer) reset() {
	p.sessions = sigtests.NewInMemorySession(serializer)
	p.prekeyS = sigtests.NewInMemoryPreKey()
	p.signedS = sigtests.NewInMemorySignedPreKey()
	p.idents = sigtests.NewInMemoryIdentityKey(p.ident, p.regID)
	ctx := context.Background()
	for _, k := range p.prekeys {
		_ = p.prekeyS.StorePreKey(ctx, k.ID().Value, k)
	}
	_ = p.signedS.StoreSignedPreKey(ctx, p.signed.ID(), p.signed)
	p.addr = nil
	p.cipher, p.builder, p.started = nil, nil, false
}

func (p *Peer) ensureCipher(dev types.JID) {
	if p.addr == nil {
		p.addr = dev.SignalAddress()
		p.builder = session.NewBuilder(p.sessions, p.prekeyS, p.signedS, p.idents, p.addr, serializer)
		p.cipher = session.NewCipher(p.builder, p.addr)
	}
}

// encrypt builds the device's bundle from the prekeys it uploaded (the
// first time) and encrypts a text message, padded as WhatsApp pads.
func (p *Peer) encrypt(s *Server, text string) (encType string, ct []byte, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx := context.Background()
	p.ensureCipher(s.jid)
	if !p.started {
		bundle, err := s.deviceBundle()
		if err != nil {
			return "", nil, err
		}
		if err := p.builder.ProcessBundle(ctx, bundle); err != nil {
			return "", nil, fmt.Errorf("fake: process the device's bundle: %w", err)
		}
		p.started = true
	}
	plain, err := proto.Marshal(&waE2E.Message{Conversation: proto.String(text)})
	if err != nil {
		return "", nil, err
	}
	msg, err := p.cipher.Encrypt(ctx, padMessage(plain))
	if err != nil {
		return "", nil, err
	}
	encType = "msg"
	if msg.Type() == protocol.PREKEY_TYPE {
		encType = "pkmsg"
	}
	return encType, msg.Serialize(), nil
}

// deviceBundle hands out one uploaded one-time prekey with the signed
// prekey, as a prekey fetch would.
func (s *Server) deviceBundle() (*prekey.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.linked
	if d == nil || d.signed == nil || len(d.prekeys) == 0 {
		return nil, errors.New("fake: the device has no prekeys uploaded")
	}
	pk := d.prekeys[0]
	d.prekeys = d.prekeys[1:]
	return prekey.NewBundle(d.regID, uint32(s.jid.Device), optional.NewOptionalUint32(pk.KeyID), d.signed.KeyID,
		ecc.NewDjbECPublicKey(*pk.Pub), ecc.NewDjbECPublicKey(*d.signed.Pub), *d.signed.Signature,
		identity.NewKey(ecc.NewDjbECPublicKey(d.identity))), nil
}

// decrypt opens one <enc> the device addressed to this peer and returns
// the message text.
func (p *Peer) decrypt(dev types.JID, encType string, data []byte) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx := context.Background()
	p.ensureCipher(dev)
	var plain []byte
	var err error
	switch encType {
	case "msg":
		var m *protocol.SignalMessage
		if m, err = protocol.NewSignalMessageFromBytes(data, serializer.SignalMessage); err == nil {
			plain, err = p.cipher.Decrypt(ctx, m)
		}
	case "pkmsg":
		var m *protocol.PreKeySignalMessage
		if m, err = protocol.NewPreKeySignalMessageFromBytes(data, serializer.PreKeySignalMessage, serializer.SignalMessage); err == nil {
			plain, err = p.cipher.DecryptMessage(ctx, m)
		}
	default:
		err = fmt.Errorf("unknown enc type %q", encType)
	}
	if err != nil {
		return "", err
	}
	p.started = true
	if plain, err = unpad(plain); err != nil {
		return "", err
	}
	var msg waE2E.Message
	if err := proto.Unmarshal(plain, &msg); err != nil {
		return "", err
	}
	if t := msg.GetConversation(); t != "" {
		return t, nil
	}
	return msg.GetExtendedTextMessage().GetText(), nil
}

// bundleNode is this peer's answer to a prekey fetch.
func (p *Peer) bundleNode(jid types.JID) waBinary.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	var reg [4]byte
	binary.BigEndian.PutUint32(reg[:], p.regID)
	id3 := func(id uint32) []byte { return []byte{byte(id >> 16), byte(id >> 8), byte(id)} }
	spk := p.signed.KeyPair().PublicKey().PublicKey()
	sig := p.signed.Signature()
	nodes := []waBinary.Node{
		{Tag: "registration", Content: reg[:]},
		{Tag: "type", Content: []byte{ecc.DjbType}},
		{Tag: "identity", Content: pub(p.ident.PublicKey().PublicKey())},
		{Tag: "skey", Content: []waBinary.Node{{Tag: "id", Content: id3(p.signed.ID())},
			{Tag: "value", Content: spk[:]}, {Tag: "signature", Content: sig[:]}}},
	}
	if len(p.prekeys) > 0 {
		k := p.prekeys[0]
		p.prekeys = p.prekeys[1:]
		kp := k.KeyPair().PublicKey().PublicKey()
		nodes = append(nodes, waBinary.Node{Tag: "key", Content: []waBinary.Node{{Tag: "id", Content: id3(k.ID().Value)},
			{Tag: "value", Content: kp[:]}}})
	}
	return waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid}, Content: nodes}
}

func pub(k ecc.ECPublicKeyable) []byte {
	b := k.PublicKey()
	return b[:]
}

// padMessage appends 1-15 bytes, each holding the count, as whatsmeow does.
func padMessage(b []byte) []byte {
	var r [1]byte
	_, _ = rand.Read(r[:])
	n := r[0] & 0xf
	if n == 0 {
		n = 0xf
	}
	for range n {
		b = append(b, n)
	}
	return b
}

func unpad(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty plaintext")
	}
	n := int(b[len(b)-1])
	if n == 0 || n > len(b) {
		return nil, errors.New("bad padding")
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, errors.New("bad padding")
		}
	}
	return b[:len(b)-n], nil
}
