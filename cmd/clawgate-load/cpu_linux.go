package main

import (
	"syscall"
	"time"
)

// threadCPU is the calling OS thread's CPU time (user plus system).
func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		return time.Duration(time.Now().UnixNano()), false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
