// Package client is a Go client of the OpenClaw Gateway protocol: it dials
// a gateway, answers the connect.challenge with an ed25519-signed v3 device
// payload, and then issues requests and receives events. clawgate's CLI,
// headless node, load tool and tests all use it.
package client
