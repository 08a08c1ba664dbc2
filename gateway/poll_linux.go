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

// connFD returns the descriptor of a TCP or Unix socket, or -1 for any
// other connection (tsnet, TLS, test pipes), which then reads on a
// goroutine.
func connFD(nc net.Conn) int {
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
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
	c.poll.gen++
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd:     int32(c.poll.slot),
		Pad:    int32(c.poll.gen),
	}
	if err := unix.EpollCtl(p.epfd, op, int(c.poll.fd), &ev); err != nil {
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
		n, err := unix.EpollWait(p.epfd, events, wait)
		if err != nil && !errors.Is(err, unix.EINTR) {
			p.srv.log.Error("epoll_wait failed; poller stopped", "err", err)
			return
		}
		for _, ev := range events[:max(n, 0)] {
			p.mu.Lock()
			c := p.slots[uint32(ev.Fd)]
			p.mu.Unlock()
			if c != nil {
				c.unpark(uint32(ev.Pad), true)
			}
		}
		if now := time.Now(); now.Sub(last) >= p.every {
			last = now
			p.expire(now)
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
