package ipc

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const helperName = "ipc-test-helper"

// TestMain doubles as the helper binary: started with IPC_TEST_HELPER set,
// the test binary serves helperHandler instead of running tests.
func TestMain(m *testing.M) {
	if os.Getenv("IPC_TEST_HELPER") != "" {
		helperMain()
		return
	}
	os.Exit(m.Run())
}

var ignoreEOF bool

func helperMain() {
	var conn *Conn
	ready := make(chan struct{}) // conn is set (calls may come first)
	conn, err := Serve(func(ctx context.Context, req *Request) (any, error) {
		<-ready
		return helperHandler(ctx, conn, req)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	close(ready)
	<-conn.Done()
	if ignoreEOF {
		select {}
	}
	os.Exit(0)
}

func helperHandler(ctx context.Context, conn *Conn, req *Request) (any, error) {
	switch req.Method {
	case "echo":
		var v any
		if err := req.Decode(&v); err != nil {
			return nil, err
		}
		return v, nil
	case "write":
		var tag string
		if err := req.Decode(&tag); err != nil {
			return nil, err
		}
		if len(req.Files) != 1 {
			return nil, fmt.Errorf("got %d files", len(req.Files))
		}
		defer req.Files[0].Close()
		_, err := io.WriteString(req.Files[0], tag)
		return nil, err
	case "callback":
		var out string
		err := conn.Call(ctx, "ping", "from helper", &out)
		return out, err
	case "block":
		_ = conn.Call(context.Background(), "started", nil, nil)
		<-ctx.Done()
		return nil, conn.Call(context.Background(), "cancelled", nil, nil)
	case "exit":
		go func() { time.Sleep(10 * time.Millisecond); os.Exit(3) }()
		select {}
	case "ignore-eof":
		ignoreEOF = true
		return true, nil
	case "fail":
		return nil, &Error{Code: "no_such_thing", Message: "there is no such thing"}
	case "plain-fail":
		return nil, errors.New("plain failure")
	case "panic":
		panic("boom")
	case "open-files":
		// What the helper has open, by target.
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return nil, err
		}
		var out []string
		for _, e := range entries {
			if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
				out = append(out, target)
			}
		}
		return out, nil
	case "getenv":
		var name string
		if err := req.Decode(&name); err != nil {
			return nil, err
		}
		return os.Getenv(name), nil
	}
	return nil, &Error{Code: "unknown_method", Message: "unknown method " + req.Method}
}

