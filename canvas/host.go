package canvas

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults and bounds.
const (
	// DefaultTTL is how long an unused capability lives (OpenClaw's
	// CANVAS_CAPABILITY_TTL_MS).
	DefaultTTL = 10 * time.Minute
	// DefaultMaxFileBytes bounds one file.
	DefaultMaxFileBytes = 4 << 20
	// DefaultMaxAgentBytes bounds one agent's canvas.
	DefaultMaxAgentBytes = 64 << 20
	// DefaultMaxAgentFiles bounds one agent's file count.
	DefaultMaxAgentFiles = 1000
	// DefaultAgent is the agent whose canvas "/__openclaw__/canvas/" opens.
	DefaultAgent = "main"

	maxPathLen   = 512
	maxPathDepth = 8
)

// Errors of the write API. They are safe to show to the caller.
var (
	ErrBadAgent    = errors.New("invalid agentId: use 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit")
	ErrBadPath     = errors.New("invalid path: use '/'-separated names without '..', '.', hidden names, '\\', '%' or control characters (at most 8 levels, 512 bytes)")
	ErrBadType     = errors.New("unsupported file type")
	ErrTooLarge    = errors.New("file too large")
	ErrQuota       = errors.New("canvas quota exceeded")
	ErrNotFound    = errors.New("no such canvas file")
	ErrHostClosing = errors.New("canvas host closing")
)

// Options configure a Host.
type Options struct {
	// Dir is the canvas root, normally <state>/canvas; it is created with
	// mode 0700.
	Dir    string
	Logger *slog.Logger
	Now    func() time.Time
	// TTL is how long a capability lives without use (DefaultTTL).
	TTL           time.Duration
	MaxFileBytes  int64
	MaxAgentBytes int64
	MaxAgentFiles int
}

// Host serves and stores canvases. Serve its Handler on the canvas
// listener; call Close after the listener's server has stopped.
type Host struct {
	opts Options
	log  *slog.Logger
	root *os.Root
	caps *capTable
	base atomic.Pointer[string]

	writeMu sync.Mutex // serializes writes (quota accounting)

	mu      sync.Mutex
	closed  bool
	sockets map[*reloadSocket]struct{}
	closing chan struct{}
	wg      sync.WaitGroup
}

// New opens (creating) the canvas root.
func New(opts Options) (*Host, error) {
	if opts.Dir == "" {
		return nil, errors.New("canvas.New: no directory")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = DefaultMaxFileBytes
	}
	if opts.MaxAgentBytes <= 0 {
		opts.MaxAgentBytes = DefaultMaxAgentBytes
	}
	if opts.MaxAgentFiles <= 0 {
		opts.MaxAgentFiles = DefaultMaxAgentFiles
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("canvas.New: %w", err)
	}
	fi, err := os.Lstat(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("canvas.New: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("canvas.New: %s is not a directory", opts.Dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("canvas.New: %s is open to other users (mode %04o); fix with: chmod 700 %s", opts.Dir, fi.Mode().Perm(), opts.Dir)
	}
	root, err := os.OpenRoot(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("canvas.New: %w", err)
	}
	h := &Host{opts: opts, log: opts.Logger, root: root, caps: newCapTable(opts.Now, opts.TTL),
		sockets: map[*reloadSocket]struct{}{}, closing: make(chan struct{})}
	empty := ""
	h.base.Store(&empty)
	return h, nil
}

// Close ends every live-reload socket and waits for them, then closes the
// root. Idempotent.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.closing)
	h.mu.Unlock()
	h.wg.Wait()
	return h.root.Close()
}

// SetBaseURL records where nodes reach this host ("http://127.0.0.1:18793"),
// once its listener is up. Until then BaseURL is "" and no capability URL
// is handed out.
func (h *Host) SetBaseURL(u string) {
	u = strings.TrimRight(u, "/")
	h.base.Store(&u)
}

// BaseURL returns what SetBaseURL recorded.
func (h *Host) BaseURL() string { return *h.base.Load() }

// Mint issues a capability for a node session, replacing the session's
// previous one.
func (h *Host) Mint(b Binding) (Capability, error) {
	if b.Session == "" || !b.Remote.IsValid() || b.Done == nil {
		return Capability{}, errors.New("canvas.Mint: incomplete binding")
	}
	return h.caps.mint(b)
}

// ScopedURL is the URL a node opens with a capability: base (where it
// reaches the host, e.g. BaseURL) plus /__openclaw__/cap/<token>.
func ScopedURL(base, token string) string {
	return strings.TrimRight(base, "/") + capPrefix + token
}

// Revoke ends a session's capability at once.
func (h *Host) Revoke(session string) { h.caps.revoke(session) }

// FileInfo describes one canvas file.
type FileInfo struct {
	Path        string `json:"path"`
	Bytes       int64  `json:"bytes"`
	UpdatedAtMs int64  `json:"updatedAtMs"`
}

var agentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidAgent reports whether id is a valid agent id.
func ValidAgent(id string) bool { return agentRE.MatchString(id) }

