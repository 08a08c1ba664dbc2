package fake

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"go.mau.fi/libsignal/ecc"
	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/proto/waCert"
	"go.mau.fi/whatsmeow/proto/waWa6"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
)

// Defaults of the simulated account.
const (
	AccountPhone = "15550000001"
	AccountLID   = "100000000000001"
	DeviceID     = 7
)

// connHeader starts the client's first WebSocket message: "WA", magic 6,
// dictionary version 3.
var connHeader = []byte{'W', 'A', 6, 3}

// Sent is one outbound message the fake decrypted.
type Sent struct {
	ID     string
	ChatID string // "+<phone>" of the peer it was encrypted for
	Text   string
}

// Server is the fake. Its zero value is not usable; call New.
type Server struct {
	hs      *httptest.Server
	root    *keys.KeyPair // signs the intermediate certificate
	static  *keys.KeyPair // the server's Noise static key
	cert    []byte        // marshalled waCert.CertChain
	account *keys.KeyPair // the phone's account signing key

	// Refs is how many QR refs a pair-device carries (3).
	Refs int
	// Logf, when set, reports why the fake ended a connection.
	Logf func(format string, args ...any)

	jid, lid types.JID // the device the phone assigns when linking

	mu      sync.Mutex
	closed  bool
	conns   map[*conn]struct{}
	linked  *device
	refs    map[string]*conn // issued QR refs
	peers   map[string]*Peer // by phone digits
	sent    []Sent
	logins  int
	links   int
	nextID  int
	changed chan struct{} // closed and replaced on every state change
	wg      sync.WaitGroup
}

// device is the linked companion as the server knows it.
type device struct {
	noise    [32]byte
	identity [32]byte
	regID    uint32
	signed   *keys.PreKey
	prekeys  []*keys.PreKey // uploaded, not yet handed out
	uploaded int
}

// New starts a fake on a loopback TLS listener.
func New() (*Server, error) {
	s := &Server{
		root: keys.NewKeyPair(), static: keys.NewKeyPair(), account: keys.NewKeyPair(), Refs: 3,
		jid:   types.NewADJID(AccountPhone, 0, DeviceID),
		lid:   types.JID{User: AccountLID, Device: DeviceID, Server: types.HiddenUserServer},
		conns: map[*conn]struct{}{}, refs: map[string]*conn{}, peers: map[string]*Peer{},
		changed: make(chan struct{}),
	}
	if err := s.makeCert(); err != nil {
		return nil, err
	}
	s.hs = httptest.NewUnstartedServer(http.HandlerFunc(s.serveWS))
	s.hs.StartTLS()
	return s, nil
}

// CertPubKey is the root key a test installs as whatsmeow.WACertPubKey.
func (s *Server) CertPubKey() [32]byte { return *s.root.Pub }

// Certificate is the fake's TLS certificate (DER), for a client in
// another process (whatsapp.TestEndpoint).
func (s *Server) Certificate() []byte { return s.hs.Certificate().Raw }

// Addr is the fake's loopback address.
func (s *Server) Addr() string { return s.hs.Listener.Addr().String() }

// makeCert issues intermediate and leaf certificates, as WhatsApp's root
// does for its Noise static key.
func (s *Server) makeCert() error {
	inter := keys.NewKeyPair()
	interDetails, err := proto.Marshal(&waCert.CertChain_NoiseCertificate_Details{
		Serial: proto.Uint32(1), IssuerSerial: proto.Uint32(0), Key: inter.Pub[:],
		NotBefore: proto.Uint64(uint64(time.Now().Add(-time.Hour).Unix())),
		NotAfter:  proto.Uint64(uint64(time.Now().Add(24 * time.Hour).Unix())),
	})
	if err != nil {
		return err
	}
	leafDetails, err := proto.Marshal(&waCert.CertChain_NoiseCertificate_Details{
		Serial: proto.Uint32(2), IssuerSerial: proto.Uint32(1), Key: s.static.Pub[:],
	})
	if err != nil {
		return err
	}
	interSig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*s.root.Priv), interDetails)
	leafSig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*inter.Priv), leafDetails)
	s.cert, err = proto.Marshal(&waCert.CertChain{
		Intermediate: &waCert.CertChain_NoiseCertificate{Details: interDetails, Signature: interSig[:]},
		Leaf:         &waCert.CertChain_NoiseCertificate{Details: leafDetails, Signature: leafSig[:]},
	})
	return err
}

