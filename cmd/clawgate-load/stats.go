package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// latencies collects durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Dist is a latency distribution in milliseconds.
type Dist struct {
	N    int     `json:"n"`
	Mean float64 `json:"meanMs"`
	P50  float64 `json:"p50Ms"`
	P90  float64 `json:"p90Ms"`
	P99  float64 `json:"p99Ms"`
	P999 float64 `json:"p999Ms"`
	Max  float64 `json:"maxMs"`
}

func (l *latencies) dist() Dist {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	return distOf(d)
}

func distOf(d []time.Duration) Dist {
	if len(d) == 0 {
		return Dist{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return ms(d[max(0, min(i, len(d)-1))])
	}
	return Dist{N: len(d), Mean: round3(ms(sum) / float64(len(d))), P50: q(0.50), P90: q(0.90),
		P99: q(0.99), P999: q(0.999), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// errorLog counts errors and keeps the first few distinct messages.
type errorLog struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (e *errorLog) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	msg := err.Error()
	if len(e.first) < 5 && !slices.Contains(e.first, msg) {
		e.first = append(e.first, msg)
	}
}

func (e *errorLog) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

func (e *errorLog) samples() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.first)
}

// Summary is the JSON document the tool writes.
type Summary struct {
	Target    string    `json:"target"`
	URL       string    `json:"url"`
	StartedAt time.Time `json:"startedAt"`
	Sources   int       `json:"sourceAddresses"`
	PID       int       `json:"pid,omitempty"`
	// VerifyBefore and VerifyAfter are the ed25519 verify ceiling measured
	// before the first and after the last scenario (--verify-ceiling).
	VerifyBefore *VerifyCost       `json:"verifyCeilingBefore,omitempty"`
	VerifyAfter  *VerifyCost       `json:"verifyCeilingAfter,omitempty"`
	Results      []*ScenarioResult `json:"results"`
}

func (s *Summary) failed() int {
	n := 0
	for _, r := range s.Results {
		if r.Error != "" {
			n++
		}
	}
	return n
}

// ScenarioResult is one scenario's outcome. Fields that do not apply stay
// out of the JSON.
type ScenarioResult struct {
	Scenario    string   `json:"scenario"`
	Error       string   `json:"error,omitempty"`
	Concurrency int      `json:"concurrency,omitempty"`
	Attempted   int      `json:"attempted"`
	OK          int      `json:"ok"`
	Failed      int      `json:"failed"`
	FirstErrors []string `json:"firstErrors,omitempty"`
	ElapsedMs   float64  `json:"elapsedMs"`
	PerSecond   float64  `json:"perSecond,omitempty"`
	Latency     *Dist    `json:"latency,omitempty"`

	// idle
	Before        *MemSample `json:"memBefore,omitempty"`
	After         *MemSample `json:"memAfter,omitempty"`
	AfterClose    *MemSample `json:"memAfterClose,omitempty"`
	Open          int        `json:"openAfterHold,omitempty"`
	TicksMin      int        `json:"ticksMin,omitempty"`
	TicksMean     float64    `json:"ticksMean,omitempty"`
	RSSPerConnKiB float64    `json:"rssPerConnKiB,omitempty"`
	// AnonPerConnKiB leaves out file pages (the executable's code faulted
	// in by the first connections): what the connections themselves hold.
	AnonPerConnKiB  float64 `json:"rssAnonPerConnKiB,omitempty"`
	TreePerConnKiB  float64 `json:"treeRssPerConnKiB,omitempty"`
	HeapPerConnKiB  float64 `json:"heapPerConnKiB,omitempty"`
	OpenMs          float64 `json:"openMs,omitempty"`
	ConnectionsSeen int     `json:"gatewayConnections,omitempty"`

	// fanout
	Rounds int `json:"rounds,omitempty"`
	Missed int `json:"missed,omitempty"`

	// paired, shared
	Devices int `json:"devices,omitempty"`

	// handshake, paired, shared, connect-health with --pid: the gateway's
	// CPU time per completed connection over the main loop.
	ServerCPU *ServerCPU `json:"serverCpu,omitempty"`
}

// MemSample is the gateway's memory at one moment, from /proc and/or from
// its status method.
type MemSample struct {
	RSSBytes     uint64 `json:"rssBytes,omitempty"`     // the gateway process
	AnonBytes    uint64 `json:"rssAnonBytes,omitempty"` // its RssAnon (no file pages)
	TreeRSSBytes uint64 `json:"treeRssBytes,omitempty"` // with its child processes
	FDs          int    `json:"fds,omitempty"`
	Threads      int    `json:"threads,omitempty"`
	StatusRSS    uint64 `json:"statusRssBytes,omitempty"` // status.processMemory
	StatusHeap   uint64 `json:"statusHeapUsedBytes,omitempty"`
	Connections  int    `json:"statusConnections,omitempty"`
}

func writeSummary(path string, stdout io.Writer, s *Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" || path == "" {
		_, err = stdout.Write(b)
		return err
	}
	if dir := filepath.Dir(path); dir != "" {
		_ = os.MkdirAll(dir, 0o755)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// procStatus reads VmRSS and RssAnon (bytes) and Threads of pid.
func procStatus(pid int) (rss, anon uint64, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			kb, _ := strconv.ParseUint(f[0], 10, 64)
			rss = kb * 1024
		case "RssAnon":
			kb, _ := strconv.ParseUint(f[0], 10, 64)
			anon = kb * 1024
		case "Threads":
			threads, _ = strconv.Atoi(f[0])
		}
	}
	return rss, anon, threads, nil
}

// children returns the direct children of pid, from /proc/*/stat.
func children(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; cut after ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 2 {
			if pp, _ := strconv.Atoi(f[1]); pp == pid {
				out = append(out, p)
			}
		}
	}
	return out
}

// procSample reads the gateway's memory and fds from /proc; the tree RSS
// adds every descendant (OpenClaw runs worker processes).
func procSample(pid int) (*MemSample, error) {
	rss, anon, threads, err := procStatus(pid)
	if err != nil {
		return nil, err
	}
	m := &MemSample{RSSBytes: rss, AnonBytes: anon, TreeRSSBytes: rss, Threads: threads}
	queue := children(pid)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if r, _, _, err := procStatus(p); err == nil {
			m.TreeRSSBytes += r
		}
		queue = append(queue, children(p)...)
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		m.FDs = len(ents)
	}
	return m, nil
}
