package tlspin

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func pairFiles(t *testing.T) (cert, key string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	return filepath.Join(dir, "gateway.crt"), filepath.Join(dir, "gateway.key")
}

func TestCreateWritesPrivateKeyAtomically(t *testing.T) {
	for _, kt := range []KeyType{KeyECDSAP256, KeyEd25519} {
		certFile, keyFile := pairFiles(t)
		p, created, err := LoadOrCreate(certFile, keyFile, Options{Key: kt})
		if err != nil || !created {
			t.Fatalf("LoadOrCreate: created=%v err=%v", created, err)
		}
		st, err := os.Stat(keyFile)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key mode %v (%v), want 0600", st.Mode(), err)
		}
		ents, _ := os.ReadDir(filepath.Dir(keyFile))
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("temporary file left behind: %s", e.Name())
			}
		}
		if p.Leaf.NotAfter.Sub(p.Leaf.NotBefore) < DefaultValidity {
			t.Errorf("validity %v", p.Leaf.NotAfter.Sub(p.Leaf.NotBefore))
		}
		if len(p.Leaf.IPAddresses) != 2 || len(p.Leaf.DNSNames) != 1 || p.Leaf.DNSNames[0] != "localhost" {
			t.Errorf("SANs %v %v", p.Leaf.DNSNames, p.Leaf.IPAddresses)
		}
		// A second call loads the same pair.
		p2, created, err := LoadOrCreate(certFile, keyFile, Options{})
		if err != nil || created || p2.CertFingerprint() != p.CertFingerprint() {
			t.Fatalf("reload: created=%v err=%v", created, err)
		}
	}
}

