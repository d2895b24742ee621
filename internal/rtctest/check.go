package rtctest

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// CheckPayloads waits (10 s at most) until v has at least n payloads of kind, then asserts each is
// byte for byte what a Source publishes for its index and layer tag, the indices rising.
func CheckPayloads(t testing.TB, v *Viewer, kind, mime string, n int, tag string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(v.Payloads(kind)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d %s payloads at the viewer (got %d)", n, kind, len(v.Payloads(kind)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var last uint32
	for i, p := range v.Payloads(kind) {
		idx, gotTag, ok := PayloadIndex(p)
		if !ok {
			t.Fatalf("%s payload %d is not the publisher's: % x", kind, i, p[:min(len(p), 16)])
		}
		if gotTag != tag {
			t.Fatalf("%s payload %d from layer %q, want %q", kind, i, gotTag, tag)
		}
		key := kind == "audio" || (len(p) > 1 && (p[0] == 0x65 || (mime == webrtc.MimeTypeVP8 && p[1] == 0x00)))
		if want := Payload(mime, key, idx, tag); !bytes.Equal(p, want) {
			t.Fatalf("%s payload %d (index %d) differs from what was published", kind, i, idx)
		}
		if idx < last {
			t.Fatalf("%s payload %d: index %d after %d", kind, i, idx, last)
		}
		last = idx
	}
}

// CheckSequence asserts v saw one SSRC of kind with sequence numbers rising by one, apart from at
// most lost missing packets in all, and timestamps that never go back: what the hub's rewriter
// keeps across a change of source (a returning publisher, a new upstream).
func CheckSequence(t testing.TB, v *Viewer, kind string, lost int) {
	t.Helper()
	hs := v.Headers(kind)
	missing := 0
	for i := 1; i < len(hs); i++ {
		if hs[i].SSRC != hs[0].SSRC {
			t.Fatalf("%s: SSRC changed at packet %d", kind, i)
		}
		d := hs[i].SequenceNumber - hs[i-1].SequenceNumber
		if d == 0 || d > 0x8000 {
			t.Fatalf("%s: sequence number %d after %d", kind, hs[i].SequenceNumber, hs[i-1].SequenceNumber)
		}
		missing += int(d) - 1
		if int32(hs[i].Timestamp-hs[i-1].Timestamp) < 0 {
			t.Fatalf("%s: timestamp %d after %d", kind, hs[i].Timestamp, hs[i-1].Timestamp)
		}
	}
	if missing > lost {
		t.Fatalf("%s: %d sequence numbers skipped, at most %d allowed", kind, missing, lost)
	}
}
