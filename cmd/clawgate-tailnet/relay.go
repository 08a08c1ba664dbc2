package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// relayBuffer is each direction's copy buffer. A relayed connection is
// mostly idle WebSocket traffic; small buffers keep the helper's memory
// per connection low.
const relayBuffer = 8 << 10

// finTimeout is how long the tailnet peer may keep sending after the
// gateway's side has ended (the gateway closed its socket or shut down its
// writes): the time an orphaned TCP socket waits in FIN-WAIT-2.
const finTimeout = 30 * time.Second

// relay copies bytes between a tailnet connection and the helper's end of
// the gateway's socket, both ways, until both directions end or ctx does;
// then it closes both. An orderly end of one direction (EOF) is passed on
// as a half close, so each side sees the other's FIN; an error in either
// direction closes both at once.
func relay(ctx context.Context, peer net.Conn, gw *net.UnixConn) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			_ = peer.Close()
			_ = gw.Close()
		})
	}
	stop := context.AfterFunc(ctx, abort)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // tailnet → gateway
		defer wg.Done()
		if err := copyHalf(gw, peer); err != nil {
			abort()
			return
		}
		_ = gw.CloseWrite()
	}()
	go func() { // gateway → tailnet
		defer wg.Done()
		if err := copyHalf(peer, gw); err != nil {
			abort()
			return
		}
		hc, ok := peer.(interface{ CloseWrite() error })
		if !ok || hc.CloseWrite() != nil {
			abort()
			return
		}
		_ = peer.SetReadDeadline(time.Now().Add(finTimeout))
	}()
	wg.Wait()
	abort()
}

// copyHalf copies src to dst until src ends: nil at EOF, else the error.
func copyHalf(dst io.Writer, src io.Reader) error {
	buf := make([]byte, relayBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