// startHelper starts the test binary as a helper found through
// $CLAWGATE_HELPER_DIR, with h serving its calls.
func startHelper(t *testing.T, h Handler) *Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, helperName)); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvHelperDir, dir)
	var stderr bytes.Buffer
	p, err := Start(context.Background(), helperName, StartOptions{
		Env: []string{"IPC_TEST_HELPER=1"}, Handler: h, Stderr: &lockedBuffer{b: &stderr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	return p
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func call(t *testing.T, p *Process, method string, params, result any, files ...*os.File) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p.Conn().Call(ctx, method, params, result, files...)
}

func TestCallBothWays(t *testing.T) {
	p := startHelper(t, func(ctx context.Context, req *Request) (any, error) {
		if req.Method != "ping" {
			return nil, fmt.Errorf("unexpected %s", req.Method)
		}
		var s string
		if err := req.Decode(&s); err != nil {
			return nil, err
		}
		return "pong to " + s, nil
	})
	type payload struct {
		A int      `json:"a"`
		B []string `json:"b"`
	}
	var got payload
	if err := call(t, p, "echo", payload{A: 7, B: []string{"x", "y"}}, &got); err != nil {
		t.Fatal(err)
	}
	if got.A != 7 || strings.Join(got.B, ",") != "x,y" {
		t.Fatalf("echo = %+v", got)
	}
	var back string
	if err := call(t, p, "callback", nil, &back); err != nil {
		t.Fatal(err)
	}
	if back != "pong to from helper" {
		t.Fatalf("callback = %q", back)
	}
	var env string
	if err := call(t, p, "getenv", EnvFD, &env); err != nil {
		t.Fatal(err)
	}
	if env != "" {
		t.Fatalf("the helper's own children would inherit %s=%s", EnvFD, env)
	}
}

// TestFilesTravel: concurrent calls each carry their own pipe, and each
// descriptor reaches the handler of the call it was sent with.
func TestFilesTravel(t *testing.T) {
	p := startHelper(t, nil)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, w, err := os.Pipe()
			if err != nil {
				errs <- err
				return
			}
			defer r.Close()
			tag := fmt.Sprintf("call-%d", i)
			err = call(t, p, "write", tag, nil, w)
			_ = w.Close()
			if err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(r)
			if err != nil {
				errs <- err
				return
			}
			if string(got) != tag {
				errs <- fmt.Errorf("pipe of %s received %q", tag, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCancelReachesHandler(t *testing.T) {
	started, cancelled := make(chan struct{}, 1), make(chan struct{}, 1)
	p := startHelper(t, func(ctx context.Context, req *Request) (any, error) {
		switch req.Method {
		case "started":
			started <- struct{}{}
		case "cancelled":
			cancelled <- struct{}{}
		}
		return nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- p.Conn().Call(ctx, "block", nil, nil) }()
	waitFor(t, started, "the handler to start")
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("Call after cancel = %v", err)
	}
	waitFor(t, cancelled, "the helper's handler to see the cancellation")
}

func TestErrors(t *testing.T) {
	p := startHelper(t, nil)
	var ie *Error
	err := call(t, p, "fail", nil, nil)
	if !errors.As(err, &ie) || ie.Code != "no_such_thing" || ie.Message != "there is no such thing" {
		t.Fatalf("fail = %#v", err)
	}
	err = call(t, p, "plain-fail", nil, nil)
	if !errors.As(err, &ie) || ie.Code != "" || ie.Message != "plain failure" {
		t.Fatalf("plain-fail = %#v", err)
	}
	err = call(t, p, "panic", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "panic: boom") {
		t.Fatalf("panic = %v", err)
	}
	// The helper survived its handler's panic.
	var s string
	if err := call(t, p, "echo", "still here", &s); err != nil || s != "still here" {
		t.Fatalf("echo after panic = %q, %v", s, err)
	}
	// The gateway side refuses calls when it serves none.
	var cb string
	err = call(t, p, "callback", nil, &cb)
	if !errors.As(err, &ie) || ie.Code != "unknown_method" {
		t.Fatalf("callback to a conn without handler = %#v", err)
	}
}

func TestLargeFrames(t *testing.T) {
	p := startHelper(t, nil)
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB: many partial writes
	for range 2 {
		var got string
		if err := call(t, p, "echo", big, &got); err != nil {
			t.Fatal(err)
		}
		if got != big {
			t.Fatalf("echo of %d bytes came back as %d bytes", len(big), len(got))
		}
	}
	defer func(l int) { sendLimit = l }(sendLimit)
	sendLimit = 2 << 20
	err := call(t, p, "echo", strings.Repeat("x", sendLimit), nil)
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized call = %v", err)
	}
	var s string
	if err := call(t, p, "echo", "small", &s); err != nil || s != "small" {
		t.Fatalf("call after refused oversize = %q, %v", s, err)
	}
}

func TestHelperDeath(t *testing.T) {
	p := startHelper(t, nil)
	err := call(t, p, "exit", nil, nil)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("call whose helper died = %v", err)
	}
	waitFor(t, p.Done(), "the helper to be reaped")
	var ee *exec.ExitError
	if !errors.As(p.ExitErr(), &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit = %v", p.ExitErr())
	}
	waitFor(t, p.Conn().Done(), "the connection to close")
	if err := call(t, p, "echo", "x", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after death = %v", err)
	}
}

func TestStopKillsStubbornHelper(t *testing.T) {
	p := startHelper(t, nil)
	var ok bool
	if err := call(t, p, "ignore-eof", nil, &ok); err != nil || !ok {
		t.Fatal(err)
	}
	stopErr := p.Stop(100 * time.Millisecond)
	var ee *exec.ExitError
	if !errors.As(p.ExitErr(), &ee) || ee.Exited() {
		t.Fatalf("a helper that ignores EOF was not killed: %v", p.ExitErr())
	}
	if stopErr != p.ExitErr() {
		t.Fatalf("Stop = %v, want the exit %v", stopErr, p.ExitErr())
	}
}

func TestStopOrderly(t *testing.T) {
	p := startHelper(t, nil)
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop of a helper that saw EOF = %v", err)
	}
	if err := p.ExitErr(); err != nil {
		t.Fatalf("a helper that saw EOF exited with %v", err)
	}
}

func TestStartWithContext(t *testing.T) {
	exe, _ := os.Executable()
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, helperName)); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvHelperDir, dir)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, helperName, StartOptions{Env: []string{"IPC_TEST_HELPER=1"}, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitFor(t, p.Done(), "the helper to stop with its context")
}

