package webchat

import (
	"embed"
	"net/http"
	"strings"
)

//go:embed static
var files embed.FS

// assets maps request paths to embedded files and their content types.
var assets = map[string]struct{ file, ctype string }{
	"/":           {"static/index.html", "text/html; charset=utf-8"},
	"/index.html": {"static/index.html", "text/html; charset=utf-8"},
	"/app.js":     {"static/app.js", "text/javascript; charset=utf-8"},
	"/style.css":  {"static/style.css", "text/css; charset=utf-8"},
	"/icon.svg":   {"static/icon.svg", "image/svg+xml"},
}

// Handler serves the page. The caller has already checked the Host header
// (the gateway does, as for a WebSocket upgrade).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok || r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.NotFound(w, r)
			return
		}
		body, err := files.ReadFile(a.file)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("Content-Security-Policy", csp(r.Host))
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}

// csp allows scripts, styles and images from the page's origin only, and
// WebSockets only to the gateway that served it.
func csp(host string) string {
	connect := "'self'"
	if validHost(host) {
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src " + connect +
		"; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// validHost accepts host[:port] made of the characters a DNS name, an IPv4
// or a bracketed IPv6 address can hold, so nothing can be injected into
// the policy.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	return strings.Trim(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") == ""
}
