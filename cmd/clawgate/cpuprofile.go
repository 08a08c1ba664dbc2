//go:build cpuprofile

package main

// Built with -tags cpuprofile, the binary writes a CPU profile of its whole
// run to $CLAWGATE_CPUPROFILE (for `go tool pprof`), so the gateway can be
// profiled under load from a separate process (cmd/clawgate-load) without
// exposing /debug/pprof. Release builds never contain this file.

import (
	"fmt"
	"os"
	"runtime/pprof"
)

func init() {
	path := os.Getenv("CLAWGATE_CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "clawgate: cpu profile:", err)
		return
	}
	stopProfile = func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
