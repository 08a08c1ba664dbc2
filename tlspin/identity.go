package tlspin

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Pair is a loaded certificate and private key.
type Pair struct {
	Certificate tls.Certificate   // ready for tls.Config.Certificates
	Leaf        *x509.Certificate // parsed leaf (also Certificate.Leaf)
}

// CertFingerprint is the pair's KindCert fingerprint.
func (p *Pair) CertFingerprint() Fingerprint { return CertFingerprint(p.Leaf) }

// SPKIFingerprint is the pair's KindSPKI fingerprint.
func (p *Pair) SPKIFingerprint() Fingerprint { return SPKIFingerprint(p.Leaf) }

// KeyType is the algorithm of a generated key.
type KeyType int

// Key types. The zero value is ECDSA P-256, which every TLS client
// (OpenClaw's Node included) accepts.
const (
	KeyECDSAP256 KeyType = iota
	KeyEd25519
)

// Options shape a generated certificate.
type Options struct {
	// Hosts are the DNS names and IP literals the certificate names
	// (subjectAltName). Default: localhost, 127.0.0.1 and ::1.
	Hosts []string
	// CommonName defaults to "clawgate-gateway".
	CommonName string
	// Validity defaults to 3650 days, as OpenClaw's own certificate.
	Validity time.Duration
	// Key is the algorithm of a new key.
	Key KeyType
	// Now is the clock for NotBefore/NotAfter; default time.Now.
	Now func() time.Time
}

// DefaultValidity is how long a generated certificate is valid.
const DefaultValidity = 3650 * 24 * time.Hour

func (o *Options) defaults() {
	if len(o.Hosts) == 0 {
		o.Hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	if o.CommonName == "" {
		o.CommonName = "clawgate-gateway"
	}
	if o.Validity == 0 {
		o.Validity = DefaultValidity
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// KeyPermissionError reports a private key file that group or others can
// access. Its message says how to fix it.
type KeyPermissionError struct {
	Path string
	Mode fs.FileMode
}

func (e *KeyPermissionError) Error() string {
	return fmt.Sprintf("tlspin: TLS private key %s has mode %04o; it must not be readable by group or others (fix with: chmod 600 %s)",
		e.Path, e.Mode.Perm(), e.Path)
}

// CheckKeyFile returns a *KeyPermissionError when path is accessible to
// group or others.
func CheckKeyFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("tlspin: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("tlspin: TLS private key %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return &KeyPermissionError{Path: path, Mode: st.Mode()}
	}
	return nil
}

// Load reads a PEM certificate (chain, leaf first) and private key. The
// key file must not be accessible to group or others.
func Load(certFile, keyFile string) (*Pair, error) {
	if err := CheckKeyFile(keyFile); err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlspin.Load: %w", err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tlspin.Load: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error names no key material.
		return nil, fmt.Errorf("tlspin.Load %s, %s: %w", certFile, keyFile, err)
	}
	leaf := c.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tlspin.Load %s: %w", certFile, err)
		}
		c.Leaf = leaf
	}
	return &Pair{Certificate: c, Leaf: leaf}, nil
}

// LoadOrCreate loads the pair, or creates it when neither file exists.
// created reports a new pair. One file without the other is an error: a
// lost key is never silently replaced.
func LoadOrCreate(certFile, keyFile string, o Options) (p *Pair, created bool, err error) {
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		p, err = Create(certFile, keyFile, o)
		return p, err == nil, err
	case errors.Is(keyErr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("tlspin: certificate %s exists but its key %s does not (re-issue both with a new key, e.g. clawgate tls rotate --new-key)", certFile, keyFile)
	case errors.Is(certErr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("tlspin: key %s exists but its certificate %s does not (re-issue it with the same key, e.g. clawgate tls rotate)", keyFile, certFile)
	}
	p, err = Load(certFile, keyFile)
	return p, false, err
}

// Create generates a new key and a self-signed certificate and writes both
// (key 0600, certificate 0644), each atomically, replacing existing files.
func Create(certFile, keyFile string, o Options) (*Pair, error) {
	o.defaults()
	key, err := newKey(o.Key)
	if err != nil {
		return nil, err
	}
	if err := writeKey(keyFile, key); err != nil {
		return nil, err
	}
	return issue(certFile, keyFile, key, o)
}

// RotateMode says whether Rotate keeps the key.
type RotateMode int

// Rotate modes.
const (
	// KeepKey re-issues the certificate with the existing key: KindCert
	// pins break, KindSPKI pins keep working.
	KeepKey RotateMode = iota
	// NewKey generates a new key: every pin breaks.
	NewKey
)

// Rotate re-issues the certificate at certFile with a new serial number
// and validity. Unless o.Hosts or o.CommonName are set, the names of the
// existing certificate are kept. With KeepKey the existing key (which must
// be private) signs the new certificate; with NewKey a new key replaces it
// first. If the certificate cannot be read, Rotate issues a fresh one.
func Rotate(certFile, keyFile string, mode RotateMode, o Options) (*Pair, error) {
	if old, err := ReadCertificate(certFile); err == nil {
		if len(o.Hosts) == 0 {
			o.Hosts = hostsOf(old)
		}
		if o.CommonName == "" {
			o.CommonName = old.Subject.CommonName
		}
	}
	o.defaults()
	var key crypto.Signer
	if mode == NewKey {
		k, err := newKey(o.Key)
		if err != nil {
			return nil, err
		}
		if err := writeKey(keyFile, k); err != nil {
			return nil, err
		}
		key = k
	} else {
		k, err := readKey(keyFile)
		if err != nil {
			return nil, err
		}
		key = k
	}
	return issue(certFile, keyFile, key, o)
}

func newKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("tlspin: unknown key type %d", t)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("tlspin: %w", err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func readKey(path string) (crypto.Signer, error) {
	if err := CheckKeyFile(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlspin: %w", err)
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("tlspin: %s holds no PEM private key", path)
		}
		var k any
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tlspin: %s: %w", path, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("tlspin: %s: unsupported key type %T", path, k)
		}
		return s, nil
	}
}

// ReadCertificate reads the first PEM certificate in path (the leaf of a
// chain). It needs no key: fingerprints are public.
func ReadCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlspin: %w", err)
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("tlspin: %s holds no PEM certificate", path)
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("tlspin: %s: %w", path, err)
			}
			return c, nil
		}
	}
}

func hostsOf(c *x509.Certificate) []string {
	var hosts []string
	hosts = append(hosts, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return hosts
}

// issue self-signs a certificate for key and writes it to certFile, then
// loads the pair back from disk, so what is returned is what a restart
// would serve.
func issue(certFile, keyFile string, key crypto.Signer, o Options) (*Pair, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlspin: %w", err)
	}
	now := o.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.CommonName},
		NotBefore:             now.Add(-time.Hour), // tolerate small clock skew
		NotAfter:              now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range o.Hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("tlspin: create certificate: %w", err)
	}
	if err := writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return Load(certFile, keyFile)
}

// writeFileAtomic writes data to a temporary file created with mode 0600
// in path's directory, sets perm, syncs, and renames it over path; a reader
// sees the old file or the new one, never a partial one, and a key is never
// on disk with a wider mode, not even briefly.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tlspin: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("tlspin: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("tlspin: %w", err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("tlspin: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("tlspin: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("tlspin: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("tlspin: %w", err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