func TestLoadRefusesReadableKey(t *testing.T) {
	certFile, keyFile := pairFiles(t)
	if _, err := Create(certFile, keyFile, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		if err := os.Chmod(keyFile, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Load(certFile, keyFile)
		var pe *KeyPermissionError
		if !errors.As(err, &pe) {
			t.Fatalf("mode %04o: err = %v, want *KeyPermissionError", mode, err)
		}
		if !strings.Contains(err.Error(), "chmod 600 "+keyFile) {
			t.Errorf("message lacks the fix: %v", err)
		}
		if _, err := Rotate(certFile, keyFile, KeepKey, Options{}); !errors.As(err, &pe) {
			t.Errorf("Rotate with a readable key: %v", err)
		}
	}
	os.Chmod(keyFile, 0o600)
	if _, err := Load(certFile, keyFile); err != nil {
		t.Fatalf("0600 key refused: %v", err)
	}
}

func TestLoadOrCreateNeverReplacesALostHalf(t *testing.T) {
	certFile, keyFile := pairFiles(t)
	if _, err := Create(certFile, keyFile, Options{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(keyFile)
	if _, _, err := LoadOrCreate(certFile, keyFile, Options{}); err == nil || !strings.Contains(err.Error(), "rotate --new-key") {
		t.Fatalf("cert without key: %v", err)
	}
	certFile, keyFile = pairFiles(t)
	if _, err := Create(certFile, keyFile, Options{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(certFile)
	if _, _, err := LoadOrCreate(certFile, keyFile, Options{}); err == nil || !strings.Contains(err.Error(), "tls rotate") {
		t.Fatalf("key without cert: %v", err)
	}
}

func TestLoadUserPair(t *testing.T) {
	// A user pair in the traditional "EC PRIVATE KEY" form with a chain.
	certFile, keyFile := pairFiles(t)
	p, err := Create(certFile, keyFile, Options{Hosts: []string{"gw.example"}})
	if err != nil {
		t.Fatal(err)
	}
	k, err := readKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	userKey := filepath.Join(t.TempDir(), "user.key")
	os.WriteFile(userKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ec}), 0o600)
	got, err := Load(certFile, userKey)
	if err != nil {
		t.Fatal(err)
	}
	if got.SPKIFingerprint() != p.SPKIFingerprint() || got.Leaf.DNSNames[0] != "gw.example" {
		t.Fatalf("user pair: %v %v", got.SPKIFingerprint(), got.Leaf.DNSNames)
	}
	// A key that does not belong to the certificate is refused.
	other, otherKey := pairFiles(t)
	if _, err := Create(other, otherKey, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(certFile, otherKey); err == nil {
		t.Fatal("mismatched pair loaded")
	}
}

func TestRotate(t *testing.T) {
	certFile, keyFile := pairFiles(t)
	p0, err := Create(certFile, keyFile, Options{Hosts: []string{"gw.example", "192.0.2.7"}, CommonName: "my-gw"})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := Rotate(certFile, keyFile, KeepKey, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p1.SPKIFingerprint() != p0.SPKIFingerprint() {
		t.Error("KeepKey changed the SPKI fingerprint")
	}
	if p1.CertFingerprint() == p0.CertFingerprint() || p1.Leaf.SerialNumber.Cmp(p0.Leaf.SerialNumber) == 0 {
		t.Error("KeepKey did not re-issue the certificate")
	}
	if p1.Leaf.Subject.CommonName != "my-gw" || p1.Leaf.DNSNames[0] != "gw.example" || !p1.Leaf.IPAddresses[0].Equal(p0.Leaf.IPAddresses[0]) {
		t.Errorf("names not kept: %v %v %v", p1.Leaf.Subject.CommonName, p1.Leaf.DNSNames, p1.Leaf.IPAddresses)
	}
	p2, err := Rotate(certFile, keyFile, NewKey, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p2.SPKIFingerprint() == p1.SPKIFingerprint() || p2.CertFingerprint() == p1.CertFingerprint() {
		t.Error("NewKey kept a fingerprint")
	}
	st, _ := os.Stat(keyFile)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("rotated key mode %v", st.Mode())
	}
	// What Rotate returned is what is on disk.
	disk, err := Load(certFile, keyFile)
	if err != nil || disk.CertFingerprint() != p2.CertFingerprint() {
		t.Fatalf("disk pair differs: %v", err)
	}
}

func TestParsePin(t *testing.T) {
	certFile, keyFile := pairFiles(t)
	p, err := Create(certFile, keyFile, Options{})
	if err != nil {
		t.Fatal(err)
	}
	hex := p.CertFingerprint().Hex()
	upperColons := strings.ToUpper(colons(hex))
	good := []struct {
		in   string
		want Fingerprint
	}{
		{hex, p.CertFingerprint()},
		{strings.ToUpper(hex), p.CertFingerprint()},
		{"sha256:" + hex, p.CertFingerprint()},
		{"SHA256:" + upperColons, p.CertFingerprint()}, // Node fingerprint256 with the prefix
		{upperColons, p.CertFingerprint()},
		{"sha-256:" + hex, p.CertFingerprint()},
		{"  " + hex[:32] + " " + hex[32:] + "\n", p.CertFingerprint()},
		{p.CertFingerprint().String(), p.CertFingerprint()},
		{p.SPKIFingerprint().String(), p.SPKIFingerprint()},
		{"SPKI-SHA256:" + strings.ToUpper(colons(p.SPKIFingerprint().Hex())), p.SPKIFingerprint()},
		{"spki:" + p.SPKIFingerprint().Hex(), p.SPKIFingerprint()},
	}
	for _, tc := range good {
		got, err := ParsePin(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParsePin(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		var u Fingerprint
		if err := u.UnmarshalText([]byte(got.String())); err != nil || u != got {
			t.Errorf("round trip of %v: %v %v", got, u, err)
		}
	}
	bad := []string{"", "sha256:", hex[:62], hex + "00", "sha1:" + hex, "md5:" + hex, hex[:63] + "g", "sha256:sha256:" + hex, "spki-" + hex}
	for _, in := range bad {
		if _, err := ParsePin(in); !errors.Is(err, ErrBadPin) {
			t.Errorf("ParsePin(%q) = %v, want ErrBadPin", in, err)
		}
	}
	pins, err := ParsePins(p.CertFingerprint().String() + ", " + p.SPKIFingerprint().String() + ",")
	if err != nil || len(pins) != 2 || pins[1] != p.SPKIFingerprint() {
		t.Fatalf("ParsePins: %v %v", pins, err)
	}
}

func colons(hex string) string {
	var b strings.Builder
	for i := 0; i < len(hex); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(hex[i : i+2])
	}
	return b.String()
}

// countingListener wraps accepted (TLS) connections and counts the
// application bytes the server reads after the handshake.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
	appBytes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	return &countingConn{Conn: c, n: &l.appBytes}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// echoServer serves p over TLS on loopback: it reads a line and echoes it.
func echoServer(t *testing.T, cfg *tls.Config) (*countingListener, string) {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{Listener: tls.NewListener(tcp, cfg)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				_, _ = c.Write(buf[:n])
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l, tcp.Addr().String()
}

// exchange dials addr with cfg, writes a message, and reads it back.
func exchange(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		return tls.ConnectionState{}, err
	}
	buf := make([]byte, 64)
	if _, err := io.ReadAtLeast(c, buf, 1); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

// waitAccepted waits until the server has accepted n connections and let
// their handlers finish reading.
func waitAccepted(t *testing.T, l *countingListener, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.accepted.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("server accepted %d connections, want %d", l.accepted.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPinnedHandshake(t *testing.T) {
	certFile, keyFile := pairFiles(t)
	p, err := Create(certFile, keyFile, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, addr := echoServer(t, ServerConfig(p))

	for _, pin := range []Fingerprint{p.CertFingerprint(), p.SPKIFingerprint()} {
		cs, err := exchange(addr, ClientConfig(ClientOptions{Pins: []Fingerprint{pin}}))
		if err != nil {
			t.Fatalf("pin %v: %v", pin, err)
		}
		if cs.Version != tls.VersionTLS13 {
			t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(cs.Version))
		}
	}
	before := l.appBytes.Load()
	acceptedBefore := l.accepted.Load()

	// A wrong pin fails inside the handshake: the server reads not one
	// application byte.
	other, otherKey := pairFiles(t)
	q, err := Create(other, otherKey, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = exchange(addr, ClientConfig(ClientOptions{Pins: []Fingerprint{q.CertFingerprint(), q.SPKIFingerprint()}}))
	var pm *PinMismatchError
	if !errors.Is(err, ErrCertificateChanged) || !errors.As(err, &pm) {
		t.Fatalf("wrong pin: %v, want ErrCertificateChanged", err)
	}
	if errors.Is(err, ErrUnknownCertificate) {
		t.Error("a changed certificate also matched ErrUnknownCertificate")
	}
	if pm.Presented.Cert != p.CertFingerprint() || pm.Presented.SPKI != p.SPKIFingerprint() {
		t.Errorf("presented %v, want %v", pm.Presented, p.CertFingerprint())
	}
	for _, want := range []string{"TLS pin mismatch", "certificate changed", p.CertFingerprint().String(), q.CertFingerprint().String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	waitAccepted(t, l, acceptedBefore+1)
	time.Sleep(50 * time.Millisecond) // let the handler's Read return
	if got := l.appBytes.Load() - before; got != 0 {
		t.Fatalf("server read %d application bytes from a client whose pin failed", got)
	}
}

func TestUnpinnedVerification(t *testing.T) {
	now := time.Now()
	certFile, keyFile := pairFiles(t)
	p, err := Create(certFile, keyFile, Options{Hosts: []string{"gw.example"}})
	if err != nil {
		t.Fatal(err)
	}
	_, addr := echoServer(t, ServerConfig(p))
	roots := x509.NewCertPool()
	roots.AddCert(p.Leaf)

	// Self-signed and not trusted, no pin: unknown certificate.
	_, err = exchange(addr, ClientConfig(ClientOptions{ServerName: "gw.example"}))
	err = Explain(err, nil)
	var ve *VerifyError
	if !errors.Is(err, ErrUnknownCertificate) || !errors.As(err, &ve) || ve.Presented.Cert != p.CertFingerprint() {
		t.Fatalf("untrusted self-signed: %v, want ErrUnknownCertificate with the fingerprint", err)
	}
	if !strings.Contains(err.Error(), "unknown certificate") || !strings.Contains(err.Error(), p.CertFingerprint().String()) {
		t.Errorf("message: %v", err)
	}

	// Untrusted and for another name: still unknown first of all.
	_, err = exchange(addr, ClientConfig(ClientOptions{ServerName: "other.example"}))
	if !errors.Is(Explain(err, nil), ErrUnknownCertificate) {
		t.Fatalf("untrusted, wrong name: %v, want ErrUnknownCertificate", Explain(err, nil))
	}

	// Trusted root, right name: verifies.
	if _, err := exchange(addr, ClientConfig(ClientOptions{ServerName: "gw.example", RootCAs: roots})); err != nil {
		t.Fatalf("trusted: %v", err)
	}
	// Trusted root, wrong host name: fails chain verification.
	_, err = exchange(addr, ClientConfig(ClientOptions{ServerName: "other.example", RootCAs: roots}))
	var he x509.HostnameError
	if !errors.As(Explain(err, roots), &he) || errors.Is(Explain(err, roots), ErrUnknownCertificate) {
		t.Fatalf("wrong host name: %v, want x509.HostnameError", err)
	}
	// Trusted root, expired: fails chain verification.
	later := func() time.Time { return now.Add(DefaultValidity + 48*time.Hour) }
	_, err = exchange(addr, ClientConfig(ClientOptions{ServerName: "gw.example", RootCAs: roots, Time: later}))
	var ie x509.CertificateInvalidError
	if !errors.As(Explain(err, roots), &ie) || ie.Reason != x509.Expired {
		t.Fatalf("expired: %v, want x509.CertificateInvalidError Expired", err)
	}
}

func TestServerRefusesOldTLS(t *testing.T) {
	certFile, keyFile := pairFiles(t)
	p, err := Create(certFile, keyFile, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, addr := echoServer(t, ServerConfig(p))
	cfg := ClientConfig(ClientOptions{Pins: []Fingerprint{p.CertFingerprint()}})
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := exchange(addr, cfg); err == nil {
		t.Fatal("a TLS 1.1 client connected")
	}
	cfg.MaxVersion = tls.VersionTLS12
	cs, err := exchange(addr, cfg)
	if err != nil || cs.Version != tls.VersionTLS12 {
		t.Fatalf("TLS 1.2 client: %v %v", err, tls.VersionName(cs.Version))
	}
}

func TestReissueKeepsSPKIPin(t *testing.T) {
	certFile, keyFile := pairFiles(t)
	p0, err := Create(certFile, keyFile, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := Rotate(certFile, keyFile, KeepKey, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, addr := echoServer(t, ServerConfig(p1))
	if _, err := exchange(addr, ClientConfig(ClientOptions{Pins: []Fingerprint{p0.SPKIFingerprint()}})); err != nil {
		t.Fatalf("SPKI pin after a same-key re-issue: %v", err)
	}
	if _, err := exchange(addr, ClientConfig(ClientOptions{Pins: []Fingerprint{p0.CertFingerprint()}})); !errors.Is(err, ErrCertificateChanged) {
		t.Fatalf("certificate pin after a re-issue: %v, want ErrCertificateChanged", err)
	}
}
