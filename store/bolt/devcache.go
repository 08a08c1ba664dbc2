package bolt

import (
	"bytes"
	"sync"

	"github.com/clawgate/clawgate/store"
)

// maxCachedDevices bounds the device cache; past it an arbitrary entry is
// dropped for each new one.
const maxCachedDevices = 1024

// deviceCache keeps the decoded form of device records next to the exact
// bytes they were decoded from, so a connect that reads an unchanged record
// costs a byte compare and a copy instead of a JSON decode. An entry is used
// only when the bytes stored in the reading transaction are identical to its
// own: a record changed by any write (approval, rotation, revocation,
// removal, a flush of last-used times), even one committed an instant
// earlier, never matches and is decoded afresh. So the cache needs no
// invalidation to be correct; deletes only drop entries to free memory. A
// nil *deviceCache caches nothing.
type deviceCache struct {
	mu sync.RWMutex
	m  map[string]*cachedDevice
}

// cachedDevice is immutable once stored: readers get clones of dev.
type cachedDevice struct {
	raw []byte
	dev store.PairedDevice
}

func newDeviceCache() *deviceCache { return &deviceCache{m: make(map[string]*cachedDevice)} }

// get returns a copy of the record decoded from raw, if cached.
func (c *deviceCache) get(id string, raw []byte) (store.PairedDevice, bool) {
	if c == nil {
		return store.PairedDevice{}, false
	}
	c.mu.RLock()
	e := c.m[id]
	c.mu.RUnlock()
	if e == nil || !bytes.Equal(e.raw, raw) {
		return store.PairedDevice{}, false
	}
	return e.dev.Clone(), true
}

// put remembers d as the decoding of raw (which may point into the memory
// map: it is copied). d is cloned, so the caller keeps its own.
func (c *deviceCache) put(id string, raw []byte, d *store.PairedDevice) {
	if c == nil {
		return
	}
	e := &cachedDevice{raw: bytes.Clone(raw), dev: d.Clone()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok && len(c.m) >= maxCachedDevices {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[id] = e
}

// drop forgets id.
func (c *deviceCache) drop(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}
