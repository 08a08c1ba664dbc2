package ipc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// MaxFrame is the largest frame either side accepts.
const MaxFrame = 32 << 20

// sendLimit is MaxFrame; tests lower it.
var sendLimit = MaxFrame

// writeTimeout: a peer's reader never blocks, so a peer that takes no data
// for this long is stopped or hung, and the connection is closed. Tests
// lower it.
var writeTimeout = 30 * time.Second

// maxServing bounds the peer's calls in flight at once (handlers not yet
// returned). Each costs a goroutine and its params; a peer past it is
// broken or hostile, and the connection ends. Tests lower it.
var maxServing = 4096

// maxCalls bounds this side's calls in flight: a further Call waits (as
// long as its context allows) for one to end. It is well below maxServing,
// so a peer's handlers that are still ending after their calls were
// cancelled do not push this side over the peer's bound. Tests lower it.
var maxCalls = 1024

// maxFiles bounds the descriptors one call may carry.
const maxFiles = 16

// errTooLarge: a frame would exceed sendLimit.
var errTooLarge = errors.New("too large for one frame")

// ErrClosed: the connection is gone (the peer exited, or Close was called).
var ErrClosed = errors.New("ipc: connection closed")

// Error is how a handler's error reaches the caller. A handler returns an
// *Error with a Code to let the caller map it back to a sentinel error; any
// other error arrives with an empty Code and its text.
type Error struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return e.Message + " (" + e.Code + ")"
}

// Request is one call from the peer.
type Request struct {
	Method string
	Params json.RawMessage
	// Files are the descriptors sent with the call; the handler owns them.
	Files []*os.File
}

// Decode unmarshals the params into v.
func (r *Request) Decode(v any) error {
	if len(r.Params) == 0 {
		return fmt.Errorf("ipc: %s: no params", r.Method)
	}
	if err := json.Unmarshal(r.Params, v); err != nil {
		return fmt.Errorf("ipc: %s params: %w", r.Method, err)
	}
	return nil
}

// Handler serves one request from the peer, in its own goroutine. Its ctx
// ends when the caller cancels the call or the connection closes.
type Handler func(ctx context.Context, req *Request) (result any, err error)

