package hub

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

const (
	outSSRC = 0xfeed
	outPT   = 111
	// wallBase is an arbitrary wall clock for ArrivalNanos in direct tests.
	wallBase = int64(1_700_000_000) * int64(time.Second)
)

// rewriteStep is one packet given to a Rewriter and what must come out.
type rewriteStep struct {
	layer  int // index into the test's layers
	ssrc   uint32
	seq    uint16
	ts     uint32
	atMs   int64 // arrival, in ms after wallBase
	resync bool

	ok      bool
	outSeq  uint16
	outTS   uint32
	comment string
}

func (s rewriteStep) packet(layers []*Layer) *Packet {
	p := newPacket(s.ssrc, s.seq, s.ts, h264Slice)
	p.Header.Marker = s.seq%2 == 0
	p.Layer = layers[s.layer]
	p.ArrivalNanos = wallBase + s.atMs*int64(time.Millisecond)
	return p
}

// testLayers returns layers for direct Rewriter tests: the Rewriter only compares them.
func testLayers() []*Layer { return []*Layer{{rid: "q"}, {rid: "h"}} }

func runRewrite(t *testing.T, w *Rewriter, layers []*Layer, steps []rewriteStep) {
	t.Helper()
	for i, s := range steps {
		p := s.packet(layers)
		orig := p.Header
		var out rtp.Header
		ok := w.Rewrite(Entry{Packet: p, Resync: s.resync}, outSSRC, outPT, &out)
		if ok != s.ok {
			t.Fatalf("step %d (layer %d ssrc %d seq %d %s): ok %v, want %v", i, s.layer, s.ssrc, s.seq, s.comment, ok, s.ok)
		}
		if p.Header.SequenceNumber != orig.SequenceNumber || p.Header.Timestamp != orig.Timestamp || p.Header.SSRC != orig.SSRC {
			t.Fatalf("step %d: Rewrite changed the shared packet", i)
		}
		if !ok {
			continue
		}
		if out.SequenceNumber != s.outSeq || out.Timestamp != s.outTS {
			t.Fatalf("step %d (layer %d ssrc %d seq %d ts %d %s): out seq %d ts %d, want seq %d ts %d",
				i, s.layer, s.ssrc, s.seq, s.ts, s.comment, out.SequenceNumber, out.Timestamp, s.outSeq, s.outTS)
		}
		if out.SSRC != outSSRC || out.PayloadType != outPT || out.Marker != orig.Marker || out.Version != 2 {
			t.Fatalf("step %d: out header %+v, want SSRC %#x PT %d marker %v", i, out, outSSRC, outPT, orig.Marker)
		}
	}
}

