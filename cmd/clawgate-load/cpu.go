package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/clawgate/clawgate/authn"
	"github.com/clawgate/clawgate/protocol"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the CPU time pid has used, user plus system, over all its
// threads (living and exited), from /proc/<pid>/stat. The resolution is
// 10 ms; scenarios that report it run long enough for that not to matter.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ... utime stime: fields 14 and 15 counting
	// from 1; comm may hold spaces, so count from after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// VerifyCost is the CPU cost of one ed25519.Verify of a v3 device payload
// like the ones this tool signs, and the ceiling it implies: every core of
// the machine verifying and doing nothing else.
type VerifyCost struct {
	Verifies     int     `json:"verifies"`
	CPUUsPer     float64 `json:"cpuUsPerVerify"`
	Cores        int     `json:"cores"`
	CeilingPerS  float64 `json:"ceilingPerSecond"`
	ThreadClock  bool    `json:"threadCpuClock"` // false: wall time (no per-thread clock on this OS)
	MeasuredAtMs int64   `json:"measuredAtUnixMs"`
}

// measureVerify times n verifications on one locked OS thread by that
// thread's CPU clock, so other load on the machine does not inflate it the
// way it inflates wall time.
func measureVerify(n int) (*VerifyCost, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	scopes := []string{protocol.ScopeAdmin, protocol.ScopeRead, protocol.ScopeWrite}
	payload := []byte(authn.BuildPayloadV3(authn.PayloadFields{
		DeviceID: authn.DeviceID(pub), ClientID: "cli", ClientMode: "cli", Role: protocol.RoleOperator,
		Scopes: scopes, SignedAtMs: time.Now().UnixMilli(), Token: randHex(24),
		Nonce: "2f1c6b0e-8d7a-4c1e-9b3f-5a6d7e8f9a0b", Platform: runtime.GOOS,
	}))
	sig := ed25519.Sign(priv, payload)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range 50 { // warm up
		ed25519.Verify(pub, payload, sig)
	}
	t0, thread := threadCPU()
	for range n {
		if !ed25519.Verify(pub, payload, sig) {
			return nil, fmt.Errorf("ed25519 verify of own signature failed")
		}
	}
	t1, _ := threadCPU()
	per := float64(t1-t0) / float64(time.Microsecond) / float64(n)
	if per <= 0 {
		return nil, fmt.Errorf("verify timing: no CPU time measured")
	}
	cores := runtime.NumCPU()
	return &VerifyCost{Verifies: n, CPUUsPer: round3(per), Cores: cores,
		CeilingPerS: round3(float64(cores) * 1e6 / per), ThreadClock: thread,
		MeasuredAtMs: time.Now().UnixMilli()}, nil
}

// ServerCPU is the gateway process's CPU time over one scenario's main
// loop, per completed operation, and the rate the machine's cores could
// sustain at that cost if the gateway had them to itself.
type ServerCPU struct {
	CPUMs       float64 `json:"cpuMs"`
	UsPerOp     float64 `json:"cpuUsPerOp"`
	Cores       int     `json:"cores"`
	CapacityPer float64 `json:"capacityPerSecond"` // cores / cpuUsPerOp
	// CeilingRatio is capacityPerSecond over the ed25519 verify ceiling of
	// the same run (the mean of the summary's two verify measurements).
	CeilingRatio float64 `json:"verifyCeilingRatio,omitempty"`
}

func newServerCPU(d time.Duration, ops int) *ServerCPU {
	if ops <= 0 || d <= 0 {
		return nil
	}
	us := float64(d) / float64(time.Microsecond) / float64(ops)
	cores := runtime.NumCPU()
	return &ServerCPU{CPUMs: ms(d), UsPerOp: round3(us), Cores: cores, CapacityPer: round3(float64(cores) * 1e6 / us)}
}
