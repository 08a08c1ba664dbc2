package canvas

import (
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
)

func benchHost(b *testing.B) (*Host, string) {
	b.Helper()
	h, err := New(Options{Dir: filepath.Join(b.TempDir(), "canvas")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	if _, err := h.Write("main", "index.html", []byte("<html><body>"+strings.Repeat("<p>canvas</p>", 300)+"</body></html>")); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	b.Cleanup(func() { close(done) })
	c, err := h.Mint(Binding{Session: "s", Remote: netip.MustParseAddr("127.0.0.1"), Done: done})
	if err != nil {
		b.Fatal(err)
	}
	return h, capPrefix + c.Token
}

func benchGet(b *testing.B, path string, want int) {
	h, prefix := benchHost(b)
	handler := h.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest("GET", prefix+path, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != want {
			b.Fatalf("status %d, want %d", rec.Code, want)
		}
	}
}

// BenchmarkServePage: capability check, path resolution, os.Root open,
// live-reload injection and the response, for a 4 KB page.
func BenchmarkServePage(b *testing.B) { benchGet(b, "/__openclaw__/canvas/main/index.html", 200) }

// BenchmarkRefuseTraversal: the cost of saying no to an encoded "..".
func BenchmarkRefuseTraversal(b *testing.B) {
	benchGet(b, "/__openclaw__/canvas/main/%2e%2e/%2e%2e/clawgate.db", 404)
}

// BenchmarkMint: a node's capability (128-bit token, table insert, sweep).
func BenchmarkMint(b *testing.B) {
	h, _ := benchHost(b)
	done := make(chan struct{})
	defer close(done)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Mint(Binding{Session: "bench", Remote: netip.MustParseAddr("127.0.0.1"), Done: done}); err != nil {
			b.Fatal(err)
		}
	}
}
