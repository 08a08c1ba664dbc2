// Package config resolves clawgate's state directory, reads its versioned
// JSON config file strictly, and reads and writes secret files (0600,
// written atomically, refused when group- or world-readable).
package config