// notify wakes waiters; s.mu must be held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitFor polls cond under s.mu until it holds or timeout passes.
func (s *Server) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// Linked reports whether a device is linked.
func (s *Server) Linked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.linked != nil
}

// Logins is how many logins succeeded.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// WaitLogins waits until at least n logins have succeeded and the device
// has uploaded its prekeys.
func (s *Server) WaitLogins(n int, timeout time.Duration) bool {
	return s.waitFor(timeout, func() bool {
		return s.logins >= n && s.linked != nil && s.linked.uploaded > 0
	})
}

// Sent returns the outbound messages decrypted so far.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// Drop closes every connection abruptly, as a network failure would.
func (s *Server) Drop() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.ws.Close()
	}
}

// RemoveDevice unlinks the device, as "Log out" under the phone's Linked
// devices does: a logged-in connection gets the device_removed stream
// error, and later logins fail with 401.
func (s *Server) RemoveDevice() {
	s.mu.Lock()
	s.linked = nil
	conns := s.loggedInLocked()
	s.notify()
	s.mu.Unlock()
	for _, c := range conns {
		c.send(waBinary.Node{Tag: "stream:error", Attrs: waBinary.Attrs{"code": "401"},
			Content: []waBinary.Node{{Tag: "conflict", Attrs: waBinary.Attrs{"type": "device_removed"}}}})
		c.closeSoon()
	}
}

// ReplaceStream tells logged-in connections that another client took the
// session over.
func (s *Server) ReplaceStream() {
	s.mu.Lock()
	conns := s.loggedInLocked()
	s.mu.Unlock()
	for _, c := range conns {
		c.send(waBinary.Node{Tag: "stream:error",
			Content: []waBinary.Node{{Tag: "conflict", Attrs: waBinary.Attrs{"type": "replaced"}}}})
		c.closeSoon()
	}
}

func (s *Server) loggedInLocked() []*conn {
	var out []*conn
	for c := range s.conns {
		if c.loggedIn {
			out = append(out, c)
		}
	}
	return out
}

// Close stops the fake and waits for its connections. It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	was := s.closed
	s.closed = true
	s.mu.Unlock()
	if was {
		return
	}
	s.Drop()
	s.wg.Wait()
	s.hs.Close()
}

var upgrader = websocket.Upgrader{ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/ws/chat" || r.Header.Get("Origin") != "https://web.whatsapp.com" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &conn{s: s, ws: ws, done: make(chan struct{})}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		ws.Close()
		close(c.done)
		s.mu.Lock()
		delete(s.conns, c)
		for ref, rc := range s.refs {
			if rc == c {
				delete(s.refs, ref)
			}
		}
		s.notify()
		s.mu.Unlock()
	}()
	if err := c.run(); err != nil && s.Logf != nil {
		s.Logf("fake: connection ended: %v", err)
	}
}

// conn is one client connection.
type conn struct {
	s    *Server
	ws   *websocket.Conn
	done chan struct{}

	buf    []byte
	header bool // the WA header was read

	read   cipher.AEAD
	rcount uint32

	wmu    sync.Mutex
	write  cipher.AEAD
	wcount uint32

	// registration connections
	reg *waWa6.ClientPayload_DevicePairingRegistrationData
	cs  [32]byte // client's Noise static key
	adv []byte   // adv secret learned from the scanned QR
	ikp [32]byte // identity key from the scanned QR

	loggedIn bool // guarded by s.mu
}

