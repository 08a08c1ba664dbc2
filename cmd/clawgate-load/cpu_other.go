//go:build !linux

package main

import "time"

// threadCPU falls back to wall time where no per-thread CPU clock is read.
func threadCPU() (time.Duration, bool) { return time.Duration(time.Now().UnixNano()), false }