// cleanWritePath validates a path given to the write API: plain segments
// only, no decoding.
func cleanWritePath(p string) (string, error) {
	if p == "" || len(p) > maxPathLen || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return "", ErrBadPath
	}
	segs := strings.Split(p, "/")
	if len(segs) > maxPathDepth {
		return "", ErrBadPath
	}
	for _, s := range segs {
		if !goodSegment(s) {
			return "", ErrBadPath
		}
	}
	if contentType(p) == "" {
		return "", fmt.Errorf("%w %q: use one of %s", ErrBadType, path.Ext(p), strings.Join(knownExts(), ", "))
	}
	return p, nil
}

// goodSegment is the rule every path segment must pass (after one
// decoding, for request paths).
func goodSegment(s string) bool {
	if s == "" || s[0] == '.' || len(s) > 255 {
		return false
	}
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			return false
		case r == '/' || r == '\\' || r == '%' || r == ':' || r == 0xfffd:
			return false
		}
	}
	return true
}

// Write stores data at agentID/p, atomically (a temporary file renamed
// into place), and tells live-reload sockets.
func (h *Host) Write(agentID, p string, data []byte) (FileInfo, error) {
	if !ValidAgent(agentID) {
		return FileInfo{}, ErrBadAgent
	}
	p, err := cleanWritePath(p)
	if err != nil {
		return FileInfo{}, err
	}
	if int64(len(data)) > h.opts.MaxFileBytes {
		return FileInfo{}, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(data), h.opts.MaxFileBytes)
	}
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	if h.isClosed() {
		return FileInfo{}, ErrHostClosing
	}
	files, err := h.list(agentID)
	if err != nil {
		return FileInfo{}, err
	}
	total, n := int64(len(data)), 1
	for _, f := range files {
		if f.Path == p {
			continue
		}
		total += f.Bytes
		n++
	}
	if n > h.opts.MaxAgentFiles {
		return FileInfo{}, fmt.Errorf("%w: at most %d files per agent", ErrQuota, h.opts.MaxAgentFiles)
	}
	if total > h.opts.MaxAgentBytes {
		return FileInfo{}, fmt.Errorf("%w: at most %d bytes per agent", ErrQuota, h.opts.MaxAgentBytes)
	}
	full := agentID + "/" + p
	if err := h.root.MkdirAll(path.Dir(full), 0o700); err != nil {
		return FileInfo{}, fmt.Errorf("canvas: create folder: %w", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(path.Dir(full), ".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := h.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return FileInfo{}, fmt.Errorf("canvas: write: %w", err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = h.root.Rename(tmp, full)
	}
	if werr != nil {
		_ = h.root.Remove(tmp)
		return FileInfo{}, fmt.Errorf("canvas: write: %w", werr)
	}
	fi, err := h.root.Stat(full)
	if err != nil {
		return FileInfo{}, fmt.Errorf("canvas: write: %w", err)
	}
	h.changed()
	return FileInfo{Path: p, Bytes: fi.Size(), UpdatedAtMs: fi.ModTime().UnixMilli()}, nil
}

// Remove deletes agentID/p. It reports whether there was such a file.
func (h *Host) Remove(agentID, p string) (bool, error) {
	if !ValidAgent(agentID) {
		return false, ErrBadAgent
	}
	p, err := cleanWritePath(p)
	if err != nil {
		return false, err
	}
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	full := agentID + "/" + p
	fi, err := h.root.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("canvas: remove: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return false, ErrNotFound
	}
	if err := h.root.Remove(full); err != nil {
		return false, fmt.Errorf("canvas: remove: %w", err)
	}
	h.changed()
	return true, nil
}

// List returns the agent's files, by path.
func (h *Host) List(agentID string) ([]FileInfo, error) {
	if !ValidAgent(agentID) {
		return nil, ErrBadAgent
	}
	return h.list(agentID)
}

func (h *Host) list(agentID string) ([]FileInfo, error) {
	out := []FileInfo{}
	err := fs.WalkDir(h.root.FS(), agentID, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == agentID && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if p != agentID && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, FileInfo{Path: strings.TrimPrefix(p, agentID+"/"), Bytes: fi.Size(), UpdatedAtMs: fi.ModTime().UnixMilli()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("canvas: list: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func (h *Host) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// contentTypes are the file types a canvas may hold, by extension.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
	".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
	".mjs": "text/javascript; charset=utf-8", ".json": "application/json",
	".map": "application/json", ".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8",
	".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
	".gif": "image/gif", ".webp": "image/webp", ".ico": "image/x-icon", ".avif": "image/avif",
	".woff": "font/woff", ".woff2": "font/woff2", ".wasm": "application/wasm",
	".mp3": "audio/mpeg", ".mp4": "video/mp4", ".webm": "video/webm", ".ogg": "audio/ogg",
}

func contentType(p string) string { return contentTypes[strings.ToLower(path.Ext(p))] }

func knownExts() []string {
	out := make([]string, 0, len(contentTypes))
	for k := range contentTypes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
