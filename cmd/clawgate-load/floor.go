package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runFloor is `clawgate-load floor-server --listen ADDR`: the cost floor of a
// gateway session on this machine. It answers the same socket choreography
// as a signed handshake (HTTP upgrade, 101, connect.challenge, read the
// connect frame, hello-ok, read the close frame, echo it, close) with
// canned frames: no JSON, no schema, no signature check, no store, no log
// line. Driven by the handshake scenarios with --pid, its CPU per session
// is what any Go gateway pays for TCP, the upgrade, WebSocket framing and
// the runtime's goroutine and netpoll work before doing anything of its
// own; scripts/bench-handshake.sh runs it as the build "floor".
func runFloor(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("clawgate-load floor-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("listen", "127.0.0.1:18789", "loopback address to serve on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("floor-server: --listen %q is not a loopback address", *addr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "floor-server listening on %s\n", ln.Addr())
	return floorServe(ctx, ln)
}

// floorServe serves floor sessions on ln until ctx ends.
func floorServe(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(15 * time.Second))
			_ = floorSession(c)
		}()
	}
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// floorHello is hello-ok as the client needs it, with a device token so the
// paired scenario's devices "pair".
var floorHello = []byte(`{"type":"res","id":"connect-1","ok":true,"payload":{"type":"hello-ok","protocol":4,` +
	`"server":{"version":"floor","connId":"floor"},"features":{"methods":["health"],"events":["tick"]},` +
	`"snapshot":{"presence":[],"health":{},"stateVersion":{"presence":0,"health":0},"uptimeMs":0},` +
	`"policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000},` +
	`"auth":{"deviceToken":"floor-device-token","role":"operator","scopes":[]}}}`)

func floorSession(c net.Conn) error {
	br := bufio.NewReaderSize(c, 4096)
	tp := textproto.NewReader(br)
	if _, err := tp.ReadLine(); err != nil {
		return err
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return err
	}
	key := hdr.Get("Sec-Websocket-Key")
	if key == "" {
		return errors.New("no Sec-WebSocket-Key")
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
		base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n"); err != nil {
		return err
	}
	nonce := make([]byte, 32)
	_, _ = rand.Read(nonce)
	challenge := `{"type":"event","event":"connect.challenge","payload":{"nonce":"` +
		base64.RawURLEncoding.EncodeToString(nonce) + `","ts":` + strconv.FormatInt(time.Now().UnixMilli(), 10) + `}}`
	if err := floorWrite(c, 1, []byte(challenge)); err != nil {
		return err
	}
	for {
		op, payload, err := floorRead(br)
		if err != nil {
			return err
		}
		switch op {
		case 1: // the connect request (and anything after it)
			if strings.Contains(string(payload), `"connect-1"`) {
				if err := floorWrite(c, 1, floorHello); err != nil {
					return err
				}
			}
		case 8:
			return floorWrite(c, 8, payload)
		case 9:
			if err := floorWrite(c, 10, payload); err != nil {
				return err
			}
		}
	}
}

// floorRead reads one client frame (masked, unfragmented).
func floorRead(br *bufio.Reader) (op byte, payload []byte, err error) {
	var h [14]byte
	if _, err := io.ReadFull(br, h[:2]); err != nil {
		return 0, nil, err
	}
	op = h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(br, h[2:4]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(br, h[2:10]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(h[2:10])
	}
	if n > 1<<20 || h[1]&0x80 == 0 {
		return 0, nil, errors.New("frame too large or unmasked")
	}
	var mask [4]byte
	if _, err := io.ReadFull(br, mask[:]); err != nil {
		return 0, nil, err
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, nil, err
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	return op, payload, nil
}

// floorWrite writes one unmasked final frame in one write.
func floorWrite(c net.Conn, op byte, payload []byte) error {
	b := make([]byte, 0, 10+len(payload))
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	_, err := c.Write(append(b, payload...))
	return err
}