func TestRewriter(t *testing.T) {
	// At 90 kHz one millisecond is 90 ticks.
	for _, tc := range []struct {
		name      string
		clockRate uint32
		steps     []rewriteStep
	}{
		{"one source keeps its numbers", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 1000, ts: 5000, atMs: 0, ok: true, outSeq: 1000, outTS: 5000},
			{layer: 0, ssrc: 1, seq: 1001, ts: 8000, atMs: 33, ok: true, outSeq: 1001, outTS: 8000},
			{layer: 0, ssrc: 1, seq: 1002, ts: 11000, atMs: 66, ok: true, outSeq: 1002, outTS: 11000},
		}},
		{"layer switch", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 100, ts: 1000, atMs: 0, ok: true, outSeq: 100, outTS: 1000},
			{layer: 0, ssrc: 1, seq: 101, ts: 4000, atMs: 33, ok: true, outSeq: 101, outTS: 4000},
			{layer: 1, ssrc: 2, seq: 5000, ts: 900000, atMs: 66, resync: true, ok: true, outSeq: 102, outTS: 4000 + 33*90, comment: "switch"},
			{layer: 1, ssrc: 2, seq: 5001, ts: 903000, atMs: 99, ok: true, outSeq: 103, outTS: 4000 + 33*90 + 3000},
		}},
		{"layer switch without Resync flag", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 100, ts: 1000, atMs: 0, ok: true, outSeq: 100, outTS: 1000},
			{layer: 1, ssrc: 2, seq: 7, ts: 42, atMs: 50, ok: true, outSeq: 101, outTS: 1000 + 50*90},
		}},
		{"new SSRC on the same layer (publisher returned)", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 100, ts: 1000, atMs: 0, ok: true, outSeq: 100, outTS: 1000},
			{layer: 0, ssrc: 1, seq: 101, ts: 4000, atMs: 40, ok: true, outSeq: 101, outTS: 4000},
			{layer: 0, ssrc: 9, seq: 30000, ts: 123456, atMs: 1040, ok: true, outSeq: 102, outTS: 4000 + 1000*90, comment: "new ssrc"},
			{layer: 0, ssrc: 9, seq: 30001, ts: 126456, atMs: 1073, ok: true, outSeq: 103, outTS: 4000 + 1000*90 + 3000},
		}},
		{"timestamp offset wraps", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 1, ts: 4294967000, atMs: 0, ok: true, outSeq: 1, outTS: 4294967000},
			{layer: 1, ssrc: 2, seq: 2, ts: 10, atMs: 10, ok: true, outSeq: 2, outTS: 4294967000 + 900 - 4294967296},
		}},
		{"switch at the same instant advances one millisecond", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 100, ts: 1000, atMs: 5, ok: true, outSeq: 100, outTS: 1000},
			{layer: 1, ssrc: 2, seq: 7, ts: 50, atMs: 5, ok: true, outSeq: 101, outTS: 1090},
		}},
		{"audio clock", 48000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 10, ts: 0, atMs: 0, ok: true, outSeq: 10, outTS: 0},
			{layer: 0, ssrc: 1, seq: 11, ts: 960, atMs: 20, ok: true, outSeq: 11, outTS: 960},
			{layer: 1, ssrc: 2, seq: 500, ts: 777, atMs: 40, ok: true, outSeq: 12, outTS: 960 + 20*48},
		}},
		{"zero clock rate means 90 kHz", 0, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 10, ts: 0, atMs: 0, ok: true, outSeq: 10, outTS: 0},
			{layer: 1, ssrc: 2, seq: 500, ts: 777, atMs: 10, ok: true, outSeq: 11, outTS: 900},
		}},
		{"resync closes the gap, timestamps unchanged", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 100, ts: 1000, atMs: 0, ok: true, outSeq: 100, outTS: 1000},
			{layer: 0, ssrc: 1, seq: 101, ts: 4000, atMs: 33, ok: true, outSeq: 101, outTS: 4000},
			{layer: 0, ssrc: 1, seq: 150, ts: 150000, atMs: 1000, resync: true, ok: true, outSeq: 102, outTS: 150000, comment: "resync"},
			{layer: 0, ssrc: 1, seq: 151, ts: 153000, atMs: 1033, ok: true, outSeq: 103, outTS: 153000},
		}},
		{"sequence wraps", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 65534, ts: 0, atMs: 0, ok: true, outSeq: 65534, outTS: 0},
			{layer: 0, ssrc: 1, seq: 65535, ts: 3000, atMs: 33, ok: true, outSeq: 65535, outTS: 3000},
			{layer: 0, ssrc: 1, seq: 0, ts: 6000, atMs: 66, ok: true, outSeq: 0, outTS: 6000},
			{layer: 0, ssrc: 1, seq: 1, ts: 9000, atMs: 99, ok: true, outSeq: 1, outTS: 9000},
		}},
		{"first packet above 32767", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 40000, ts: 0, atMs: 0, ok: true, outSeq: 40000, outTS: 0},
			{layer: 1, ssrc: 2, seq: 3, ts: 0, atMs: 20, ok: true, outSeq: 40001, outTS: 1800},
		}},
		{"switch at the wrap", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 65535, ts: 0, atMs: 0, ok: true, outSeq: 65535, outTS: 0},
			{layer: 1, ssrc: 2, seq: 10, ts: 5000, atMs: 20, resync: true, ok: true, outSeq: 0, outTS: 1800},
			{layer: 1, ssrc: 2, seq: 11, ts: 8000, atMs: 53, ok: true, outSeq: 1, outTS: 4800},
		}},
		{"resync across the wrap", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 65534, ts: 0, atMs: 0, ok: true, outSeq: 65534, outTS: 0},
			{layer: 0, ssrc: 1, seq: 65535, ts: 3000, atMs: 33, ok: true, outSeq: 65535, outTS: 3000},
			{layer: 0, ssrc: 1, seq: 300, ts: 90000, atMs: 1000, resync: true, ok: true, outSeq: 0, outTS: 90000},
			{layer: 0, ssrc: 1, seq: 301, ts: 93000, atMs: 1033, ok: true, outSeq: 1, outTS: 93000},
		}},
		{"reordered and stale packets", 90000, []rewriteStep{
			{layer: 0, ssrc: 1, seq: 100, ts: 1000, atMs: 0, ok: true, outSeq: 100, outTS: 1000},
			{layer: 1, ssrc: 2, seq: 5000, ts: 0, atMs: 10, resync: true, ok: true, outSeq: 101, outTS: 1900},
			{layer: 1, ssrc: 2, seq: 4999, ts: 0, atMs: 11, ok: false, comment: "from before the switch"},
			{layer: 1, ssrc: 2, seq: 5002, ts: 6000, atMs: 12, ok: true, outSeq: 103, outTS: 7900},
			{layer: 1, ssrc: 2, seq: 5001, ts: 3000, atMs: 13, ok: true, outSeq: 102, outTS: 4900, comment: "late, inside the segment"},
			{layer: 1, ssrc: 2, seq: 5003, ts: 9000, atMs: 14, ok: true, outSeq: 104, outTS: 10900},
			{layer: 0, ssrc: 1, seq: 101, ts: 4000, atMs: 54, ok: true, outSeq: 105, outTS: 10900 + 40*90, comment: "switch back"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runRewrite(t, NewRewriter(tc.clockRate), testLayers(), tc.steps)
		})
	}
}

