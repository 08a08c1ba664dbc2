package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"time"

	"github.com/clawgate/clawgate/ipc"
	"github.com/clawgate/clawgate/tsnode"
	"github.com/clawgate/clawgate/tsnode/tsipc"
)

// callTimeout bounds the helper's calls to the gateway.
const callTimeout = 30 * time.Second

// helper is the node and its listeners, serving one gateway connection.
type helper struct {
	log   *slog.Logger
	level *slog.LevelVar

	connSet chan struct{} // closed once conn is set
	conn    *ipc.Conn

	ctx    context.Context // ends when the gateway connection closes
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // wakes the state pusher; capacity 1

	mu      sync.Mutex
	node    *tsnode.Node
	policy  tsnode.Policy
	lns     map[int]net.Listener
	stopped bool
}

func newHelper(log *slog.Logger, level *slog.LevelVar) *helper {
	ctx, cancel := context.WithCancel(context.Background())
	return &helper{log: log, level: level, connSet: make(chan struct{}), ctx: ctx, cancel: cancel,
		kick: make(chan struct{}, 1), lns: map[int]net.Listener{}}
}

// run serves conn until the gateway closes it, then stops the node.
func (h *helper) run(conn *ipc.Conn) {
	h.conn = conn
	close(h.connSet)
	<-conn.Done()
	h.stop()
}

// stop closes the listeners (and with them every relayed connection's
// source) and the node, and waits for the helper's goroutines.
func (h *helper) stop() {
	h.mu.Lock()
	h.stopped = true
	node := h.node
	for _, ln := range h.lns {
		_ = ln.Close()
	}
	h.mu.Unlock()
	h.cancel()
	if node != nil {
		if err := node.Close(); err != nil {
			h.log.Debug("tailnet node close", "err", err)
		}
	}
	h.wg.Wait()
}

// handle serves the gateway's calls.
func (h *helper) handle(ctx context.Context, req *ipc.Request) (any, error) {
	for _, f := range req.Files {
		_ = f.Close() // no call from the gateway carries descriptors
	}
	select {
	case <-h.connSet:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	switch req.Method {
	case tsipc.MethodStart:
		var p tsipc.Start
		if err := req.Decode(&p); err != nil {
			return nil, err
		}
		return nil, h.start(p)
	case tsipc.MethodListen:
		var p tsipc.Listen
		if err := req.Decode(&p); err != nil {
			return nil, err
		}
		return nil, h.listen(p.Port)
	case tsipc.MethodIdentify:
		var p tsipc.Identify
		if err := req.Decode(&p); err != nil {
			return nil, err
		}
		return h.identify(ctx, p.Remote)
	}
	return nil, &ipc.Error{Code: "unknown_method", Message: "clawgate-tailnet: unknown method " + req.Method}
}

// start creates and starts the node. The auth key is in p and goes
// nowhere else.
func (h *helper) start(p tsipc.Start) error {
	if p.Version != tsipc.Version {
		return &ipc.Error{Code: "version_mismatch", Message: fmt.Sprintf(
			"clawgate-tailnet speaks tailnet wire version %d, the gateway %d: install clawgate and its helpers from one release",
			tsipc.Version, p.Version)}
	}
	h.level.Set(p.LogLevel)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.node != nil || h.stopped {
		return errors.New("clawgate-tailnet: already started")
	}
	node, err := tsnode.New(tsnode.Options{
		Dir: p.Dir, Hostname: p.Hostname, AuthKey: p.AuthKey, ControlURL: p.ControlURL,
		Ephemeral: p.Ephemeral, AdvertiseTags: p.AdvertiseTags, UploadLogs: p.UploadLogs,
		Logger: h.log, BackendLogs: p.BackendLogs,
		PeerGone: h.peerGone, Changed: h.changed,
	})
	if err != nil {
		return err
	}
	if err := node.Start(); err != nil {
		_ = node.Close()
		return err
	}
	h.node = node
	h.policy = tsnode.Policy{AllowedLogins: p.AllowedLogins, AllowedTags: p.AllowedTags}
	h.wg.Add(1)
	go func() { defer h.wg.Done(); h.pushState() }()
	h.changed()
	return nil
}

func (h *helper) started() (*tsnode.Node, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.node == nil {
		return nil, errors.New("clawgate-tailnet: node not started")
	}
	return h.node, nil
}

// listen accepts tailnet connections on port and hands each to the gateway.
func (h *helper) listen(port int) error {
	node, err := h.started()
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return ipc.ErrClosed
	}
	if _, dup := h.lns[port]; dup {
		return fmt.Errorf("clawgate-tailnet: already listening on port %d", port)
	}
	ln, err := node.Listen(port)
	if err != nil {
		return err
	}
	h.lns[port] = ln
	h.wg.Add(1)
	go func() { defer h.wg.Done(); h.acceptLoop(ln, port) }()
	return nil
}

