package loadtest

import (
	"bytes"
	"math"
	"os"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func TestStampRoundTrip(t *testing.T) {
	now := time.Now().UnixNano()
	payload := bytes.Repeat([]byte{0xaa}, 40)
	if !writeStamp(payload, now) {
		t.Fatal("writeStamp refused a 40-byte payload")
	}
	if got, ok := readStamp(payload); !ok || got != now {
		t.Fatalf("readStamp = %d, %v; want %d", got, ok, now)
	}
	if !bytes.Equal(payload[:40-stampSize], bytes.Repeat([]byte{0xaa}, 40-stampSize)) {
		t.Error("writeStamp touched bytes before the stamp")
	}

	if bytes.IndexByte(payload[40-stampSize:], 0) >= 0 {
		t.Error("a stamp has a zero byte: it could form an H264 start code in Annex B")
	}
	for _, v := range []int64{0, 1, 1 << 62, now} {
		p := make([]byte, 20)
		writeStamp(p, v)
		if got, ok := readStamp(p); !ok || got != v {
			t.Errorf("stamp %d read back as %d, %v", v, got, ok)
		}
	}
	short := make([]byte, stampSize)
	if writeStamp(short, now) {
		t.Error("writeStamp accepted a payload with no room for a header byte")
	}
	if _, ok := readStamp(bytes.Repeat([]byte{0xaa}, 40)); ok {
		t.Error("readStamp found a stamp in an unstamped payload")
	}
	payload[len(payload)-stampSize] ^= 1
	if _, ok := readStamp(payload); ok {
		t.Error("readStamp accepted a broken magic")
	}
}

func TestRTPPayload(t *testing.T) {
	pkt := rtp.Packet{
		Header:  rtp.Header{Version: 2, SequenceNumber: 4242, CSRC: []uint32{1, 2}},
		Payload: []byte("hello, payload"),
	}
	if err := pkt.SetExtension(3, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	pkt.Header.Extension = true
	pkt.Header.ExtensionProfile = 0xbede
	raw, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	seq, payload, ok := rtpPayload(raw)
	if !ok || seq != 4242 || string(payload) != "hello, payload" {
		t.Fatalf("rtpPayload = %d %q %v", seq, payload, ok)
	}
	padded := append(bytes.Clone(raw), 0, 0, 3)
	padded[0] |= 0x20
	if _, payload, ok = rtpPayload(padded); !ok || string(payload) != "hello, payload" {
		t.Errorf("padded: %q %v", payload, ok)
	}
	if _, _, ok = rtpPayload(raw[:11]); ok {
		t.Error("accepted a truncated header")
	}
}

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v += 1 + v/64 {
		i := histIndex(v)
		if i < prev || histLower(i) > int64(v) || (i+1 < histBuckets && histLower(i+1) <= int64(v)) {
			t.Fatalf("value %d in bucket %d [%d, %d)", v, i, histLower(i), histLower(i+1))
		}
		prev = i
	}
	if histIndex(histMax) != histBuckets-1 {
		t.Errorf("largest value in bucket %d of %d", histIndex(histMax), histBuckets)
	}
}

func TestHistogramPercentiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ { // 1 µs .. 10 ms, uniform
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.95, 0.99} {
		want := q * 10 * float64(time.Millisecond)
		if got := float64(h.quantile(q)); math.Abs(got-want)/want > 1.0/histSub {
			t.Errorf("p%v = %v, want %v within %.1f %%", q*100, time.Duration(got), time.Duration(want), 100.0/histSub)
		}
	}
	if h.quantile(1) != 10*time.Millisecond || h.quantile(0) != time.Microsecond {
		t.Errorf("extremes %v %v", h.quantile(0), h.quantile(1))
	}
	p := h.percentiles()
	if p.Count != 10000 || p.MaxMs != 10 || math.Abs(p.MeanMs-5.0005) > 1e-9 {
		t.Errorf("summary %+v", p)
	}

	// Merging two halves gives the same answers as recording everything in one.
	var a, b histogram
	for i := 1; i <= 10000; i++ {
		target := &a
		if i%2 == 0 {
			target = &b
		}
		target.record(time.Duration(i) * time.Microsecond)
	}
	a.merge(&b)
	if a.percentiles() != p {
		t.Errorf("merged %+v, want %+v", a.percentiles(), p)
	}

	var empty histogram
	if empty.percentiles() != (Percentiles{}) || empty.quantile(0.5) != 0 {
		t.Error("empty histogram is not zero")
	}
	var neg histogram
	neg.record(-time.Second)
	neg.record(time.Hour)
	if neg.min != 0 || neg.max != histMax {
		t.Errorf("clamping: min %d max %d", neg.min, neg.max)
	}
}

