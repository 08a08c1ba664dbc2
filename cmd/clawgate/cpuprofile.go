//go:build cpuprofile

package main

// Built with -tags cpuprofile, the binary writes a CPU profile of its whole
// run to $CLAWGATE_CPUPROFILE, and a heap profile to $CLAWGATE_HEAPPROFILE
// each time it gets SIGUSR1 (for `go tool pprof`), so the gateway can be
// profiled under load from a separate process (cmd/clawgate-load) without
// exposing /debug/pprof. Release builds never contain this file.

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
)

func init() {
	if path := os.Getenv("CLAWGATE_HEAPPROFILE"); path != "" {
		runtime.MemProfileRate = 512
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGUSR1)
		go func() {
			for range sig {
				runtime.GC()
				f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err == nil {
					err = pprof.WriteHeapProfile(f)
					_ = f.Close()
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "clawgate: heap profile:", err)
				}
			}
		}()
	}
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
