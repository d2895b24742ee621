package webrtcserver

import (
	"crypto/rand"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/hub"
)

// TestHotLines: a viewer's list covers every byte of each object a round touches — its session's
// fields, its list of tracks, the tracks, their readers and rewriters, its SRTP output, conn,
// sealer and the AES-GCM state behind it —
// within the list's bound, and prefetching it (or any address at all) is harmless.
func TestHotLines(t *testing.T) {
	h := hub.New(hub.Config{}, nil)
	defer h.Close()
	pub, err := h.Publish("live/hot", []hub.TrackSpec{
		{Codec: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}},
		{Codec: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	key, salt := make([]byte, 16), make([]byte, 12)
	rand.Read(key)
	rand.Read(salt)
	sealer, err := newRTPSealer(srtp.ProtectionProfileAeadAes128Gcm, key, salt)
	if err != nil {
		t.Fatal(err)
	}
	out := &srtpOut{sealer: sealer, conn: &muxConn{}}
	vs := &whepSession{}
	for _, tr := range pub.Stream().Tracks() {
		vt := &viewerTrack{track: tr, rewriter: hub.NewRewriter(tr.Codec().ClockRate), out: out}
		vt.reader = tr.NewNotifiedReader(0, hub.NewNotifier())
		defer vt.reader.Close()
		vs.tracks = append(vs.tracks, vt)
	}
	vs.listHotLines()

	listed := map[uintptr]bool{}
	for _, a := range vs.hot.addr[:vs.hot.n] {
		if a%cacheLine != 0 {
			t.Fatalf("address %#x is not a cache line's", a)
		}
		listed[a] = true
	}
	covered := func(what string, p unsafe.Pointer, size uintptr) {
		t.Helper()
		for _, b := range []uintptr{uintptr(p), uintptr(p) + size - 1} {
			if !listed[b&^(cacheLine-1)] {
				t.Errorf("%s (%d bytes at %#x): byte at %#x not in a listed line", what, size, uintptr(p), b)
			}
		}
	}
	covered("session's tracks", unsafe.Pointer(&vs.tracks), unsafe.Sizeof(vs.tracks))
	covered("session's last report", unsafe.Pointer(&vs.lastReport), unsafe.Sizeof(vs.lastReport))
	covered("session's conn", unsafe.Pointer(&vs.conn), unsafe.Sizeof(vs.conn))
	covered("list of tracks", unsafe.Pointer(unsafe.SliceData(vs.tracks)), uintptr(len(vs.tracks))*unsafe.Sizeof(vs.tracks[0]))
	for _, vt := range vs.tracks {
		covered("track", unsafe.Pointer(vt), unsafe.Sizeof(*vt))
		covered("reader", unsafe.Pointer(vt.reader), unsafe.Sizeof(*vt.reader))
		covered("rewriter", unsafe.Pointer(vt.rewriter), unsafe.Sizeof(*vt.rewriter))
	}
	covered("SRTP output", unsafe.Pointer(out), unsafe.Sizeof(*out))
	covered("conn", unsafe.Pointer(out.conn), unsafe.Sizeof(*out.conn))
	g := sealer.(*gcmSealer)
	covered("sealer", unsafe.Pointer(g), unsafe.Sizeof(*g))
	p, size := interfaceData(g.aead)
	if p == nil || size < 256 { // the GHASH table alone is 256 bytes
		t.Fatalf("AES-GCM state %p of %d bytes", p, size)
	}
	covered("AES-GCM state", p, size)
	if vs.hot.n >= hotLineCount {
		t.Errorf("%d lines listed: the bound %d cut the list", vs.hot.n, hotLineCount)
	}
	t.Logf("%d cache lines per viewer", vs.hot.n)

	vs.hot.prefetchList()
	vs.hot.prefetch()
	vs.prefetchLate() // no conn
	vs.conn = out.conn
	vs.prefetchLate() // a conn without an address
	to := netip.MustParseAddrPort("192.0.2.1:5000")
	out.conn.to.Store(&to)
	vs.prefetchLate()
	for _, a := range []uintptr{0, 1, uintptr(1) << (unsafe.Sizeof(uintptr(0))*8 - 17), ^uintptr(0) &^ (cacheLine - 1)} {
		prefetch(a) // never faults
	}
	if p, _ := interfaceData(nil); p != nil {
		t.Error("interfaceData(nil) is not nil")
	}
}
