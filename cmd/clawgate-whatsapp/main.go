// Command clawgate-whatsapp runs one WhatsApp session for the clawgate
// gateway, so that whatsmeow and SQLite stay out of the gateway's memory.
// The gateway starts it (only when a WhatsApp account is configured, and
// for `clawgate channels login`) with an ipc connection; it is not run by
// hand. It serves the methods of package whatsapp (wire.go) for one
// session directory, whose lock the gateway passes on, and exits when the
// connection closes.
//
// Install it next to clawgate: go install github.com/clawgate/clawgate/cmd/...
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/clawgate/clawgate/ipc"
	"github.com/clawgate/clawgate/providers"
	"github.com/clawgate/clawgate/providers/whatsapp"
	"github.com/clawgate/clawgate/providers/whatsapp/device"
)

// callTimeout bounds a state, login or log call to the gateway.
const callTimeout = 10 * time.Second

func main() {
	s := &server{ready: make(chan struct{})}
	conn, err := ipc.Serve(s.handle)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v (it is started by clawgate, not by hand)\n", whatsapp.HelperName, err)
		os.Exit(2)
	}
	s.conn = conn
	close(s.ready)
	<-conn.Done()
	s.close()
}

// server is the helper's side of the connection: one session.
type server struct {
	conn  *ipc.Conn
	ready chan struct{} // closed once conn is set

	mu     sync.Mutex
	p      *device.Provider
	calls  sync.WaitGroup // handlers using p
	closed bool
}

// provider returns the open session and counts the call that uses it.
func (s *server) provider() (*device.Provider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil || s.closed {
		return nil, errors.New("whatsapp: the session is not open")
	}
	s.calls.Add(1)
	return s.p, nil
}

// close waits for the calls (cancelled with the connection) and releases
// the session.
func (s *server) close() {
	s.mu.Lock()
	s.closed = true
	p := s.p
	s.mu.Unlock()
	s.calls.Wait()
	if p != nil {
		p.Close()
	}
}

func (s *server) handle(ctx context.Context, req *ipc.Request) (any, error) {
	<-s.ready
	if req.Method == whatsapp.MethodOpen {
		return nil, whatsapp.WireError(s.open(req))
	}
	for _, f := range req.Files {
		f.Close()
	}
	p, err := s.provider()
	if err != nil {
		return nil, err
	}
	defer s.calls.Done()
	res, err := s.serve(ctx, p, req)
	return res, whatsapp.WireError(err)
}

func (s *server) serve(ctx context.Context, p *device.Provider, req *ipc.Request) (any, error) {
	switch req.Method {
	case whatsapp.MethodRun:
		return nil, p.Run(ctx, sink{s.conn})
	case whatsapp.MethodSend:
		var msg providers.Outbound
		if err := json.Unmarshal(req.Params, &msg); err != nil {
			return nil, err
		}
		return p.Send(ctx, msg)
	case whatsapp.MethodProbe:
		res, err := p.Probe(ctx)
		r := whatsapp.ProbeReply{Result: res}
		if err != nil {
			r.Error = err.Error()
		}
		return r, nil
	case whatsapp.MethodLoginStart:
		var lp whatsapp.LoginStartParams
		if err := json.Unmarshal(req.Params, &lp); err != nil {
			return nil, err
		}
		return p.StartLogin(ctx, lp.Force)
	case whatsapp.MethodLoginWait:
		var lp whatsapp.LoginWaitParams
		if err := json.Unmarshal(req.Params, &lp); err != nil {
			return nil, err
		}
		return p.WaitLogin(ctx, lp.CurrentQR), nil
	case whatsapp.MethodLink:
		var lp whatsapp.LinkParams
		if err := json.Unmarshal(req.Params, &lp); err != nil {
			return nil, err
		}
		return nil, p.Link(ctx, lp.Force, nil)
	case whatsapp.MethodLogout:
		return nil, p.Logout(ctx)
	}
	return nil, fmt.Errorf("whatsapp: unknown method %q", req.Method)
}

// open opens the session named by the call, under the lock it carries.
func (s *server) open(req *ipc.Request) error {
	var op whatsapp.OpenParams
	err := json.Unmarshal(req.Params, &op)
	if err == nil && op.Version != whatsapp.WireVersion {
		err = fmt.Errorf("whatsapp: %s speaks version %d of the gateway's protocol, the gateway %d: "+
			"install clawgate and its helpers from the same release", whatsapp.HelperName, whatsapp.WireVersion, op.Version)
	}
	if err == nil && len(req.Files) != 1 {
		err = errors.New("whatsapp: open: want the session lock and nothing else")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && (s.p != nil || s.closed) {
		err = errors.New("whatsapp: open: the session is open already")
	}
	if err != nil {
		for _, f := range req.Files {
			f.Close()
		}
		return err
	}
	// JSON records on stderr, which the gateway logs again as its own
	// (ipc.LogWriter).
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: op.LogLevel}))
	cfg := device.Config{Dir: op.Dir, Lock: req.Files[0], Logger: log, QueueSize: op.QueueSize}
	if op.Test != nil {
		cfg.HTTPClient = device.UseTestServer(op.Test.Addr, op.Test.Cert, op.Test.RootKey)
	}
	p, err := device.New(cfg)
	if err != nil {
		req.Files[0].Close()
		return err
	}
	// The gateway mirrors the linking state. The watcher runs in the
	// goroutine that changed it, so the gateway sees the changes in order
	// and before the call that made them returns.
	p.WatchLogin(func(st whatsapp.LoginStatus) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		_ = s.conn.Call(ctx, whatsapp.MethodLogin, st, nil)
	})
	s.p = p
	return nil
}

// sink hands the run's messages and states to the gateway.
type sink struct{ conn *ipc.Conn }

// Deliver returns once the gateway's Sink.Deliver has returned.
func (k sink) Deliver(ctx context.Context, in providers.Inbound) error {
	if err := k.conn.Call(ctx, whatsapp.MethodDeliver, in, nil); err != nil {
		var ie *ipc.Error
		if errors.As(err, &ie) {
			return errors.New(ie.Message)
		}
		return err
	}
	return nil
}

func (k sink) SetState(state providers.State, err error) {
	sp := whatsapp.StateParams{State: state}
	if err != nil {
		sp.Error = err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	_ = k.conn.Call(ctx, whatsapp.MethodState, sp, nil)
}
