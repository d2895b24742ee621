package webrtcserver

import (
	"reflect"
	"unsafe"
)

// Prefetching the next viewers. A fan-out round costs about 10 µs per viewer and about 1 µs per
// further packet to the same viewer (BENCHMARKS: the cost goes with messages, not packets): most of
// a viewer's turn is spent fetching its state from memory — its tracks, readers and rewriters, its
// SRTP output and conn, and the AES-GCM key schedule and GHASH tables of its SRTP key, some forty
// cache lines per viewer, cold again by the next round when a group serves hundreds of viewers.
// The group therefore asks the CPU for the lines of the viewer two places ahead while it serves
// the current one (and for the list of those lines three places ahead), so they arrive in time.
// The addresses are kept as numbers, not pointers: the objects are kept alive by the session
// itself, and a prefetch of an address that is no longer anything's never faults.

// hotLineCount bounds the cache lines prefetched for one viewer.
const hotLineCount = 56

// cacheLine is the cache line size assumed for prefetching (x86-64 and most arm64 cores).
const cacheLine = 64

// hotLines are the addresses of the cache lines a round touches of one viewer.
type hotLines struct {
	addr [hotLineCount]uintptr
	n    int
}

// add lists the lines of the object of size bytes at p (nothing for nil), as room allows.
func (h *hotLines) add(p unsafe.Pointer, size uintptr) {
	if p == nil || size == 0 {
		return
	}
	start := uintptr(p) &^ (cacheLine - 1)
	for a := start; a < uintptr(p)+size && h.n < len(h.addr); a += cacheLine {
		h.addr[h.n] = a
		h.n++
	}
}

// prefetch asks for every listed line.
func (h *hotLines) prefetch() {
	for _, a := range h.addr[:h.n] {
		prefetch(a)
	}
}

// prefetchLate asks, one viewer ahead, for what the listed lines point to and may change after
// the list was made: the address the viewer's conn sends to (replaced when pion's selected pair
// changes). The conn itself was prefetched a viewer earlier.
func (vs *whepSession) prefetchLate() {
	if c := vs.conn; c != nil {
		if p := c.to.Load(); p != nil {
			prefetch(uintptr(unsafe.Pointer(p)))
		}
	}
}

// prefetchList asks for the lines of the list itself.
func (h *hotLines) prefetchList() {
	p := uintptr(unsafe.Pointer(h))
	for off := uintptr(0); off < unsafe.Sizeof(*h); off += cacheLine {
		prefetch(p + off)
	}
}

// listHotLines lists what a round touches of the viewer: the session's list of tracks, each
// track's state, reader and rewriter, and its SRTP output, conn and key. It runs on the joining
// goroutine before the viewer is published to its group.
func (vs *whepSession) listHotLines() {
	h := &vs.hot
	h.n = 0
	// The session's fields the round reads, and its list of tracks (a small object of its own).
	h.add(unsafe.Pointer(&vs.tracks), unsafe.Sizeof(vs.tracks))
	h.add(unsafe.Pointer(&vs.lastReport), unsafe.Sizeof(vs.lastReport))
	h.add(unsafe.Pointer(&vs.conn), unsafe.Sizeof(vs.conn))
	h.add(unsafe.Pointer(unsafe.SliceData(vs.tracks)), uintptr(len(vs.tracks))*unsafe.Sizeof(vs.tracks[0]))
	for _, vt := range vs.tracks {
		h.add(unsafe.Pointer(vt), unsafe.Sizeof(*vt))
		if vt.reader != nil {
			h.add(unsafe.Pointer(vt.reader), unsafe.Sizeof(*vt.reader))
		}
		h.add(unsafe.Pointer(vt.rewriter), unsafe.Sizeof(*vt.rewriter))
	}
	if len(vs.tracks) == 0 || vs.tracks[0].out == nil {
		return
	}
	o := vs.tracks[0].out
	h.add(unsafe.Pointer(o), unsafe.Sizeof(*o))
	h.add(unsafe.Pointer(o.conn), unsafe.Sizeof(*o.conn))
	if g, ok := o.sealer.(*gcmSealer); ok {
		h.add(unsafe.Pointer(g), unsafe.Sizeof(*g))
		h.add(interfaceData(g.aead))
	}
}

// interfaceData is the address and size of what a non-nil interface's pointer-shaped dynamic
// value points to (the standard library's AES-GCM state behind a cipher.AEAD), or nil.
func interfaceData(v any) (unsafe.Pointer, uintptr) {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return nil, 0
	}
	return reflect.ValueOf(v).UnsafePointer(), t.Elem().Size()
}
