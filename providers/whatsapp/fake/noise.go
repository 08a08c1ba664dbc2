package fake

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"
)

// noisePattern is WhatsApp's protocol name, exactly 32 bytes, so it is
// the initial hash as is.
const noisePattern = "Noise_XX_25519_AESGCM_SHA256\x00\x00\x00\x00"

// noiseState is the server side of the handshake's symmetric state. The
// server performs the same operations as the client in the same order,
// so one cipher state serves both directions.
type noiseState struct {
	hash    []byte
	salt    []byte
	key     cipher.AEAD
	counter uint32
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func iv(n uint32) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint32(b[8:], n)
	return b
}

func newNoise(header []byte) (*noiseState, error) {
	h := []byte(noisePattern)
	key, err := gcm(h)
	if err != nil {
		return nil, err
	}
	n := &noiseState{hash: h, salt: h, key: key}
	n.authenticate(header)
	return n, nil
}

func (n *noiseState) authenticate(data []byte) {
	sum := sha256.Sum256(append(append([]byte(nil), n.hash...), data...))
	n.hash = sum[:]
}

func expand(salt, secret []byte) (write, read []byte, err error) {
	r := hkdf.New(sha256.New, secret, salt, nil)
	write, read = make([]byte, 32), make([]byte, 32)
	if _, err = io.ReadFull(r, write); err == nil {
		_, err = io.ReadFull(r, read)
	}
	return write, read, err
}

func (n *noiseState) mix(priv, pub [32]byte) error {
	secret, err := curve25519.X25519(priv[:], pub[:])
	if err != nil {
		return err
	}
	write, read, err := expand(n.salt, secret)
	if err != nil {
		return err
	}
	n.counter = 0
	n.salt = write
	n.key, err = gcm(read)
	return err
}

func (n *noiseState) encrypt(plaintext []byte) []byte {
	ct := n.key.Seal(nil, iv(n.counter), plaintext, n.hash)
	n.counter++
	n.authenticate(ct)
	return ct
}

func (n *noiseState) decrypt(ct []byte) ([]byte, error) {
	pt, err := n.key.Open(nil, iv(n.counter), ct, n.hash)
	n.counter++
	if err != nil {
		return nil, fmt.Errorf("noise decrypt: %w", err)
	}
	n.authenticate(ct)
	return pt, nil
}

// transport returns the server's read and write ciphers: the client
// writes with the first key and reads with the second.
func (n *noiseState) transport() (read, write cipher.AEAD, err error) {
	clientWrite, clientRead, err := expand(n.salt, nil)
	if err != nil {
		return nil, nil, err
	}
	if read, err = gcm(clientWrite); err != nil {
		return nil, nil, err
	}
	write, err = gcm(clientRead)
	return read, write, err
}
