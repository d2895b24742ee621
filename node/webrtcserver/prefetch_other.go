//go:build !amd64 && !arm64

package webrtcserver

// prefetch does nothing on CPUs without a prefetch written for them.
func prefetch(addr uintptr) {}
