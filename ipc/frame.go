package ipc

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

var errEOF = io.EOF

// reader collects bytes and descriptors from the socket and cuts frames.
// Descriptors arrive with (or before) the first byte of the frame that
// counts them, so a queue in arrival order pairs them with their frame.
type reader struct {
	data       []byte // data[start:end] is unread
	start, end int
	files      []*os.File
	oob        []byte
}

func (r *reader) closeFiles() {
	closeAll(r.files)
	r.files = nil
}

// next returns the next frame and the descriptors it carries.
func (r *reader) next(uc *net.UnixConn) (*frame, []*os.File, error) {
	if r.oob == nil {
		r.oob = make([]byte, syscall.CmsgSpace(maxFiles*4))
	}
	for {
		f, n, err := parseFrame(r.data[r.start:r.end])
		if err != nil {
			return nil, nil, err
		}
		if f != nil {
			r.start += n
			if f.Files < 0 || f.Files > maxFiles || f.Files > len(r.files) {
				return nil, nil, fmt.Errorf("ipc: frame counts %d descriptors, %d received", f.Files, len(r.files))
			}
			files := r.files[:f.Files:f.Files]
			r.files = r.files[f.Files:]
			return f, files, nil
		}
		if err := r.fill(uc); err != nil {
			return nil, nil, err
		}
	}
}

// fill reads once from the socket.
func (r *reader) fill(uc *net.UnixConn) error {
	const small = 64 << 10
	if r.start == r.end && len(r.data) > small {
		r.data, r.start, r.end = nil, 0, 0 // a large frame is done with: give its buffer back
	}
	if r.start > 0 {
		r.end = copy(r.data, r.data[r.start:r.end])
		r.start = 0
	}
	if r.end == len(r.data) {
		grown := make([]byte, max(small, 2*len(r.data)))
		copy(grown, r.data[:r.end])
		r.data = grown
	}
	n, oobn, _, _, err := uc.ReadMsgUnix(r.data[r.end:], r.oob)
	r.end += n
	if oobn > 0 {
		if perr := r.takeRights(r.oob[:oobn]); perr != nil {
			return perr
		}
	}
	if err != nil {
		return err
	}
	if n == 0 && oobn == 0 {
		return errEOF
	}
	return nil
}

func (r *reader) takeRights(oob []byte) error {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("ipc: control message: %w", err)
	}
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			r.files = append(r.files, os.NewFile(uintptr(fd), "ipc"))
		}
	}
	if len(r.files) > 4*maxFiles {
		return errors.New("ipc: too many descriptors without a frame")
	}
	return nil
}

// parseFrame decodes the frame at the start of b. It returns nil and 0 when
// b holds only part of one.
func parseFrame(b []byte) (*frame, int, error) {
	if len(b) < 4 {
		return nil, 0, nil
	}
	size := binary.BigEndian.Uint32(b)
	if size == 0 || size > MaxFrame {
		return nil, 0, fmt.Errorf("ipc: frame length %d", size)
	}
	if uint64(len(b)-4) < uint64(size) {
		return nil, 0, nil
	}
	var f frame
	if err := json.Unmarshal(b[4:4+size], &f); err != nil {
		return nil, 0, fmt.Errorf("ipc: frame: %w", err)
	}
	kinds := 0
	if f.Method != "" {
		kinds++
	}
	if f.Response {
		kinds++
	}
	if f.Cancel != 0 {
		kinds++
	}
	if kinds != 1 || (f.ID == 0 && f.Cancel == 0) {
		return nil, 0, errors.New("ipc: frame is not exactly one of request, response, cancel")
	}
	return &f, 4 + int(size), nil
}
