package srtserver

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind once its server is closed. One
// exception is gosrt's own: Dial, the test's caller, leaves its connection-timeout timer blocked
// forever on an unbuffered channel when the listener rejects the handshake (gosrt v0.10.0,
// dial.go:183); the server side is not involved.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/datarhei/gosrt.Dial.func3"))
}