func (h *helper) acceptLoop(ln net.Listener, port int) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if h.ctx.Err() == nil {
				h.log.Warn("tailnet listener failed", "port", port, "err", err)
			}
			return
		}
		h.wg.Add(1)
		go func() { defer h.wg.Done(); h.handOver(c, port) }()
	}
}

// handOver passes the gateway its end of a socket pair standing for c,
// then relays between c and the helper's end until both directions end.
func (h *helper) handOver(c net.Conn, port int) {
	mine, theirs, err := ipc.SocketPair()
	if err != nil {
		h.log.Warn("tailnet connection dropped: no socket pair", "err", err)
		_ = c.Close()
		return
	}
	ctx, cancel := context.WithTimeout(h.ctx, callTimeout)
	err = h.conn.Call(ctx, tsipc.MethodAccept,
		tsipc.Accept{Port: port, Remote: c.RemoteAddr().String(), Local: c.LocalAddr().String()}, nil, theirs)
	cancel()
	_ = theirs.Close()
	if err != nil {
		if h.ctx.Err() == nil {
			h.log.Debug("gateway refused a tailnet connection", "remote", c.RemoteAddr().String(), "err", err)
		}
		_ = c.Close()
		_ = mine.Close()
		return
	}
	relay(h.ctx, c, mine)
}

// identify answers who the peer at remote is.
func (h *helper) identify(ctx context.Context, remote string) (*tsipc.Identified, error) {
	node, err := h.started()
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	policy := h.policy
	h.mu.Unlock()
	id, v, err := node.Identify(ctx, remote, policy)
	if err != nil {
		return nil, err
	}
	return &tsipc.Identified{Identity: id, Verdict: v}, nil
}

// peerGone tells the gateway to close a departed peer's sockets. It is
// called from the node's refresher and must not block it.
func (h *helper) peerGone(nodeID string) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(h.ctx, callTimeout)
		defer cancel()
		if err := h.conn.Call(ctx, tsipc.MethodPeerGone, tsipc.PeerGone{NodeID: nodeID}, nil); err != nil && h.ctx.Err() == nil {
			h.log.Warn("could not report a departed tailnet peer", "node", nodeID, "err", err)
		}
	}()
}

func (h *helper) changed() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// pushState sends the node's status and Host names to the gateway each
// time they change (coalesced: one call at a time, the latest state).
func (h *helper) pushState() {
	var last *tsipc.State
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.kick:
		}
		node, err := h.started()
		if err != nil {
			continue
		}
		st := stateOf(node)
		if last != nil && reflect.DeepEqual(*last, st) {
			continue
		}
		ctx, cancel := context.WithTimeout(h.ctx, callTimeout)
		err = h.conn.Call(ctx, tsipc.MethodState, st, nil)
		cancel()
		if err != nil {
			if h.ctx.Err() != nil {
				return
			}
			h.log.Warn("could not push the tailnet state to the gateway; retrying", "err", err)
			select {
			case <-h.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			h.changed()
			continue
		}
		last = &st
	}
}

func stateOf(node *tsnode.Node) tsipc.State {
	return tsipc.State{Status: node.Status(), Hosts: node.Hosts()}
}