// frame returns the next length-prefixed frame.
func (c *conn) frame() ([]byte, error) {
	for {
		if !c.header && len(c.buf) >= len(connHeader) {
			if string(c.buf[:len(connHeader)]) != string(connHeader) {
				return nil, errors.New("bad connection header")
			}
			c.buf, c.header = c.buf[len(connHeader):], true
		}
		if c.header && len(c.buf) >= 3 {
			n := int(c.buf[0])<<16 | int(c.buf[1])<<8 | int(c.buf[2])
			if len(c.buf) >= 3+n {
				f := append([]byte(nil), c.buf[3:3+n]...)
				c.buf = c.buf[3+n:]
				return f, nil
			}
		}
		typ, msg, err := c.ws.ReadMessage()
		if err != nil {
			return nil, err
		}
		if typ != websocket.BinaryMessage {
			return nil, errors.New("text frame")
		}
		c.buf = append(c.buf, msg...)
	}
}

func (c *conn) writeFrame(data []byte) error {
	out := make([]byte, 3+len(data))
	out[0], out[1], out[2] = byte(len(data)>>16), byte(len(data)>>8), byte(len(data))
	copy(out[3:], data)
	return c.ws.WriteMessage(websocket.BinaryMessage, out)
}

// send encrypts and writes one node.
func (c *conn) send(n waBinary.Node) error {
	data, err := waBinary.Marshal(n)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.write == nil {
		return errors.New("not ready")
	}
	ct := c.write.Seal(nil, iv(c.wcount), data, nil)
	c.wcount++
	return c.writeFrame(ct)
}

// closeSoon closes the socket after the client had a moment to read what
// was just sent (a real server closes right after a stream error).
func (c *conn) closeSoon() {
	go func() {
		select {
		case <-c.done:
		case <-time.After(2 * time.Second):
			c.ws.Close()
		}
	}()
}

func (c *conn) recv() (*waBinary.Node, error) {
	f, err := c.frame()
	if err != nil {
		return nil, err
	}
	pt, err := c.read.Open(nil, iv(c.rcount), f, nil)
	c.rcount++
	if err != nil {
		return nil, fmt.Errorf("decrypt frame: %w", err)
	}
	data, err := waBinary.Unpack(pt)
	if err != nil {
		return nil, err
	}
	return waBinary.Unmarshal(data)
}

// handshake runs the server side of Noise XX and returns the client's
// payload.
func (c *conn) handshake() (*waWa6.ClientPayload, error) {
	f, err := c.frame()
	if err != nil {
		return nil, err
	}
	var hello waWa6.HandshakeMessage
	if err := proto.Unmarshal(f, &hello); err != nil {
		return nil, err
	}
	ce := hello.GetClientHello().GetEphemeral()
	if len(ce) != 32 {
		return nil, errors.New("client hello without ephemeral key")
	}
	clientEph := [32]byte(ce)
	n, err := newNoise(connHeader)
	if err != nil {
		return nil, err
	}
	n.authenticate(clientEph[:])
	eph := keys.NewKeyPair()
	n.authenticate(eph.Pub[:])
	if err := n.mix(*eph.Priv, clientEph); err != nil {
		return nil, err
	}
	static := n.encrypt(c.s.static.Pub[:])
	if err := n.mix(*c.s.static.Priv, clientEph); err != nil {
		return nil, err
	}
	cert := n.encrypt(c.s.cert)
	out, err := proto.Marshal(&waWa6.HandshakeMessage{ServerHello: &waWa6.HandshakeMessage_ServerHello{
		Ephemeral: eph.Pub[:], Static: static, Payload: cert}})
	if err != nil {
		return nil, err
	}
	if err := c.writeFrame(out); err != nil {
		return nil, err
	}
	if f, err = c.frame(); err != nil {
		return nil, err
	}
	var finish waWa6.HandshakeMessage
	if err := proto.Unmarshal(f, &finish); err != nil {
		return nil, err
	}
	cs, err := n.decrypt(finish.GetClientFinish().GetStatic())
	if err != nil || len(cs) != 32 {
		return nil, errors.New("bad client static key")
	}
	c.cs = [32]byte(cs)
	if err := n.mix(*eph.Priv, c.cs); err != nil {
		return nil, err
	}
	raw, err := n.decrypt(finish.GetClientFinish().GetPayload())
	if err != nil {
		return nil, err
	}
	var payload waWa6.ClientPayload
	if err := proto.Unmarshal(raw, &payload); err != nil {
		return nil, err
	}
	read, write, err := n.transport()
	if err != nil {
		return nil, err
	}
	c.read = read
	c.wmu.Lock()
	c.write = write
	c.wmu.Unlock()
	return &payload, nil
}

