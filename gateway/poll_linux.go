//go:build linux

package gateway

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller watches the sockets of idle authenticated connections with one
// epoll instance and one goroutine, instead of a goroutine parked in read
// per connection. Each socket is armed EPOLLIN|EPOLLRDHUP|EPOLLONESHOT
// when its reader parks it; the event (data, peer close or error) starts a
// reader, which re-arms once it has handled everything received. Read
// deadlines are checked by the same goroutine between waits.
type poller struct {
	srv   *Server
	epfd  int
	every time.Duration // how often parked read deadlines are checked
	stop  atomic.Bool
	done  chan struct{}

	mu    sync.Mutex
	slots map[uint32]*Conn // registered connections by slot
	next  uint32

	parked atomic.Int64 // connections armed and waiting (tests, metrics)
}

// newPoller starts the poller, or returns nil (connections then read on a
// goroutine each) if epoll is not available.
func newPoller(s *Server) *poller {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		s.log.Warn("epoll unavailable; idle connections keep a goroutine each", "err", err)
		return nil
	}
	// A parked connection whose deadline passed is noticed within a sixth
	// of a tick (the deadline is two ticks and a half), and within a second.
	every := min(max(s.opts.TickInterval/6, 5*time.Millisecond), time.Second)
	p := &poller{srv: s, epfd: epfd, every: every, done: make(chan struct{}), slots: make(map[uint32]*Conn)}
	go p.run()
	return p
}

// connFD returns the descriptor of a TCP or Unix socket (a RelayedConn's
// included), or -1 for any other connection (TLS, test pipes), which then
// reads on a goroutine.
func connFD(nc net.Conn) int {
	switch c := nc.(type) {
	case *net.TCPConn, *net.UnixConn:
	case *RelayedConn:
		if c.UnixConn == nil {
			return -1
		}
		nc = c.UnixConn
	default:
		return -1
	}
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if rc.Control(func(f uintptr) { fd = int(f) }) != nil {
		return -1
	}
	return fd
}

// arm registers or re-arms c's socket; c.mu is held.
func (p *poller) arm(c *Conn) error {
	op := unix.EPOLL_CTL_MOD
	if !c.poll.registered {
		op = unix.EPOLL_CTL_ADD
		p.mu.Lock()
		for {
			p.next++
			if _, used := p.slots[p.next]; !used {
				break
			}
		}
		c.poll.slot = p.next
		p.slots[p.next] = c
		p.mu.Unlock()
	}
	if err := p.ctl(c, op); err != nil {
		if op == unix.EPOLL_CTL_ADD {
			p.mu.Lock()
			delete(p.slots, c.poll.slot)
			p.mu.Unlock()
		}
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	c.poll.registered = true
	p.parked.Add(1)
	return nil
}

// ctl adds or re-arms c's socket for one readiness event, tagged with the
// next arming gen; c.mu is held.
func (p *poller) ctl(c *Conn, op int) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd:     int32(c.poll.slot),
		Pad:    int32(c.poll.gen + 1),
	}
	if err := unix.EpollCtl(p.epfd, op, int(c.poll.fd), &ev); err != nil {
		return err
	}
	c.poll.gen++
	return nil
}

// takePong consumes a pong that woke a parked connection without starting
// a reader: every peer answers the ping each tick brings, and a goroutine
// per answer is most of what an idle connection would cost. It peeks at
// the socket (the connection's read buffer is empty while it is parked)
// and takes the bytes only when they begin with a whole masked pong with
// a short payload; then it re-arms the read deadline, as gorilla's pong
// handler does, and the poller. Anything else (data, a ping, a close, a
// partial frame) returns false and gets a reader.
func (p *poller) takePong(c *Conn, gen uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.poll.state != pollParked || gen != c.poll.gen || c.closing {
		return false // a closing connection's reader reads to the end
	}
	var b [16]byte
	fd := int(c.poll.fd)
	n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil || n < 6 {
		return false
	}
	// FIN, no RSV bits, pong; masked, at most 10 payload bytes.
	size := 6 + int(b[1]&0x7f)
	if b[0] != 0x8a || b[1]&0x80 == 0 || size > n {
		return false
	}
	if m, err := unix.Read(fd, b[:size]); err != nil || m != size {
		return false // cannot happen for peeked bytes; the reader sorts it out
	}
	c.armReadDeadline()
	if err := p.ctl(c, unix.EPOLL_CTL_MOD); err != nil {
		return false // still parked for gen: the caller starts the reader
	}
	return true
}

// remove deregisters c's socket, which is still open; c.mu is held.
func (p *poller) remove(c *Conn) {
	if c.poll.state == pollParked {
		p.parked.Add(-1)
	}
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(c.poll.fd), nil)
	c.poll.registered = false
	p.mu.Lock()
	delete(p.slots, c.poll.slot)
	p.mu.Unlock()
}

// unparked records that c left the parked state; c.mu is held.
func (p *poller) unparked() { p.parked.Add(-1) }

func (p *poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	wait := int(p.every / time.Millisecond)
	last := time.Now()
	for !p.stop.Load() {
		// Deadlines are judged as of before the wait: every byte that
		// arrived by then is in this batch of events, so a late poller
		// (descheduled after the wait) does not expire a peer whose pong
		// is waiting to be taken.
		waitStart := time.Now()
		n, err := unix.EpollWait(p.epfd, events, wait)
		if err != nil && !errors.Is(err, unix.EINTR) {
			p.srv.log.Error("epoll_wait failed; poller stopped", "err", err)
			return
		}
		for _, ev := range events[:max(n, 0)] {
			p.mu.Lock()
			c := p.slots[uint32(ev.Fd)]
			p.mu.Unlock()
			if c == nil {
				continue
			}
			if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 && p.takePong(c, uint32(ev.Pad)) {
				continue
			}
			c.unpark(uint32(ev.Pad), true)
		}
		if now := time.Now(); now.Sub(last) >= p.every {
			last = now
			p.expire(waitStart)
		}
	}
}

// expire wakes the parked connections whose read deadline has passed; their
// reader sees the timeout and ends them.
func (p *poller) expire(now time.Time) {
	var due []*Conn
	t := now.UnixNano()
	p.mu.Lock()
	for _, c := range p.slots {
		if d := c.readDeadline.Load(); d != 0 && d <= t {
			due = append(due, c)
		}
	}
	p.mu.Unlock()
	for _, c := range due {
		c.unpark(0, false)
	}
}

// close stops the poller once no connection is registered.
func (p *poller) close() {
	p.stop.Store(true)
	<-p.done
	_ = unix.Close(p.epfd)
}

// rawWrite writes b to a non-blocking socket once (retrying only on
// EINTR); n is what the socket took.
func rawWrite(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), err
	}
}

func isAgain(err error) bool { return err == unix.EAGAIN }
