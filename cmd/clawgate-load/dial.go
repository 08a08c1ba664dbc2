package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawgate/clawgate/client"
	"github.com/clawgate/clawgate/protocol"
)

// sources hands out local addresses round-robin; nil means "let the kernel
// choose".
type sources struct {
	addrs []netip.Addr
	next  atomic.Uint64
}

// parseSources reads --src. auto is the 127.0.0.2-127.0.0.254 range when
// the target host is an IPv4 loopback address (or localhost), else none.
func parseSources(spec, target string) (*sources, error) {
	s := &sources{}
	switch spec {
	case "none", "":
		return s, nil
	case "auto":
		u, err := url.Parse(target)
		if err != nil {
			return nil, err
		}
		h := u.Hostname()
		a, err := netip.ParseAddr(h)
		if h != "localhost" && (err != nil || !a.Is4() || !a.IsLoopback()) {
			return s, nil
		}
		spec = "127.0.0.2-127.0.0.254"
	}
	if lo, hi, ok := strings.Cut(spec, "-"); ok {
		a, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("--src %q: %w", spec, err)
		}
		b, err := netip.ParseAddr(strings.TrimSpace(hi))
		if err != nil {
			return nil, fmt.Errorf("--src %q: %w", spec, err)
		}
		for x := a; x.Compare(b) <= 0 && len(s.addrs) < 1<<16; x = x.Next() {
			s.addrs = append(s.addrs, x)
		}
	} else {
		for _, f := range strings.Split(spec, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(f))
			if err != nil {
				return nil, fmt.Errorf("--src %q: %w", spec, err)
			}
			s.addrs = append(s.addrs, a)
		}
	}
	if len(s.addrs) == 0 {
		return nil, fmt.Errorf("--src %q names no address", spec)
	}
	for _, a := range s.addrs {
		if !a.IsLoopback() {
			// This tool is for loopback benches; refuse to spread load
			// from addresses that would leave the host.
			return nil, fmt.Errorf("--src %s is not a loopback address", a)
		}
	}
	return s, nil
}

func (s *sources) pick() *net.TCPAddr {
	if len(s.addrs) == 0 {
		return nil
	}
	a := s.addrs[s.next.Add(1)%uint64(len(s.addrs))]
	return &net.TCPAddr{IP: a.AsSlice()}
}

func (s *sources) count() int { return len(s.addrs) }

// newDialer returns a WebSocket dialer whose sockets take their local
// address from src, with small buffers so that the tool itself can hold
// tens of thousands of sockets.
func newDialer(src *sources, timeout time.Duration) *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout: timeout,
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		WriteBufferPool:  &sync.Pool{},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			if la := src.pick(); la != nil {
				d.LocalAddr = la
			}
			return d.DialContext(ctx, network, addr)
		},
	}
}

// dialSpec says how one connection authenticates.
type dialSpec struct {
	identity    *client.Identity
	deviceToken string // with identity: reconnect as a paired device
	noToken     bool   // send no shared token (device token only)
	mode        string // client mode; default cli
	clientID    string
	displayName string
	onEvent     func(client.Event)
}

var adminScopes = []string{protocol.ScopeAdmin, protocol.ScopeRead, protocol.ScopeWrite}

func (l *loader) dial(ctx context.Context, sp dialSpec) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
	defer cancel()
	o := client.Options{
		URL: l.cfg.url, Token: l.cfg.token, Identity: sp.identity, DeviceToken: sp.deviceToken,
		Scopes: adminScopes, Dialer: l.dialer, OnEvent: sp.onEvent,
		ClientMode: sp.mode, ClientID: sp.clientID, DisplayName: sp.displayName,
		Version: "clawgate-load",
	}
	if sp.noToken {
		o.Token = ""
	}
	if sp.identity == nil {
		// The deviceless path grants at most read and write.
		o.Scopes = []string{protocol.ScopeRead, protocol.ScopeWrite}
	}
	return client.Dial(ctx, o)
}

// closeQuietly ends a client without waiting for the gateway's answering
// close frame longer than a moment.
func closeQuietly(c *client.Client) {
	if c != nil {
		_ = c.Close()
	}
}