func (c *conn) run() error {
	payload, err := c.handshake()
	if err != nil {
		return err
	}
	if reg := payload.GetDevicePairingData(); reg != nil {
		c.reg = reg
		if err := c.offerRefs(); err != nil {
			return err
		}
	} else if err := c.login(payload); err != nil {
		return err
	}
	for {
		n, err := c.recv()
		if err != nil {
			return err
		}
		if err := c.handle(n); err != nil {
			return err
		}
	}
}

func randomRef() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return "2@" + base64.StdEncoding.EncodeToString(b)
}

func (s *Server) id() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	return "fake-" + strconv.Itoa(s.nextID)
}

// offerRefs sends the pair-device IQ whose refs become QR codes.
func (c *conn) offerRefs() error {
	var refs []waBinary.Node
	c.s.mu.Lock()
	for range max(c.s.Refs, 1) {
		ref := randomRef()
		c.s.refs[ref] = c
		refs = append(refs, waBinary.Node{Tag: "ref", Content: []byte(ref)})
	}
	c.s.notify()
	c.s.mu.Unlock()
	return c.send(waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{"from": types.ServerJID, "type": "set",
		"id": c.s.id(), "xmlns": "md"}, Content: []waBinary.Node{{Tag: "pair-device", Content: refs}}})
}

// ScanQR plays the phone scanning a code: it checks the code against the
// connection that offered its ref and sends pair-success, signed with the
// account key and authenticated with the code's adv secret.
func (s *Server) ScanQR(code string) error {
	parts := strings.Split(code, ",")
	if len(parts) != 4 {
		return fmt.Errorf("fake: QR code has %d parts, want 4", len(parts))
	}
	noise, err1 := base64.StdEncoding.DecodeString(parts[1])
	ident, err2 := base64.StdEncoding.DecodeString(parts[2])
	adv, err3 := base64.StdEncoding.DecodeString(parts[3])
	if err := errors.Join(err1, err2, err3); err != nil || len(noise) != 32 || len(ident) != 32 || len(adv) != 32 {
		return fmt.Errorf("fake: malformed QR code")
	}
	s.mu.Lock()
	c := s.refs[parts[0]]
	s.mu.Unlock()
	if c == nil {
		return errors.New("fake: unknown or expired QR ref")
	}
	if [32]byte(noise) != c.cs {
		return errors.New("fake: QR noise key does not match the connection that offered the ref")
	}
	if string(ident) != string(c.reg.GetEIdent()) {
		return errors.New("fake: QR identity key does not match the registration payload")
	}
	c.adv, c.ikp = adv, [32]byte(ident)
	details, err := proto.Marshal(&waAdv.ADVDeviceIdentity{RawID: proto.Uint32(4242),
		Timestamp: proto.Uint64(uint64(time.Now().Unix())), KeyIndex: proto.Uint32(1)})
	if err != nil {
		return err
	}
	msg := append(append([]byte{6, 0}, details...), ident...)
	sig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*s.account.Priv), msg)
	signed, err := proto.Marshal(&waAdv.ADVSignedDeviceIdentity{Details: details,
		AccountSignatureKey: s.account.Pub[:], AccountSignature: sig[:]})
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, adv)
	mac.Write(signed)
	container, err := proto.Marshal(&waAdv.ADVSignedDeviceIdentityHMAC{Details: signed, HMAC: mac.Sum(nil)})
	if err != nil {
		return err
	}
	return c.send(waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{"from": types.ServerJID, "type": "set",
		"id": s.id(), "xmlns": "md"}, Content: []waBinary.Node{{Tag: "pair-success", Content: []waBinary.Node{
		{Tag: "device-identity", Content: container},
		{Tag: "platform", Attrs: waBinary.Attrs{"name": "android"}},
		{Tag: "device", Attrs: waBinary.Attrs{"jid": s.jid, "lid": s.lid}},
	}}}})
}

