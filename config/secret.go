package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrInsecureFile is returned for a secret file that others can read.
var ErrInsecureFile = errors.New("secret file is readable by group or others")

// maxSecretFile bounds what ReadSecret will read.
const maxSecretFile = 64 << 10

// ReadSecret reads a secret file, refusing one that group or others can
// read or write. Surrounding whitespace is trimmed.
func ReadSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("config.ReadSecret: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("config.ReadSecret: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("config.ReadSecret %s (mode %04o): %w (fix with: chmod 600 %s)", path, st.Mode().Perm(), ErrInsecureFile, path)
	}
	buf := make([]byte, maxSecretFile+1)
	n, _ := f.Read(buf)
	if n > maxSecretFile {
		return "", fmt.Errorf("config.ReadSecret %s: file larger than %d bytes", path, maxSecretFile)
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// WriteSecret writes data to path atomically with mode 0600: a new
// temporary file in the same directory (O_EXCL), write, fsync, rename, and
// fsync of the directory.
func WriteSecret(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("config.WriteSecret: %w", err)
	}
	name := tmp.Name()
	cleanup := func() { _ = os.Remove(name) }
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("config.WriteSecret: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("config.WriteSecret: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("config.WriteSecret: %w", err)
	}
	if err := tmp.Close(); err != nil {
		cleanup()
		return fmt.Errorf("config.WriteSecret: %w", err)
	}
	if err := os.Rename(name, path); err != nil {
		cleanup()
		return fmt.Errorf("config.WriteSecret: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("config.WriteSecret: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("config.WriteSecret: sync dir: %w", err)
	}
	return nil
}

// LoadOrCreateSecret reads path, or when it does not exist writes the value
// gen returns. created reports which happened.
func LoadOrCreateSecret(path string, gen func() (string, error)) (secret string, created bool, err error) {
	s, err := ReadSecret(path)
	if err == nil {
		if s == "" {
			return "", false, fmt.Errorf("config.LoadOrCreateSecret: %s is empty", path)
		}
		return s, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	s, err = gen()
	if err != nil {
		return "", false, fmt.Errorf("config.LoadOrCreateSecret: %w", err)
	}
	if err := WriteSecret(path, []byte(s+"\n")); err != nil {
		return "", false, err
	}
	return s, true, nil
}
