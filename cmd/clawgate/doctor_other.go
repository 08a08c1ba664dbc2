//go:build !unix

package main

import "io/fs"

// fileUID: no POSIX owner on this platform.
func fileUID(fs.FileInfo) (int, bool) { return 0, false }