// login checks a login payload against the linked device.
func (c *conn) login(p *waWa6.ClientPayload) error {
	s := c.s
	s.mu.Lock()
	d := s.linked
	ok := d != nil && strconv.FormatUint(p.GetUsername(), 10) == s.jid.User &&
		p.GetDevice() == uint32(s.jid.Device) && d.noise == c.cs
	var stale []*conn
	if ok {
		// One connection per device: a new login replaces older ones.
		stale = s.loggedInLocked()
		for _, o := range stale {
			o.loggedIn = false
		}
		c.loggedIn = true
		s.logins++
		s.notify()
	}
	s.mu.Unlock()
	for _, o := range stale {
		o.ws.Close()
	}
	if !ok {
		c.send(waBinary.Node{Tag: "failure", Attrs: waBinary.Attrs{"reason": "401", "location": "fake"}})
		c.closeSoon()
		return nil
	}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	return c.send(waBinary.Node{Tag: "success", Attrs: waBinary.Attrs{"t": now, "props": "1",
		"creation": now, "location": "fake", "lid": s.lid}})
}

func iqResult(id string, content ...waBinary.Node) waBinary.Node {
	n := waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{"from": types.ServerJID, "type": "result", "id": id}}
	if len(content) > 0 {
		n.Content = content
	}
	return n
}

// handle answers one node from the client.
func (c *conn) handle(n *waBinary.Node) error {
	switch n.Tag {
	case "iq":
		return c.handleIQ(n)
	case "message":
		return c.handleMessage(n)
	}
	return nil // receipts, acks, presence
}

func (c *conn) handleIQ(n *waBinary.Node) error {
	ag := n.AttrGetter()
	id, typ, xmlns := ag.OptionalString("id"), ag.OptionalString("type"), ag.OptionalString("xmlns")
	if typ == "result" || typ == "error" {
		if _, ok := n.GetOptionalChildByTag("pair-device-sign"); ok {
			return c.paired(n)
		}
		return nil
	}
	switch {
	case xmlns == "encrypt" && typ == "get" && hasChild(n, "count"):
		c.s.mu.Lock()
		count := 0
		if c.s.linked != nil {
			count = len(c.s.linked.prekeys)
		}
		c.s.mu.Unlock()
		return c.send(iqResult(id, waBinary.Node{Tag: "count", Attrs: waBinary.Attrs{"value": strconv.Itoa(count)}}))
	case xmlns == "encrypt" && typ == "set":
		if err := c.s.storePrekeys(n); err != nil {
			return err
		}
		return c.send(iqResult(id))
	case xmlns == "encrypt" && typ == "get" && hasChild(n, "key"):
		return c.send(iqResult(id, c.s.bundles(n)))
	case xmlns == "usync":
		return c.send(iqResult(id, c.s.usync(n)))
	case xmlns == "md" && hasChild(n, "remove-companion-device"):
		c.s.mu.Lock()
		c.s.linked = nil
		c.s.notify()
		c.s.mu.Unlock()
		return c.send(iqResult(id))
	}
	return c.send(iqResult(id)) // keepalive, passive, props and the rest
}

func hasChild(n *waBinary.Node, tag string) bool {
	_, ok := n.GetOptionalChildByTag(tag)
	return ok
}

