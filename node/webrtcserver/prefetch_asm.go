//go:build amd64 || arm64

package webrtcserver

// prefetch asks the CPU to bring the cache line at addr into its caches; it never faults, whatever
// addr is.
//
//go:noescape
func prefetch(addr uintptr)
