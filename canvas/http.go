package canvas

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Paths under a capability, as OpenClaw names them.
const (
	capPrefix      = "/__openclaw__/cap/"
	canvasPath     = "/__openclaw__/canvas/"
	wsPath         = "/__openclaw__/ws"
	liveReloadPath = "/__openclaw__/live-reload.js"
)

// CSP is the Content-Security-Policy of every canvas response: scripts,
// fonts, frames and connections only from the canvas origin itself (so no
// inline script and nothing third-party), inline styles allowed, images
// also from data:/blob:, no plugins, no forms, no <base>, and no framing
// by anyone.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self' data:; connect-src 'self'; " +
	"manifest-src 'self'; worker-src 'self'; frame-src 'self'; frame-ancestors 'none'; " +
	"base-uri 'none'; form-action 'none'; object-src 'none'"

// Handler returns the canvas host's HTTP handler.
func (h *Host) Handler() http.Handler { return http.HandlerFunc(h.serve) }

func secureHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), usb=(), payment=(), clipboard-read=()")
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// serve checks the capability before anything else (nothing, not even a
// 404, is answered without one), then routes.
func (h *Host) serve(w http.ResponseWriter, r *http.Request) {
	secureHeaders(w)
	raw := r.RequestURI
	if !strings.HasPrefix(raw, "/") {
		fail(w, http.StatusBadRequest, "bad request target")
		return
	}
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	rest, scoped := strings.CutPrefix(raw, capPrefix)
	if !scoped {
		fail(w, http.StatusUnauthorized, "canvas capability required")
		return
	}
	token, sub, _ := strings.Cut(rest, "/")
	sub = "/" + sub
	verdict, entry := h.caps.check(token, remoteAddr(r))
	switch verdict {
	case capMissing:
		fail(w, http.StatusUnauthorized, "canvas capability required")
		return
	case capDead:
		fail(w, http.StatusUnauthorized, "canvas capability expired or unknown; refresh it with node.canvas.capability.refresh")
		return
	case capWrongPeer:
		h.log.Warn("canvas capability presented from another address", "node", entry.nodeOrEmpty(), "remote", r.RemoteAddr)
		fail(w, http.StatusForbidden, "canvas capability is bound to another client")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		fail(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	prefix := capPrefix + token
	switch {
	case sub == wsPath:
		h.serveReload(w, r, token, entry.b)
	case sub == liveReloadPath:
		serveBytes(w, r, "live-reload.js", "text/javascript; charset=utf-8", []byte(liveReloadJS))
	case sub == strings.TrimSuffix(canvasPath, "/") || sub == canvasPath:
		http.Redirect(w, r, prefix+canvasPath+DefaultAgent+"/", http.StatusFound)
	case strings.HasPrefix(sub, canvasPath):
		h.serveFile(w, r, prefix, strings.TrimPrefix(sub, canvasPath))
	default:
		fail(w, http.StatusNotFound, "not found")
	}
}

func (e *capEntry) nodeOrEmpty() string {
	if e == nil {
		return ""
	}
	return e.b.Node
}

// resolve turns the raw (still percent-encoded) path after
// /__openclaw__/canvas/ into a root-relative file name: the agent folder,
// then each segment decoded exactly once and checked by goodSegment. dir
// reports a trailing slash. ok is false for anything that could name a
// file outside the agent's folder, or a hidden one.
func resolve(rawRest string) (name string, dir, ok bool) {
	segs := strings.Split(rawRest, "/")
	if len(segs) > maxPathDepth+2 || len(rawRest) > 3*maxPathLen {
		return "", false, false
	}
	agent := segs[0]
	if !ValidAgent(agent) {
		return "", false, false
	}
	parts := []string{agent}
	for i, s := range segs[1:] {
		if s == "" && i == len(segs)-2 {
			dir = true
			break
		}
		d, err := url.PathUnescape(s)
		if err != nil || !goodSegment(d) {
			return "", false, false
		}
		parts = append(parts, d)
	}
	if len(segs) == 1 {
		dir = true // "/canvas/main": the folder itself
	}
	return strings.Join(parts, "/"), dir, true
}

func (h *Host) serveFile(w http.ResponseWriter, r *http.Request, prefix, rawRest string) {
	name, dir, ok := resolve(rawRest)
	if !ok {
		fail(w, http.StatusNotFound, "not found")
		return
	}
	if !strings.Contains(rawRest, "/") {
		// "/__openclaw__/canvas/main" → its folder, so relative links work.
		http.Redirect(w, r, prefix+canvasPath+rawRest+"/", http.StatusFound)
		return
	}
	if dir {
		name += "/index.html"
	}
	f, err := h.root.Open(name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			// Symlink escapes land here: the root refuses them.
			h.log.Debug("canvas open refused", "name", name, "err", err)
		}
		fail(w, http.StatusNotFound, "not found")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		fail(w, http.StatusNotFound, "not found")
		return
	}
	if fi.IsDir() {
		http.Redirect(w, r, prefix+canvasPath+rawRest+"/", http.StatusFound)
		return
	}
	if !fi.Mode().IsRegular() {
		fail(w, http.StatusNotFound, "not found")
		return
	}
	ctype := contentType(name)
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	if !strings.HasPrefix(ctype, "text/html") {
		w.Header().Set("Content-Type", ctype)
		http.ServeContent(w, r, "", fi.ModTime(), f)
		return
	}
	body, err := io.ReadAll(io.LimitReader(f, h.opts.MaxFileBytes+1))
	if err != nil || int64(len(body)) > h.opts.MaxFileBytes {
		fail(w, http.StatusNotFound, "not found")
		return
	}
	serveBytes(w, r, "", ctype, injectReload(body, prefix+liveReloadPath))
}

func serveBytes(w http.ResponseWriter, r *http.Request, name, ctype string, b []byte) {
	w.Header().Set("Content-Type", ctype)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// injectReload adds the live-reload script (same origin, so the CSP
// allows it) before </body>, or at the end.
func injectReload(page []byte, src string) []byte {
	tag := []byte(`<script src="` + src + `" defer></script>`)
	i := bytes.LastIndex(bytes.ToLower(page), []byte("</body>"))
	if i < 0 {
		return append(page, tag...)
	}
	out := make([]byte, 0, len(page)+len(tag))
	out = append(out, page[:i]...)
	out = append(out, tag...)
	return append(out, page[i:]...)
}

// liveReloadJS reconnects with backoff and reloads the page on "reload".
const liveReloadJS = `(() => {
  const p = location.pathname;
  const i = p.indexOf("/__openclaw__/canvas/");
  if (i < 0) return;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + p.slice(0, i) + "/__openclaw__/ws";
  let delay = 1000;
  const connect = () => {
    const ws = new WebSocket(url);
    ws.onopen = () => { delay = 1000; };
    ws.onmessage = (e) => { if (e.data === "reload") location.reload(); };
    ws.onclose = () => { setTimeout(connect, delay); delay = Math.min(delay * 2, 30000); };
  };
  connect();
})();
`