// paired records the device once the client confirmed pair-success, then
// asks it to reconnect and log in (stream error 515), as WhatsApp does.
func (c *conn) paired(n *waBinary.Node) error {
	sign, _ := n.GetOptionalChildByTag("pair-device-sign", "device-identity")
	raw, _ := sign.Content.([]byte)
	var di waAdv.ADVSignedDeviceIdentity
	if err := proto.Unmarshal(raw, &di); err != nil || len(di.GetDeviceSignature()) != 64 {
		return errors.New("pair-device-sign without a device signature")
	}
	msg := append(append(append([]byte{6, 1}, di.GetDetails()...), c.ikp[:]...), c.s.account.Pub[:]...)
	if !ecc.VerifySignature(ecc.NewDjbECPublicKey(c.ikp), msg, [64]byte(di.GetDeviceSignature())) {
		return errors.New("device signature does not verify")
	}
	reg := c.reg
	d := &device{noise: c.cs, identity: c.ikp, regID: binary.BigEndian.Uint32(pad4(reg.GetERegid()))}
	if len(reg.GetESkeyVal()) == 32 && len(reg.GetESkeySig()) == 64 {
		d.signed = &keys.PreKey{KeyPair: keys.KeyPair{Pub: (*[32]byte)(reg.GetESkeyVal())},
			KeyID: binary.BigEndian.Uint32(pad4(reg.GetESkeyID())), Signature: (*[64]byte)(reg.GetESkeySig())}
	}
	c.s.mu.Lock()
	c.s.linked = d
	c.s.links++
	for ref, rc := range c.s.refs {
		if rc == c {
			delete(c.s.refs, ref)
		}
	}
	for _, p := range c.s.peers {
		p.reset() // a new device: new sessions
	}
	c.s.notify()
	c.s.mu.Unlock()
	if err := c.send(waBinary.Node{Tag: "stream:error", Attrs: waBinary.Attrs{"code": "515"}}); err != nil {
		return err
	}
	c.closeSoon()
	return nil
}

func pad4(b []byte) []byte {
	if len(b) >= 4 {
		return b[len(b)-4:]
	}
	return append(make([]byte, 4-len(b)), b...)
}

// storePrekeys keeps an upload: <registration>, <identity>, <list> of
// <key>, and the <skey>.
func (s *Server) storePrekeys(n *waBinary.Node) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.linked
	if d == nil {
		return nil
	}
	if reg, ok := n.GetChildByTag("registration").Content.([]byte); ok && len(reg) == 4 {
		d.regID = binary.BigEndian.Uint32(reg)
	}
	if ident, ok := n.GetChildByTag("identity").Content.([]byte); ok && len(ident) == 32 && [32]byte(ident) != d.identity {
		return errors.New("prekey upload with a different identity key")
	}
	list := n.GetChildByTag("list")
	for _, k := range list.GetChildren() {
		pk, err := parseKey(k)
		if err != nil {
			return err
		}
		d.prekeys = append(d.prekeys, pk)
	}
	if sk, err := parseKey(n.GetChildByTag("skey")); err == nil {
		d.signed = sk
	}
	d.uploaded++
	s.notify()
	return nil
}

func parseKey(n waBinary.Node) (*keys.PreKey, error) {
	id, _ := n.GetChildByTag("id").Content.([]byte)
	val, _ := n.GetChildByTag("value").Content.([]byte)
	if len(id) != 3 || len(val) != 32 {
		return nil, errors.New("malformed prekey")
	}
	k := &keys.PreKey{KeyPair: keys.KeyPair{Pub: (*[32]byte)(val)}, KeyID: uint32(id[0])<<16 | uint32(id[1])<<8 | uint32(id[2])}
	if n.Tag == "skey" {
		sig, _ := n.GetChildByTag("signature").Content.([]byte)
		if len(sig) != 64 {
			return nil, errors.New("malformed signed prekey")
		}
		k.Signature = (*[64]byte)(sig)
	}
	return k, nil
}

// usync answers a device-list query: the account has only the linked
// device, every other user one phone (device 0).
func (s *Server) usync(n *waBinary.Node) waBinary.Node {
	var users []waBinary.Node
	list, _ := n.GetOptionalChildByTag("usync", "list")
	for _, u := range list.GetChildren() {
		jid, ok := u.Attrs["jid"].(types.JID)
		if u.Tag != "user" || !ok {
			continue
		}
		dev := "0"
		if jid.User == s.jid.User || jid.User == s.lid.User {
			dev = strconv.Itoa(int(s.jid.Device))
		}
		users = append(users, waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid.ToNonAD()},
			Content: []waBinary.Node{{Tag: "devices", Content: []waBinary.Node{{Tag: "device-list",
				Content: []waBinary.Node{{Tag: "device", Attrs: waBinary.Attrs{"id": dev}}}}}}}})
	}
	return waBinary.Node{Tag: "usync", Content: []waBinary.Node{{Tag: "list", Content: users}}}
}