// rewriteSwitchSteps reads layer 0 (out 100, 101), then layer 1 (out 102–104).
var rewriteSwitchSteps = []rewriteStep{
	{layer: 0, ssrc: 1, seq: 100, ts: 1000, atMs: 0, ok: true, outSeq: 100, outTS: 1000},
	{layer: 0, ssrc: 1, seq: 101, ts: 4000, atMs: 33, ok: true, outSeq: 101, outTS: 4000},
	{layer: 1, ssrc: 2, seq: 5000, ts: 900000, atMs: 66, resync: true, ok: true, outSeq: 102, outTS: 6970},
	{layer: 1, ssrc: 2, seq: 5001, ts: 903000, atMs: 99, ok: true, outSeq: 103, outTS: 9970},
	{layer: 1, ssrc: 2, seq: 5002, ts: 906000, atMs: 132, ok: true, outSeq: 104, outTS: 12970},
}

func TestRewriterSourceSequence(t *testing.T) {
	layers := testLayers()
	w := NewRewriter(90000)
	if _, _, _, ok := w.SourceSequence(100); ok {
		t.Fatal("SourceSequence before any packet: ok")
	}
	runRewrite(t, w, layers, rewriteSwitchSteps)
	for _, tc := range []struct {
		out     uint16
		ok      bool
		layer   *Layer
		ssrc    uint32
		srcSeq  uint16
		comment string
	}{
		{102, true, layers[1], 2, 5000, "first of the segment"},
		{103, true, layers[1], 2, 5001, ""},
		{104, true, layers[1], 2, 5002, "last sent"},
		{101, false, nil, 0, 0, "previous segment"},
		{100, false, nil, 0, 0, "previous segment"},
		{105, false, nil, 0, 0, "not sent yet"},
		{40000, false, nil, 0, 0, "far off"},
	} {
		t.Run(fmt.Sprint(tc.out), func(t *testing.T) {
			layer, ssrc, seq, ok := w.SourceSequence(tc.out)
			if ok != tc.ok || layer != tc.layer || ssrc != tc.ssrc || seq != tc.srcSeq {
				t.Errorf("SourceSequence(%d) (%s) = %p, %d, %d, %v; want %p, %d, %d, %v",
					tc.out, tc.comment, layer, ssrc, seq, ok, tc.layer, tc.ssrc, tc.srcSeq, tc.ok)
			}
		})
	}

	t.Run("after a resync", func(t *testing.T) {
		runRewrite(t, w, layers, []rewriteStep{
			{layer: 1, ssrc: 2, seq: 5100, ts: 1206000, atMs: 1200, resync: true, ok: true, outSeq: 105, outTS: 312970},
		})
		if _, _, _, ok := w.SourceSequence(104); ok {
			t.Error("SourceSequence(104) from before the resync: ok")
		}
		if l, ssrc, seq, ok := w.SourceSequence(105); !ok || l != layers[1] || ssrc != 2 || seq != 5100 {
			t.Errorf("SourceSequence(105) = %p %d %d %v, want layer 1, 2, 5100", l, ssrc, seq, ok)
		}
	})

	t.Run("across the wrap", func(t *testing.T) {
		w2 := NewRewriter(90000)
		var steps []rewriteStep
		for i := range 6 {
			seq := uint16(65533 + i)
			steps = append(steps, rewriteStep{layer: 0, ssrc: 1, seq: seq, ts: uint32(i) * 3000, atMs: int64(i) * 33, ok: true, outSeq: seq, outTS: uint32(i) * 3000})
		}
		runRewrite(t, w2, layers, steps) // out 65533..65535, 0..2
		for _, c := range []struct {
			out uint16
			ok  bool
		}{{65533, true}, {65535, true}, {0, true}, {2, true}, {3, false}, {65532, false}} {
			if _, _, seq, ok := w2.SourceSequence(c.out); ok != c.ok || (ok && seq != c.out) {
				t.Errorf("SourceSequence(%d) = %d, %v; want %v", c.out, seq, ok, c.ok)
			}
		}
	})
}