func TestExactPercentiles(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	for i := range ds {
		ds[i] *= time.Millisecond
	}
	p := exactPercentiles(ds)
	if p.Count != 5 || p.P50Ms != 3 || p.P95Ms != 5 || p.MaxMs != 5 || p.MeanMs != 3 {
		t.Errorf("%+v", p)
	}
}

func TestSeqCounter(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		seqs                   []uint16
		received, lost, resets uint64
	}{
		{"in order", []uint16{10, 11, 12, 13}, 4, 0, 0},
		{"gap", []uint16{10, 11, 14, 15}, 4, 2, 0},
		{"wrap", []uint16{65533, 65534, 65535, 0, 1, 2}, 6, 0, 0},
		{"gap across wrap", []uint16{65534, 1, 2}, 3, 2, 0},
		{"reordered", []uint16{1, 3, 2, 4}, 4, 0, 0},
		{"reordered across wrap", []uint16{65535, 1, 0, 2}, 4, 0, 0},
		{"duplicate", []uint16{1, 1, 2, 2, 3}, 5, 0, 0},
		{"many wraps", wrapping(3*65536 + 100), 3*65536 + 100, 0, 0},
		{"restart", []uint16{100, 101, 40000, 40001, 40003}, 5, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c seqCounter
			for _, s := range tc.seqs {
				c.add(s)
			}
			if c.receivedTotal() != tc.received || c.lost() != tc.lost || c.resets != tc.resets {
				t.Errorf("received %d lost %d resets %d, want %d %d %d",
					c.receivedTotal(), c.lost(), c.resets, tc.received, tc.lost, tc.resets)
			}
		})
	}
	var empty seqCounter
	if empty.expected() != 0 || empty.lost() != 0 {
		t.Error("empty counter is not zero")
	}
}

// wrapping returns n consecutive sequence numbers starting just before a wrap.
func wrapping(n int) []uint16 {
	s := make([]uint16, n)
	for i := range s {
		s[i] = uint16(65000 + i)
	}
	return s
}

func TestProcParsing(t *testing.T) {
	stat := []byte("4242 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0 100 200 300\n")
	if cpu, err := parseProcStatCPU(stat); err != nil || cpu != 2*time.Second {
		t.Errorf("parseProcStatCPU = %v, %v; want 2s", cpu, err)
	}
	if _, err := parseProcStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("short stat accepted")
	}
	status := []byte("Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t   1234 kB\nThreads:\t4\n")
	if rss, err := parseProcStatusRSS(status); err != nil || rss != 1234*1024 {
		t.Errorf("parseProcStatusRSS = %d, %v", rss, err)
	}
	if _, err := parseProcStatusRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("status without VmRSS accepted")
	}
}

func TestSampleOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	before := sampleProc(os.Getpid())
	if before.err != nil {
		t.Fatal(before.err)
	}
	// Burn some CPU so that the tick counters move.
	deadline := time.Now().Add(150 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	after := sampleProc(os.Getpid())
	self := sampleSelf()
	if after.err != nil {
		t.Fatal(after.err)
	}
	if after.rss <= 0 || after.cpu <= before.cpu || after.cpu <= 0 {
		t.Errorf("samples before %+v after %+v", before, after)
	}
	// /proc and getrusage count the same CPU time, at tick resolution.
	if diff := (self.cpu - after.cpu).Abs(); diff > 100*time.Millisecond {
		t.Errorf("getrusage CPU %v vs /proc %v", self.cpu, after.cpu)
	}
	if self.maxRSS < after.rss/2 {
		t.Errorf("getrusage max RSS %d vs VmRSS %d", self.maxRSS, after.rss)
	}
	if s := sampleProc(1 << 30); s.err == nil {
		t.Error("sampling a missing pid did not fail")
	}
}
