package srtserver

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind once its server is closed. The
// exceptions are gosrt's own, in Dial, the test's caller: when the listener rejects the handshake,
// its connection-timeout timer (dial.go:183) and its socket reader (dial.go:140 and 152) stay
// blocked forever on an unbuffered channel nobody reads (gosrt v0.10.0); the server side is not
// involved.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/datarhei/gosrt.Dial.func3"),
		goleak.IgnoreTopFunction("github.com/datarhei/gosrt.Dial.func1"))
}
