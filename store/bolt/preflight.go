package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk format (version 2), as far as Open needs it to refuse a
// damaged file before mapping it: bbolt maps the whole file and a page
// pointer past its end is a SIGBUS, not an error.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16   // id u64, flags u16, count u16, overflow u32
	metaLen        = 64   // magic..txid (56 bytes) + checksum u64
	metaPageFlag   = 0x04 // page.flags of a meta page
	noFreelist     = ^uint64(0)
	minPageSize    = 512
	maxPageSize    = 1 << 24
)

// metaPage is the part of a bbolt meta page preflight checks.
type metaPage struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) must be in the file
	txid     uint64
}

var errBadMeta = errors.New("invalid meta page")

// readMeta reads and validates the meta page at off: flags, magic, version
// and FNV-64a checksum, exactly as bbolt validates it.
func readMeta(f *os.File, off int64) (metaPage, error) {
	var buf [pageHeaderSize + metaLen]byte
	if _, err := f.ReadAt(buf[:], off); err != nil {
		if errors.Is(err, io.EOF) {
			return metaPage{}, errBadMeta
		}
		return metaPage{}, err
	}
	ne := binary.NativeEndian
	if ne.Uint16(buf[8:10])&metaPageFlag == 0 {
		return metaPage{}, errBadMeta
	}
	m := buf[pageHeaderSize:]
	if ne.Uint32(m[0:4]) != boltMagic || ne.Uint32(m[4:8]) != boltVersion {
		return metaPage{}, errBadMeta
	}
	h := fnv.New64a()
	_, _ = h.Write(m[:56])
	if h.Sum64() != ne.Uint64(m[56:64]) {
		return metaPage{}, errBadMeta
	}
	mp := metaPage{
		pageSize: ne.Uint32(m[8:12]),
		root:     ne.Uint64(m[16:24]),
		freelist: ne.Uint64(m[32:40]),
		pgid:     ne.Uint64(m[40:48]),
		txid:     ne.Uint64(m[48:56]),
	}
	if mp.pageSize < minPageSize || mp.pageSize > maxPageSize || mp.pageSize&(mp.pageSize-1) != 0 {
		return metaPage{}, errBadMeta
	}
	return mp, nil
}

// preflight checks that f (of size bytes) has at least one valid bbolt meta
// page and that every valid one stays within the file: a truncated copy
// keeps valid meta pages that point past its end.
func preflight(f *os.File, size int64) error {
	if size == 0 {
		return errors.New("the file is empty (0 bytes), not an initialised state file")
	}
	var metas []metaPage
	m0, err := readMeta(f, 0)
	switch {
	case err == nil:
		metas = append(metas, m0)
		if m1, err := readMeta(f, int64(m0.pageSize)); err == nil && m1.pageSize == m0.pageSize {
			metas = append(metas, m1)
		} else if err != nil && !errors.Is(err, errBadMeta) {
			return err
		}
	case errors.Is(err, errBadMeta):
		// Meta 0 is torn or damaged: find meta 1 the way bbolt does, by
		// trying each page size.
		for i := 0; i <= 14; i++ {
			off := int64(1024) << i
			if off >= size {
				break
			}
			if m1, err := readMeta(f, off); err == nil && int64(m1.pageSize) == off {
				metas = append(metas, m1)
				break
			}
		}
	default:
		return err
	}
	if len(metas) == 0 {
		return fmt.Errorf("no valid bbolt meta page in %d bytes (not a clawgate state file, or damaged)", size)
	}
	for _, m := range metas {
		ps := uint64(m.pageSize)
		if m.pgid < 2 || m.pgid > uint64(size)/ps {
			return fmt.Errorf("truncated: the header (txid %d) spans %d pages of %d bytes but the file has only %d bytes",
				m.txid, m.pgid, ps, size)
		}
		if m.root >= m.pgid || (m.freelist >= m.pgid && m.freelist != noFreelist) {
			return fmt.Errorf("meta page (txid %d) points past its high-water mark", m.txid)
		}
	}
	return nil
}