// frame is the one wire object. A request has Method, a response has
// Response set, a cancellation has Cancel.
type frame struct {
	ID       uint64          `json:"id,omitempty"`
	Method   string          `json:"method,omitempty"`
	Params   json.RawMessage `json:"params,omitempty"`
	Files    int             `json:"files,omitempty"`
	Response bool            `json:"response,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *Error          `json:"error,omitempty"`
	Cancel   uint64          `json:"cancel,omitempty"`
}

// Conn is one side of a helper connection.
type Conn struct {
	uc      *net.UnixConn
	handler Handler

	wsem  chan struct{} // held while a frame is written: one at a time
	calls chan struct{} // one token per call in flight (maxCalls)

	mu       sync.Mutex
	nextID   uint64
	pending  map[uint64]chan *frame
	serving  map[uint64]context.CancelFunc
	closed   bool
	closeErr error

	done chan struct{}
}

// NewConn starts serving c. A nil handler refuses every call.
func NewConn(c *net.UnixConn, h Handler) *Conn {
	conn := &Conn{uc: c, handler: h, wsem: make(chan struct{}, 1), calls: make(chan struct{}, maxCalls),
		pending: map[uint64]chan *frame{},
		serving: map[uint64]context.CancelFunc{}, done: make(chan struct{})}
	go conn.readLoop()
	return conn
}

// Done is closed when the connection is gone.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err says why the connection ended (nil while it is open, ErrClosed after
// Close or the peer's orderly exit).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// Close ends the connection: pending calls return ErrClosed and the
// handlers' contexts end.
func (c *Conn) Close() error {
	err := c.uc.Close()
	<-c.done
	return err
}

// Call sends method with params and decodes the answer into result (which
// may be nil). files are duplicated into the peer with the request; Call
// does not close them. If ctx ends first, the peer's handler is cancelled
// and Call returns ctx.Err(). At most maxCalls calls are in flight; a
// further one waits for a slot within ctx.
func (c *Conn) Call(ctx context.Context, method string, params, result any, files ...*os.File) error {
	if method == "" {
		return errors.New("ipc: empty method")
	}
	if len(files) > maxFiles {
		return fmt.Errorf("ipc: %s: %d files (at most %d)", method, len(files), maxFiles)
	}
	var raw json.RawMessage
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return fmt.Errorf("ipc: %s params: %w", method, err)
		}
		raw = b
	}
	select {
	case c.calls <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	}
	defer func() { <-c.calls }()
	ch := make(chan *frame, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
	if err := c.send(ctx, &frame{ID: id, Method: method, Params: raw, Files: len(files)}, files); err != nil {
		forget()
		return err
	}
	answer := func(f *frame) error {
		if f.Error != nil {
			return f.Error
		}
		if result != nil && len(f.Result) > 0 {
			if err := json.Unmarshal(f.Result, result); err != nil {
				return fmt.Errorf("ipc: %s result: %w", method, err)
			}
		}
		return nil
	}
	select {
	case f := <-ch:
		return answer(f)
	case <-ctx.Done():
		forget()
		// The cancellation waits for the socket (bounded by writeTimeout);
		// the call does not.
		go func() { _ = c.send(context.Background(), &frame{Cancel: id}, nil) }()
		return ctx.Err()
	case <-c.done:
		// The answer may have come in just before the peer left: the
		// reader delivers it before it closes done.
		select {
		case f := <-ch:
			return answer(f)
		default:
			return ErrClosed
		}
	}
}

// send writes one frame; descriptors ride on its first byte. It waits for
// the socket no longer than ctx allows; a frame once begun is written
// whole or, if the peer takes none of it for writeTimeout, the connection
// ends (a partial frame cannot be taken back).
func (c *Conn) send(ctx context.Context, f *frame, files []*os.File) error {
	body, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("ipc: encode: %w", err)
	}
	if len(body) > sendLimit {
		what := f.Method
		if f.Response {
			what = fmt.Sprintf("answer to call %d", f.ID)
		}
		return fmt.Errorf("ipc: %s: frame of %d bytes exceeds %d: %w", what, len(body), sendLimit, errTooLarge)
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	}
	defer func() { <-c.wsem }()
	_ = c.uc.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, _, err := c.uc.WriteMsgUnix(buf, oob, nil)
	for err == nil && n < len(buf) {
		// Progress extends the deadline: only a peer that takes nothing
		// for writeTimeout is given up on.
		_ = c.uc.SetWriteDeadline(time.Now().Add(writeTimeout))
		var m int
		m, err = c.uc.Write(buf[n:min(len(buf), n+64<<10)])
		n += m
	}
	if err != nil {
		select {
		case <-c.done:
			return ErrClosed
		default:
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			_ = c.uc.Close() // the stream is cut mid-frame: readLoop ends the connection
			return fmt.Errorf("ipc: the peer took no data for %v; closing the connection: %w", writeTimeout, err)
		}
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) {
			// The peer is gone, or the connection is being closed, and
			// readLoop has not finished yet.
			return fmt.Errorf("%w: %v", ErrClosed, err)
		}
		return fmt.Errorf("ipc: write: %w", err)
	}
	return nil
}

// readLoop reads frames until the socket fails, then ends every call.
func (c *Conn) readLoop() {
	var (
		r     reader
		err   error
		frame *frame
		files []*os.File
	)
	for {
		frame, files, err = r.next(c.uc)
		if err != nil {
			break
		}
		if err = c.dispatch(frame, files); err != nil {
			break
		}
	}
	r.closeFiles()
	c.mu.Lock()
	c.closed = true
	if errors.Is(err, net.ErrClosed) || errors.Is(err, errEOF) {
		err = ErrClosed
	}
	c.closeErr = err
	for id, cancel := range c.serving {
		cancel()
		delete(c.serving, id)
	}
	c.mu.Unlock()
	_ = c.uc.Close()
	close(c.done)
}

// dispatch hands one frame on; an error ends the connection.
func (c *Conn) dispatch(f *frame, files []*os.File) error {
	switch {
	case f.Response:
		c.mu.Lock()
		ch := c.pending[f.ID]
		delete(c.pending, f.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- f
		}
		closeAll(files)
	case f.Cancel != 0:
		c.mu.Lock()
		cancel := c.serving[f.Cancel]
		c.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		closeAll(files)
	case f.Method != "":
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			closeAll(files)
			return nil
		}
		if len(c.serving) >= maxServing {
			c.mu.Unlock()
			closeAll(files)
			return fmt.Errorf("ipc: the peer has more than %d calls in flight", maxServing)
		}
		ctx, cancel := context.WithCancel(context.Background())
		c.serving[f.ID] = cancel
		c.mu.Unlock()
		go c.serve(ctx, cancel, f, files)
	default:
		closeAll(files)
	}
	return nil
}

func (c *Conn) serve(ctx context.Context, cancel context.CancelFunc, f *frame, files []*os.File) {
	defer cancel()
	req := &Request{Method: f.Method, Params: f.Params, Files: files}
	result, err := c.run(ctx, req)
	c.mu.Lock()
	delete(c.serving, f.ID)
	c.mu.Unlock()
	resp := &frame{ID: f.ID, Response: true}
	if err == nil && result != nil {
		b, merr := json.Marshal(result)
		if merr != nil {
			err = fmt.Errorf("ipc: %s result: %w", f.Method, merr)
		} else {
			resp.Result = b
		}
	}
	if err != nil {
		var ie *Error
		if !errors.As(err, &ie) {
			ie = &Error{Message: err.Error()}
		}
		resp.Error = ie
	}
	err = c.send(context.Background(), resp, nil)
	if errors.Is(err, errTooLarge) {
		// The caller gets the error instead; the connection is fine.
		err = c.send(context.Background(), &frame{ID: f.ID, Response: true, Error: &Error{Message: err.Error()}}, nil)
	}
	if err != nil && !errors.Is(err, ErrClosed) {
		// The response is lost only if the socket failed; readLoop ends
		// the connection then.
		_ = c.uc.Close()
	}
}

// run calls the handler, turning a panic into an error: a bug in one call
// must not take the process down with the connection.
func (c *Conn) run(ctx context.Context, req *Request) (result any, err error) {
	if c.handler == nil {
		closeAll(req.Files)
		return nil, &Error{Code: "unknown_method", Message: "ipc: no handler for " + req.Method}
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("ipc: %s: panic: %v", req.Method, p)
		}
	}()
	return c.handler(ctx, req)
}

func closeAll(files []*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}
