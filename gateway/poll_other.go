//go:build !linux

package gateway

import (
	"errors"
	"net"
	"sync/atomic"
)

// poller is Linux only (poll_linux.go); elsewhere every authenticated
// connection keeps a reader goroutine waiting in read.
type poller struct {
	parked atomic.Int64
}

func newPoller(*Server) *poller { return nil }

func connFD(net.Conn) int { return -1 }

func (p *poller) arm(*Conn) error { return errors.New("no poller on this platform") }
func (p *poller) remove(*Conn)    {}
func (p *poller) unparked()       {}
func (p *poller) close()          {}

func rawWrite(int, []byte) (int, error) { return 0, errors.New("no direct writes on this platform") }
func isAgain(error) bool                { return false }
