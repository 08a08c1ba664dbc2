// Package providertest is the contract every messaging provider must meet,
// run against a local fake of its service that speaks the real wire
// protocol: connect, receive one message, reply, survive a server-side
// disconnect and reconnect, shut down within a bound, and leave no
// goroutine behind. Each provider package calls Run from its tests.
package providertest
