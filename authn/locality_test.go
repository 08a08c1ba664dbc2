package authn

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestLocality(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name      string
		path      Path
		remote    netip.AddrPort
		forwarded bool
		origin    string
		want      Locality
	}{
		{"direct loopback v4", PathLoopback, ap("127.0.0.1:50000"), false, "", Local},
		{"direct loopback 127/8", PathLoopback, ap("127.1.2.3:50000"), false, "", Local},
		{"direct loopback ::1", PathLoopback, ap("[::1]:50000"), false, "", Local},
		{"D4 IPv4-mapped loopback", PathLoopback, ap("[::ffff:127.0.0.1]:50000"), false, "", Local},
		{"zoned ::1", PathLoopback, ap("[::1%lo]:50000"), false, "", Local},
		{"exposed-proxy: loopback with XFF", PathLoopback, ap("127.0.0.1:50000"), true, "", Remote},
		{"B2 loopback browser", PathLoopback, ap("127.0.0.1:50000"), false, "https://evil.example", Remote},
		{"F2 loopback Origin null", PathLoopback, ap("127.0.0.1:50000"), false, "null", Remote},
		{"loopback control UI origin", PathLoopback, ap("127.0.0.1:50000"), false, "http://127.0.0.1:18789", Remote},
		{"D4 unspecified 0.0.0.0", PathLoopback, ap("0.0.0.0:50000"), false, "", Remote},
		{"D4 unspecified ::", PathLoopback, ap("[::]:50000"), false, "", Remote},
		{"LAN address", PathLoopback, ap("192.168.1.20:50000"), false, "", Remote},
		{"B1 own tailnet IP", PathLoopback, ap("100.64.0.1:50000"), false, "", Remote},
		{"E6 tailnet path with loopback peer", PathTailnet, ap("127.0.0.1:50000"), false, "", Remote},
		{"TLS path with loopback peer", PathTLS, ap("127.0.0.1:50000"), false, "", Remote},
		{"tailnet peer", PathTailnet, ap("100.100.1.2:50000"), false, "", Remote},
		{"unknown path fails closed", PathUnknown, ap("127.0.0.1:50000"), false, "", Remote},
		{"invalid address", PathLoopback, netip.AddrPort{}, false, "", Remote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LocalityOf(tt.path, tt.remote, tt.forwarded, tt.origin); got != tt.want {
				t.Errorf("LocalityOf = %v, want %v", got, tt.want)
			}
		})
	}
	var zero Arrival
	if zero.Locality() != Remote {
		t.Error("zero Arrival is not Remote")
	}
}

func TestIsBrowser(t *testing.T) {
	tests := []struct {
		origin string
		want   bool
	}{
		{"", false},
		{"null", true},
		{"https://evil.example", true},
		{"http://127.0.0.1:18789", true},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			if IsBrowser(tt.origin) != tt.want {
				t.Errorf("IsBrowser(%q) = %v", tt.origin, !tt.want)
			}
		})
	}
}

func TestHasForwardHeaders(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want bool
	}{
		{"nil", nil, false},
		{"none", http.Header{"Origin": {"x"}, "User-Agent": {"cli"}}, false},
		{"Forwarded", http.Header{"Forwarded": {"for=203.0.113.9"}}, true},
		{"X-Forwarded-For", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, true},
		{"X-Forwarded-Proto", http.Header{"X-Forwarded-Proto": {"https"}}, true},
		{"X-Real-Ip canonical", http.Header{"X-Real-Ip": {"203.0.113.9"}}, true},
		{"X-Forwarded-Host", http.Header{"X-Forwarded-Host": {"gw.example"}}, true},
		{"non-canonical key", http.Header{"x-forwarded-for": {"1.2.3.4"}}, true},
		{"present but empty", http.Header{"X-Forwarded-For": {""}}, true},
		{"present with no values", http.Header{"X-Forwarded-For": nil}, true},
		{"extra: CF-Connecting-IP", http.Header{"Cf-Connecting-Ip": {"1.2.3.4"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HasForwardHeaders(tt.h); got != tt.want {
				t.Errorf("HasForwardHeaders = %v", got)
			}
		})
	}
	h := http.Header{}
	h.Set("x-real-ip", "1.2.3.4")
	if !HasForwardHeaders(h) {
		t.Error("Set-canonicalized header not found")
	}
}

func TestForwardHeaderNames(t *testing.T) {
	names := ForwardHeaderNames()
	want := []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP", "X-Forwarded-Host"}
	for i, n := range want {
		if names[i] != n {
			t.Errorf("ForwardHeaderNames()[%d] = %s, want %s", i, names[i], n)
		}
	}
	names[0] = "mutated"
	if ForwardHeaderNames()[0] != "Forwarded" {
		t.Error("ForwardHeaderNames shares its backing array")
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{PathUnknown.String(), "unknown"},
		{PathLoopback.String(), "loopback"},
		{PathTailnet.String(), "tailnet"},
		{PathTLS.String(), "tls"},
		{Path(99).String(), "unknown"},
		{Local.String(), "local"},
		{Remote.String(), "remote"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