func TestLookup(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvHelperDir, dir)
	if _, err := Lookup("clawgate-nothing"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), EnvHelperDir) {
		t.Fatalf("missing helper: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup("plain"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("non-executable helper: %v", err)
	}
	for _, bad := range []string{"", "../x", "a/b", "/bin/sh"} {
		if _, err := Lookup(bad); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%q) = %v, want a refusal", bad, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "good"), []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if p, err := Lookup("good"); err != nil || p != filepath.Join(dir, "good") {
		t.Fatalf("Lookup(good) = %q, %v", p, err)
	}
	// A helper any user could have replaced is refused: a world-writable
	// file, or one in a world-writable directory without the sticky bit.
	if err := os.Chmod(filepath.Join(dir, "good"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup("good"); err == nil || !strings.Contains(err.Error(), "writable by every user") {
		t.Fatalf("Lookup of a world-writable helper = %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, "good"), 0o755); err != nil {
		t.Fatal(err)
	}
	for mode, ok := range map[os.FileMode]bool{0o777: false, 0o777 | os.ModeSticky: true, 0o755: true} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := Lookup("good"); (err == nil) != ok {
			t.Errorf("Lookup in a directory of mode %v = %v", mode, err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlink to a helper in a world-writable directory is refused too.
	open := t.TempDir()
	if err := os.WriteFile(filepath.Join(open, "linked"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(open, "linked"), filepath.Join(dir, "linked")); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup("linked"); err == nil || !strings.Contains(err.Error(), open) {
		t.Fatalf("Lookup through a symlink into a world-writable directory = %v", err)
	}
	// Without $CLAWGATE_HELPER_DIR only the executable's own directory
	// counts: a helper on $PATH is not run.
	t.Setenv(EnvHelperDir, "")
	t.Setenv("PATH", dir)
	if _, err := Lookup("clawgate-nothing"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "go install") {
		t.Fatalf("missing helper without %s: %v", EnvHelperDir, err)
	}
	if p, err := Lookup("good"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup(good) found %q on $PATH (%v); want ErrNotFound", p, err)
	}
}

func TestServeWithoutDescriptor(t *testing.T) {
	t.Setenv(EnvFD, "")
	if _, err := Serve(nil); err == nil || !strings.Contains(err.Error(), "not by hand") {
		t.Fatalf("Serve without %s = %v", EnvFD, err)
	}
	t.Setenv(EnvFD, "1")
	if _, err := Serve(nil); err == nil {
		t.Fatal("Serve accepted stdout as its connection")
	}
}

// TestPeerGone: calls pending when the peer goes away fail with ErrClosed,
// and a malformed frame ends the connection instead of being guessed at.
func TestPeerGone(t *testing.T) {
	a, b := pair(t)
	ca := NewConn(a, nil)
	defer ca.Close()
	res := make(chan error, 1)
	go func() { res <- ca.Call(context.Background(), "never", nil, nil) }()
	// b is the raw peer: read the request, then send garbage.
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(b, make([]byte, binary.BigEndian.Uint32(hdr))); err != nil {
		t.Fatal(err)
	}
	bad := []byte(`{"id":1,"method":"x","response":true}`)
	binary.BigEndian.PutUint32(hdr, uint32(len(bad)))
	if _, err := b.Write(append(hdr, bad...)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("pending call = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a malformed frame did not end the connection")
	}
	if ca.Err() == nil || errors.Is(ca.Err(), ErrClosed) {
		t.Fatalf("Err() = %v, want the frame error", ca.Err())
	}
}

func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	ca, fb, err := SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	cb, err := net.FileConn(fb)
	fb.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb.(*net.UnixConn)
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"method":"echo","params":"x"}`,
		`{"id":1,"response":true,"result":{"a":1}}`,
		`{"id":2,"response":true,"error":{"code":"x","message":"y"}}`,
		`{"cancel":3}`,
		`{"id":4,"method":"write","params":"t","files":1}`,
	} {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(s)))
		f.Add(append(b, s...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := parseFrame(b)
		if err != nil {
			if fr != nil || n != 0 {
				t.Fatal("an error with a frame")
			}
			return
		}
		if fr == nil {
			if n != 0 {
				t.Fatal("no frame but consumed bytes")
			}
			return
		}
		if n < 5 || n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		kinds := 0
		for _, k := range []bool{fr.Method != "", fr.Response, fr.Cancel != 0} {
			if k {
				kinds++
			}
		}
		if kinds != 1 {
			t.Fatalf("frame of %d kinds: %+v", kinds, fr)
		}
		if _, err := json.Marshal(fr); err != nil {
			t.Fatal(err)
		}
	})
}

// TestHelperEnvironment: a helper inherits the harmless part of the
// gateway's environment and what StartOptions.Env adds, and none of the
// gateway's secrets, whatever their names, nor its systemd notify socket.
func TestHelperEnvironment(t *testing.T) {
	secrets := map[string]string{
		"CLAWGATE_GATEWAY_TOKEN":    "gw-token",
		"OPENCLAW_GATEWAY_PASSWORD": "gw-password",
		"TS_AUTHKEY":                "tskey-auth-x",
		"MY_SLACK_BOT":              "xoxb-named-by-the-config", // a provider's apiKeyEnv/env
		"OPENAI_API_KEY":            "sk-x",
		"NOTIFY_SOCKET":             "/run/systemd/notify",
		"WATCHDOG_USEC":             "1000000",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("LC_TIME", "C")
	t.Setenv("TS_DEBUG_FIREWALL_MODE", "auto")
	t.Setenv("TSNET_FORCE_LOGIN", "1")
	p := startHelper(t, nil)
	for k := range secrets {
		var got string
		if err := call(t, p, "getenv", k, &got); err != nil {
			t.Fatal(err)
		}
		if got != "" {
			t.Errorf("the helper inherited %s=%s", k, got)
		}
	}
	for k, want := range map[string]string{"PATH": os.Getenv("PATH"), "LC_TIME": "C",
		"TS_DEBUG_FIREWALL_MODE": "auto", "TSNET_FORCE_LOGIN": "1", "IPC_TEST_HELPER": "1"} {
		var got string
		if err := call(t, p, "getenv", k, &got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("helper's %s = %q, want %q", k, got, want)
		}
	}
}

// TestOversizedResult: a handler whose result (or error) is too large for
// a frame answers its caller with an error; the connection, and the calls
// after it, go on.
func TestOversizedResult(t *testing.T) {
	defer func(l int) { sendLimit = l }(sendLimit)
	sendLimit = 64 << 10
	a, b := pair(t)
	big := strings.Repeat("x", sendLimit)
	server := NewConn(b, func(ctx context.Context, req *Request) (any, error) {
		switch req.Method {
		case "big-result":
			return big, nil
		case "big-error":
			return nil, errors.New(big)
		}
		return "small", nil
	})
	defer server.Close()
	client := NewConn(a, nil)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, m := range []string{"big-result", "big-error"} {
		var got string
		err := client.Call(ctx, m, nil, &got)
		var ie *Error
		if !errors.As(err, &ie) || !strings.Contains(ie.Message, "exceeds") {
			t.Fatalf("%s = %d bytes, %v; want an error saying the answer was too large", m, len(got), err)
		}
	}
	var got string
	if err := client.Call(ctx, "small", nil, &got); err != nil || got != "small" {
		t.Fatalf("call after an oversized answer = %q, %v", got, err)
	}
}

// TestPeerStopsReading: a peer that takes no more frames (a stopped or
// hung helper) holds up no call past its context, and a frame it does not
// take within writeTimeout ends the connection instead of pinning the
// callers' goroutines forever.
func TestPeerStopsReading(t *testing.T) {
	defer func(d time.Duration) { writeTimeout = d }(writeTimeout)
	writeTimeout = time.Second
	a, b := pair(t) // b is never read past the first frame's header
	defer b.Close()
	client := NewConn(a, nil)
	defer client.Close()
	big := strings.Repeat("x", 4<<20) // more than the socket buffers hold
	first := make(chan error, 1)
	go func() { first <- client.Call(context.Background(), "big", big, nil) }()
	// The first call's frame has begun: it holds the socket, its write
	// blocked on the full buffers.
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		second <- client.Call(ctx, "small", nil, nil)
	}()
	select {
	case err := <-second:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a call behind a blocked frame = %v, want its context's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a call was held past its context behind another call's blocked frame")
	}
	// The blocked frame fails and takes the connection down.
	select {
	case err := <-first:
		if err == nil {
			t.Fatal("a call whose frame the peer never took succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a call blocked writing to a peer that stopped reading never returned")
	}
	waitFor(t, client.Done(), "the connection to a peer that stopped reading to close")
}

// TestTooManyCallsInFlight: a peer that keeps more than maxServing calls
// waiting in the handlers is cut off, instead of growing this side's
// goroutines without bound; the handlers' contexts end.
func TestTooManyCallsInFlight(t *testing.T) {
	defer func(n int) { maxServing = n }(maxServing)
	maxServing = 8
	a, b := pair(t)
	var started sync.WaitGroup
	started.Add(maxServing)
	ended := make(chan struct{}, maxServing+1)
	server := NewConn(b, func(ctx context.Context, req *Request) (any, error) {
		started.Done()
		<-ctx.Done()
		ended <- struct{}{}
		return nil, ctx.Err()
	})
	defer server.Close()
	client := NewConn(a, nil)
	defer client.Close()
	errs := make(chan error, maxServing+1)
	for range maxServing {
		go func() { errs <- client.Call(context.Background(), "wait", nil, nil) }()
	}
	started.Wait()
	go func() { errs <- client.Call(context.Background(), "one-too-many", nil, nil) }()
	waitFor(t, server.Done(), "the connection to end at one call too many")
	if err := server.Err(); err == nil || !strings.Contains(err.Error(), "in flight") {
		t.Fatalf("Err() = %v, want the calls in flight named", err)
	}
	for range maxServing + 1 {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Fatalf("a call to the cut-off peer = %v", err)
		}
	}
	for range maxServing {
		waitFor(t, ended, "a handler's context to end")
	}
}

// TestCallsWaitForASlot: this side keeps at most maxCalls calls in flight;
// a further call waits within its context rather than pushing the peer
// past its bound, and the connection stays up.
func TestCallsWaitForASlot(t *testing.T) {
	defer func(n int) { maxCalls = n }(maxCalls)
	maxCalls = 4
	a, b := pair(t)
	var mu sync.Mutex
	inFlight, most := 0, 0
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(maxCalls)
	server := NewConn(b, func(ctx context.Context, req *Request) (any, error) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		if req.Method == "wait" {
			started.Done()
			<-release
		}
		return "ok", nil
	})
	defer server.Close()
	client := NewConn(a, nil)
	defer client.Close()
	errs := make(chan error, maxCalls)
	for range maxCalls {
		go func() { errs <- client.Call(context.Background(), "wait", nil, nil) }()
	}
	started.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := client.Call(ctx, "quick", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call past maxCalls = %v, want it to wait out its context", err)
	}
	close(release)
	for range maxCalls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var s string
	if err := client.Call(context.Background(), "quick", nil, &s); err != nil || s != "ok" {
		t.Fatalf("call after the slots freed = %q, %v", s, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if most > maxCalls {
		t.Fatalf("the peer saw %d calls at once, want at most %d", most, maxCalls)
	}
}

// TestCancelWhileSocketBusy: a call whose context ends returns at once,
// even when another call's frame holds the socket (the cancellation goes
// out when the socket frees, or not at all if the connection ends).
func TestCancelWhileSocketBusy(t *testing.T) {
	a, b := pair(t)
	defer b.Close()
	client := NewConn(a, nil)
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- client.Call(ctx, "first", nil, nil) }()
	// Read the first request whole, then stop reading.
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(b, make([]byte, binary.BigEndian.Uint32(hdr))); err != nil {
		t.Fatal(err)
	}
	// A second call's frame fills the buffers and holds the socket.
	go func() { _ = client.Call(context.Background(), "big", strings.Repeat("x", 4<<20), nil) }()
	if _, err := io.ReadFull(b, hdr); err != nil { // its write has begun
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-first:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled call waited for the busy socket to send its cancellation")
	}
}

// TestHelperOutlivesStopSignals: the signals a terminal's Ctrl-C or a
// service manager's stop send to the whole process group or cgroup do not
// kill a helper: it serves on, and exits when the gateway, which is
// shutting down gracefully, closes the connection.
func TestHelperOutlivesStopSignals(t *testing.T) {
	p := startHelper(t, nil)
	var s string
	if err := call(t, p, "echo", "serving", &s); err != nil { // Serve has run
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		if err := syscall.Kill(p.Pid(), sig); err != nil {
			t.Fatal(err)
		}
		if err := call(t, p, "echo", "still here", &s); err != nil || s != "still here" {
			t.Fatalf("after %v: echo = %q, %v (exit %v)", sig, s, err, exitIfDone(p))
		}
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop after the signals = %v", err)
	}
}

func exitIfDone(p *Process) error {
	select {
	case <-p.Done():
		return p.ExitErr()
	default:
		return nil
	}
}

// TestCallToVanishedPeer: a call to a peer that has just gone is ErrClosed
// (what callers test for to say "the helper exited"), whether the read
// side or the write side notices first.
func TestCallToVanishedPeer(t *testing.T) {
	for i := range 50 {
		a, b := pair(t)
		client := NewConn(a, nil)
		_ = b.Close()
		err := client.Call(context.Background(), "x", strings.Repeat("y", 1<<10), nil)
		_ = client.Close()
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("try %d: call to a closed peer = %v, want ErrClosed", i, err)
		}
	}
}

// TestInheritedDescriptorsStayWithTheGateway: a descriptor the gateway
// inherited without close-on-exec does not reach a helper.
func TestInheritedDescriptorsStayWithTheGateway(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd")
	}
	marker := filepath.Join(t.TempDir(), "inherited-secret")
	fd, err := syscall.Open(marker, syscall.O_CREAT|syscall.O_WRONLY, 0o600) // no O_CLOEXEC, like an inherited one
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	p := startHelper(t, nil)
	var open []string
	if err := call(t, p, "open-files", nil, &open); err != nil {
		t.Fatal(err)
	}
	if len(open) < 4 {
		t.Fatalf("the helper lists %d open files: %q", len(open), open)
	}
	for _, target := range open {
		if target == marker {
			t.Fatalf("the helper inherited %s (fd %d of the gateway)", marker, fd)
		}
	}
}