func TestRewriteRetransmission(t *testing.T) {
	layers := testLayers()
	w := NewRewriter(90000)
	if ok := w.RewriteRetransmission(rewriteSwitchSteps[3].packet(layers), 103, outSSRC, outPT, &rtp.Header{}); ok {
		t.Fatal("RewriteRetransmission before any packet: ok")
	}
	runRewrite(t, w, layers, rewriteSwitchSteps)
	other := rewriteSwitchSteps[3]
	other.ssrc = 3
	for _, tc := range []struct {
		name   string
		step   rewriteStep
		outSeq uint16
		ok     bool
		outTS  uint32
	}{
		{"current segment", rewriteSwitchSteps[3], 103, true, 9970},
		{"first of the segment", rewriteSwitchSteps[2], 102, true, 6970},
		{"previous layer", rewriteSwitchSteps[1], 101, false, 0},
		{"other SSRC on the current layer", other, 103, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.step.packet(layers)
			var out rtp.Header
			ok := w.RewriteRetransmission(p, tc.outSeq, outSSRC, outPT, &out)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if ok && (out.SequenceNumber != tc.outSeq || out.Timestamp != tc.outTS || out.SSRC != outSSRC || out.PayloadType != outPT || out.Marker != p.Header.Marker) {
				t.Errorf("out header %+v, want seq %d ts %d SSRC %#x PT %d", out, tc.outSeq, tc.outTS, outSSRC, outPT)
			}
		})
	}
}

// TestRewriterConcurrentRetransmission answers NACKs on one goroutine while another rewrites,
// as a WebRTC output does; run with -race.
func TestRewriterConcurrentRetransmission(t *testing.T) {
	layers := testLayers()
	w := NewRewriter(90000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var out rtp.Header
		for i := uint16(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if layer, ssrc, seq, ok := w.SourceSequence(i); ok {
				p := newPacket(ssrc, seq, 0, h264Slice)
				p.Layer = layer
				w.RewriteRetransmission(p, i, outSSRC, outPT, &out)
			}
		}
	})
	var out rtp.Header
	for i := range 20000 {
		layer := (i / 1000) % 2
		p := newPacket(uint32(layer+1), uint16(i+layer*30000), uint32(i)*3000, h264Slice)
		p.Layer = layers[layer]
		p.ArrivalNanos = wallBase + int64(i)*int64(time.Millisecond)
		if !w.Rewrite(Entry{Packet: p, Resync: i%500 == 0}, outSSRC, outPT, &out) {
			t.Fatalf("packet %d refused", i)
		}
		if out.SequenceNumber != uint16(i) {
			t.Fatalf("packet %d: out seq %d", i, out.SequenceNumber)
		}
	}
	close(stop)
	wg.Wait()
}
