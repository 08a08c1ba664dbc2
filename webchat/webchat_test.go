package webchat

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	cases := []struct {
		method, path, host string
		code               int
		ctype, body        string
	}{
		{"GET", "/", "127.0.0.1:18789", 200, "text/html", `<script src="app.js" defer></script>`},
		{"GET", "/app.js", "127.0.0.1:18789", 200, "text/javascript", "signConnect"},
		{"GET", "/style.css", "localhost:18789", 200, "text/css", "#composer"},
		{"HEAD", "/", "127.0.0.1:18789", 200, "text/html", ""},
		{"GET", "/static/app.js", "127.0.0.1:18789", 404, "", ""},
		{"GET", "/../webchat.go", "127.0.0.1:18789", 404, "", ""},
		{"POST", "/", "127.0.0.1:18789", 404, "", ""},
	}
	for _, c := range cases {
		req := httptest.NewRequest(c.method, "http://x"+c.path, nil)
		req.Host = c.host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		body, _ := io.ReadAll(w.Result().Body)
		if w.Code != c.code || !strings.HasPrefix(w.Header().Get("Content-Type"), c.ctype) || !strings.Contains(string(body), c.body) {
			t.Errorf("%s %s: %d %q", c.method, c.path, w.Code, w.Header().Get("Content-Type"))
			continue
		}
		if c.code != 200 {
			continue
		}
		csp := w.Header().Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'",
			"connect-src 'self' ws://" + c.host + " wss://" + c.host} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", c.path, csp, want)
			}
		}
		if w.Header().Get("X-Frame-Options") != "DENY" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: missing framing or sniffing headers", c.path)
		}
	}
	// Nothing from a hostile Host header reaches the policy.
	req := httptest.NewRequest("GET", "http://x/", nil)
	req.Host = "evil.example; script-src *"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if csp := w.Header().Get("Content-Security-Policy"); strings.Contains(csp, "evil") || !strings.Contains(csp, "connect-src 'self';") {
		t.Fatalf("CSP with a hostile host: %q", csp)
	}
}

// TestPageHasNoInlineCode: the strict policy forbids inline scripts,
// styles and handlers, so the page must not need them, and the script
// never writes HTML.
func TestPageHasNoInlineCode(t *testing.T) {
	html, _ := files.ReadFile("static/index.html")
	js, _ := files.ReadFile("static/app.js")
	for _, bad := range []string{"<script>", "style=", "onclick=", "onload=", "<style"} {
		if strings.Contains(string(html), bad) {
			t.Errorf("index.html contains %q", bad)
		}
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %q", bad)
		}
	}
}
