package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// CurrentVersion is the config file format this binary writes and reads.
const CurrentVersion = 1

// FileName is the config file's name inside the state directory.
const FileName = "clawgate.json"

// DefaultPort is the OpenClaw gateway port.
const DefaultPort = 18789

// File is the on-disk config. Every field is optional; flags override it.
type File struct {
	Version int     `json:"version"`
	Gateway Gateway `json:"gateway"`
	Agent   Agent   `json:"agent"`

	// Channels are the messaging accounts (channels.go).
	Channels Channels `json:"channels"`

	// Tailnet is the tsnet listener (tailnet.go).
	Tailnet Tailnet `json:"tailnet"`
}

// Gateway configures the control plane.
type Gateway struct {
	Bind           string   `json:"bind,omitempty"` // "loopback" or an IP literal
	Port           int      `json:"port,omitempty"`
	AllowedOrigins []string `json:"allowedOrigins,omitempty"`
	AllowedHosts   []string `json:"allowedHosts,omitempty"`
	// TokenFile holds the shared token; default <state>/gateway.token.
	TokenFile string `json:"tokenFile,omitempty"`
	// Nodes is the node command policy.
	Nodes Nodes `json:"nodes,omitempty"`
}

// Nodes configures what connected nodes may be asked to run, on top of the
// per-platform allowlist (OpenClaw's gateway.nodes.commands).
type Nodes struct {
	Commands NodeCommands `json:"commands,omitempty"`
}

// NodeCommands adds commands to (Allow, dangerous ones included) or removes
// them from (Deny) every node's allowlist.
type NodeCommands struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// ErrUnknownVersion is returned for a config written by a newer clawgate.
var ErrUnknownVersion = errors.New("config: unknown version")

// Load reads path. A missing file is not an error: it yields the defaults.
// Unknown fields, trailing data and unknown versions are errors.
func Load(path string) (File, error) {
	f := File{Version: CurrentVersion}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("config.Load: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("config.Load %s: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return f, fmt.Errorf("config.Load %s: trailing data after the JSON object", path)
	}
	switch {
	case f.Version == 0:
		return f, fmt.Errorf("config.Load %s: missing \"version\" (this clawgate writes %d)", path, CurrentVersion)
	case f.Version > CurrentVersion:
		return f, fmt.Errorf("config.Load %s: %w %d (this clawgate knows up to %d)", path, ErrUnknownVersion, f.Version, CurrentVersion)
	}
	return f, nil
}

// StateDir returns the state directory: $CLAWGATE_STATE_DIR, else
// $XDG_STATE_HOME/clawgate, else ~/.clawgate.
func StateDir(getenv func(string) string) (string, error) {
	if d := getenv("CLAWGATE_STATE_DIR"); d != "" {
		return filepath.Abs(d)
	}
	if x := getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "clawgate"), nil
	}
	home := getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("config.StateDir: no CLAWGATE_STATE_DIR and no home directory: %w", err)
		}
		home = h
	}
	return filepath.Join(home, ".clawgate"), nil
}

// EnsureDir creates dir with mode 0700, or checks that an existing one is
// not open to group or others.
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("config.EnsureDir: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("config.EnsureDir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("config.EnsureDir: %s is not a directory", dir)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("config.EnsureDir: state directory %s has mode %04o; it holds secrets and must be private (fix with: chmod 700 %s)",
			dir, st.Mode().Perm(), dir)
	}
	return nil
}
