package device

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"time"

	"go.mau.fi/whatsmeow"
)

// UseTestServer points this process at a loopback stand-in for WhatsApp
// (package fake): whatsmeow trusts rootKey for the Noise certificates, and
// the returned client (for Config.HTTPClient) dials addr whatever host a
// URL names, trusting only cert (DER). For tests only: clawgate-whatsapp
// calls it when its gateway passes a whatsapp.TestEndpoint, which only
// tests set.
func UseTestServer(addr string, cert []byte, rootKey [32]byte) *http.Client {
	whatsmeow.WACertPubKey = rootKey
	return testServerClient(addr, cert)
}

// testServerClient dials addr whatever host a URL names
// (wss://web.whatsapp.com/ws/chat included) and trusts only cert (DER).
func testServerClient(addr string, cert []byte) *http.Client {
	pool := x509.NewCertPool()
	if c, err := x509.ParseCertificate(cert); err == nil {
		pool.AddCert(c)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "example.com", MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 5 * time.Second,
		DisableKeepAlives:   true,
	}
	return &http.Client{Transport: tr}
}
