package gateway

import (
	"runtime"
	rtmetrics "runtime/metrics"
	"testing"
	"time"
)

var trimSink []byte

// surplus leaves 64 MiB of freed heap resident, as a burst of handshakes
// does.
func surplus() {
	trimSink = make([]byte, 64<<20)
	for i := 0; i < len(trimSink); i += 4096 {
		trimSink[i] = 1 // resident
	}
	trimSink = nil
	runtime.GC()
}

func heapReleased() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// The gateway returns freed memory to the OS only when it has been quiet
// for a whole interval (no connection accepted), holds much more heap
// than is live, and has not done so in the last minute. Steps are driven
// by hand: the test is about the decision, not the timer. Not parallel:
// the decision reads the process's heap.
func TestMemoryTrim(t *testing.T) {
	g := startGateway(t, func(o *Options) { o.TrimInterval = -1 })
	tr := g.srv.newTrimmer()
	now := time.Now()

	surplus()
	w := g.authed(t, "") // a connection accepted since the last step: busy
	if tr.step(now) {
		t.Fatal("trimmed while connections were arriving")
	}
	before := heapReleased()
	if !tr.step(now.Add(time.Second)) {
		t.Fatal("no trim when quiet with 64 MiB of freed heap resident")
	}
	if got := heapReleased(); got < before+32<<20 {
		t.Errorf("released heap %d -> %d bytes, want 32 MiB more", before, got)
	}
	if n := g.srv.metrics.memoryTrims.Load(); n != 1 {
		t.Fatalf("trims counted %d, want 1", n)
	}

	surplus()
	if tr.step(now.Add(30 * time.Second)) {
		t.Fatal("trimmed twice within a minute")
	}
	if !tr.step(now.Add(time.Second + trimMinGap)) {
		t.Fatal("no trim a minute later, quiet with freed heap resident")
	}
	// Right after a trim there is nothing to return.
	if tr.step(now.Add(time.Second + 3*trimMinGap)) {
		t.Fatal("trimmed with no freed heap resident")
	}
	w.text(`{"type":"req","id":"still","method":"health"}`)
	for f := w.json(); f["id"] != "still"; f = w.json() {
	}
}