// bundles answers a prekey fetch for known peers.
func (s *Server) bundles(n *waBinary.Node) waBinary.Node {
	var users []waBinary.Node
	key := n.GetChildByTag("key")
	for _, u := range key.GetChildren() {
		jid, ok := u.Attrs["jid"].(types.JID)
		if !ok {
			continue
		}
		s.mu.Lock()
		p := s.peers[jid.User]
		s.mu.Unlock()
		if p == nil || jid.Device != 0 {
			continue
		}
		users = append(users, p.bundleNode(jid))
	}
	return waBinary.Node{Tag: "list", Content: users}
}

// handleMessage decrypts an outbound message for every peer it is
// addressed to, records the text and acknowledges it.
func (c *conn) handleMessage(n *waBinary.Node) error {
	ag := n.AttrGetter()
	id := ag.OptionalString("id")
	to, _ := n.Attrs["to"].(types.JID)
	participants, _ := n.GetOptionalChildByTag("participants")
	for _, p := range participants.GetChildren() {
		jid, ok := p.Attrs["jid"].(types.JID)
		if p.Tag != "to" || !ok || jid.Device != 0 {
			continue
		}
		c.s.mu.Lock()
		peer := c.s.peers[jid.User]
		c.s.mu.Unlock()
		if peer == nil {
			continue
		}
		for _, enc := range p.GetChildrenByTag("enc") {
			data, _ := enc.Content.([]byte)
			text, err := peer.decrypt(c.s.jid, enc.AttrGetter().OptionalString("type"), data)
			if err != nil {
				return fmt.Errorf("fake: peer %s cannot decrypt %s: %w", jid.User, id, err)
			}
			c.s.mu.Lock()
			c.s.sent = append(c.s.sent, Sent{ID: id, ChatID: "+" + jid.User, Text: text})
			c.s.notify()
			c.s.mu.Unlock()
		}
	}
	return c.send(waBinary.Node{Tag: "ack", Attrs: waBinary.Attrs{"class": "message", "id": id, "from": to,
		"t": strconv.FormatInt(time.Now().Unix(), 10)}})
}

// loggedInConn returns the logged-in connection, waiting up to timeout.
func (s *Server) loggedInConn(timeout time.Duration) *conn {
	var c *conn
	s.waitFor(timeout, func() bool {
		conns := s.loggedInLocked()
		if len(conns) > 0 && s.linked != nil && s.linked.uploaded > 0 {
			c = conns[0]
			return true
		}
		return false
	})
	return c
}

// Inject makes the peer with phone number phone (digits) send text to the
// device, Signal-encrypted as WhatsApp delivers it, and returns the
// message id. It waits up to 10 s for a logged-in connection.
func (s *Server) Inject(phone, name, text string) (string, error) {
	return s.InjectFrom(types.NewJID(phone, types.DefaultUserServer), types.EmptyJID, name, text)
}

// InjectFrom sends text from any one-to-one sender JID: a LID sender
// ("<digits>@lid") is how WhatsApp addresses users who hide their number.
// A non-empty alt is sent as the sender's phone number (sender_pn).
func (s *Server) InjectFrom(from, alt types.JID, name, text string) (string, error) {
	c := s.loggedInConn(10 * time.Second)
	if c == nil {
		return "", errors.New("fake: no logged-in connection")
	}
	p := s.Peer(from.User, name)
	encType, ct, err := p.encrypt(s, text)
	if err != nil {
		return "", err
	}
	id := strings.ToUpper(strings.ReplaceAll(s.id(), "-", ""))
	attrs := waBinary.Attrs{"from": from, "id": id, "t": strconv.FormatInt(time.Now().Unix(), 10), "type": "text"}
	if name != "" {
		attrs["notify"] = name
	}
	if !alt.IsEmpty() {
		attrs["sender_pn"] = alt
	}
	err = c.send(waBinary.Node{Tag: "message", Attrs: attrs,
		Content: []waBinary.Node{{Tag: "enc", Attrs: waBinary.Attrs{"v": "2", "type": encType}, Content: ct}}})
	return id, err
}
