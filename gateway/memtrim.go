package gateway

import (
	"context"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// A burst of connections (thousands of handshakes, a reconnect storm)
// leaves the Go heap holding far more memory than the connections that
// stay need: the collector lets the heap grow to twice the live heap of
// its last cycle before collecting, and the runtime hands pages back to
// the OS only above that goal. On a gateway that then sits idle with its
// connections, nothing allocates enough to start another cycle, so the
// burst's memory stays resident, about as much again as everything that
// is live. trimLoop notices when the gateway has gone quiet (no
// connection accepted for one interval) with much more heap resident
// than live, and then collects and returns the free pages to the OS
// once (debug.FreeOSMemory). It does so at most once a minute, so a
// gateway that keeps busy pays at most one extra collection a minute.

const (
	trimMinGap     = time.Minute // between two trims
	trimMinSurplus = 4 << 20     // resident heap beyond live worth a trim
)

var trimSamples = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
}

func (s *Server) trimLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.TrimInterval)
	defer t.Stop()
	tr := s.newTrimmer()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			tr.step(now)
		}
	}
}

// trimmer is trimLoop's state between ticks.
type trimmer struct {
	s        *Server
	samples  []rtmetrics.Sample
	accepted int64     // connections accepted as of the last step
	last     time.Time // the last trim
}

func (s *Server) newTrimmer() *trimmer {
	tr := &trimmer{s: s, samples: make([]rtmetrics.Sample, len(trimSamples)), accepted: s.acceptedTotal()}
	for i, name := range trimSamples {
		tr.samples[i].Name = name
	}
	return tr
}

// step trims if the gateway was quiet since the last step, no trim was
// made in the last trimMinGap, and the resident heap exceeds the live
// heap by trimMinSurplus or half, whichever is more. It reports whether
// it trimmed.
func (tr *trimmer) step(now time.Time) bool {
	n := tr.s.acceptedTotal()
	quiet := n == tr.accepted
	tr.accepted = n
	if !quiet || !tr.last.IsZero() && now.Sub(tr.last) < trimMinGap {
		return false
	}
	rtmetrics.Read(tr.samples)
	live := tr.samples[0].Value.Uint64()
	resident := tr.samples[1].Value.Uint64() + tr.samples[2].Value.Uint64() + tr.samples[3].Value.Uint64()
	if resident < live+max(trimMinSurplus, live/2) {
		return false
	}
	debug.FreeOSMemory()
	tr.last = now
	tr.s.metrics.memoryTrims.Add(1)
	tr.s.log.Debug("returned freed memory to the OS", "liveBytes", live, "residentHeapBytes", resident)
	return true
}

// acceptedTotal counts the TCP connections accepted on every listener.
func (s *Server) acceptedTotal() int64 {
	var n int64
	for i := range s.metrics.accepted {
		n += s.metrics.accepted[i].Load()
	}
	return n
}
