package client

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/clawgate/clawgate/authn"
)

// Identity is a device key pair and its OpenClaw device id.
type Identity struct {
	Private  ed25519.PrivateKey
	Public   ed25519.PublicKey
	DeviceID string
}

// NewIdentity creates a fresh device identity.
func NewIdentity() (*Identity, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("client.NewIdentity: %w", err)
	}
	return &Identity{Private: priv, Public: pub, DeviceID: authn.DeviceID(pub)}, nil
}

// IdentityFromSeed derives an identity from a 32-byte seed.
func IdentityFromSeed(seed []byte) (*Identity, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("client.IdentityFromSeed: seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	return &Identity{Private: priv, Public: pub, DeviceID: authn.DeviceID(pub)}, nil
}

// PublicKey returns the public key in its wire form (base64url, no padding).
func (id *Identity) PublicKey() string { return authn.EncodePublicKey(id.Public) }

// String never prints key material.
func (id *Identity) String() string { return "device " + id.DeviceID[:12] }

type identityFile struct {
	Version     int               `json:"version"`
	DeviceID    string            `json:"deviceId"`
	PublicKey   string            `json:"publicKey"`
	Seed        string            `json:"seed"`
	DeviceToken map[string]string `json:"deviceTokens,omitempty"` // role → token, per gateway URL key
}

// IdentityStore keeps a device identity and the device tokens gateways
// issued to it in one 0600 JSON file.
type IdentityStore struct {
	path string
	file identityFile
	id   *Identity
}

// OpenIdentity loads the identity at path, creating it (and its 0700
// directory) on first use.
func OpenIdentity(path string) (*IdentityStore, error) {
	s := &IdentityStore{path: path}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		id, err := NewIdentity()
		if err != nil {
			return nil, err
		}
		s.id = id
		s.file = identityFile{Version: 1, DeviceID: id.DeviceID, PublicKey: id.PublicKey(),
			Seed: base64.RawURLEncoding.EncodeToString(id.Private.Seed())}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("client.OpenIdentity: %w", err)
		}
		return s, s.save()
	case err != nil:
		return nil, fmt.Errorf("client.OpenIdentity: %w", err)
	}
	st, err := os.Stat(path)
	if err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("client.OpenIdentity: %s has mode %04o; it holds a private key (fix with: chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	if err := json.Unmarshal(data, &s.file); err != nil {
		return nil, fmt.Errorf("client.OpenIdentity %s: %w", path, err)
	}
	seed, err := base64.RawURLEncoding.DecodeString(s.file.Seed)
	if err != nil {
		return nil, fmt.Errorf("client.OpenIdentity %s: bad seed: %w", path, err)
	}
	if s.id, err = IdentityFromSeed(seed); err != nil {
		return nil, err
	}
	if s.id.DeviceID != s.file.DeviceID {
		return nil, fmt.Errorf("client.OpenIdentity %s: device id does not match the key", path)
	}
	return s, nil
}

// Identity returns the device identity.
func (s *IdentityStore) Identity() *Identity { return s.id }

// DeviceToken returns the stored device token for a gateway and role.
func (s *IdentityStore) DeviceToken(gateway, role string) string {
	return s.file.DeviceToken[gateway+"|"+role]
}

// SetDeviceToken stores (or with "" forgets) a device token and saves.
func (s *IdentityStore) SetDeviceToken(gateway, role, token string) error {
	if s.file.DeviceToken == nil {
		s.file.DeviceToken = map[string]string{}
	}
	if token == "" {
		delete(s.file.DeviceToken, gateway+"|"+role)
	} else {
		s.file.DeviceToken[gateway+"|"+role] = token
	}
	return s.save()
}

func (s *IdentityStore) save() error {
	data, err := json.MarshalIndent(s.file, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("client: save identity: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("client: save identity: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("client: save identity: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("client: save identity: %w", err)
	}
	return os.Rename(tmp, s.path)
}
