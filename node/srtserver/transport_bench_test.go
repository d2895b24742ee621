package srtserver

import (
	"encoding/binary"
	"net"
	"slices"
	"testing"
	"time"

	srt "github.com/datarhei/gosrt"
)

// BenchmarkSRTTransportDelay measures what gosrt itself adds between a caller's Write and the
// listener's Read on loopback at a given latency (TSBPD) setting: the part of an SRT input's delay
// that is SRT's, not the node's. It sends one 1316-byte payload every 10 ms for b.N payloads and
// reports the delay above the configured latency, p50 and p99.
func BenchmarkSRTTransportDelay(b *testing.B) {
	const latency = 20 * time.Millisecond
	conf := srt.DefaultConfig()
	conf.Latency, conf.ReceiverLatency, conf.PeerLatency = latency, latency, latency
	ln, err := srt.Listen("srt", "127.0.0.1:0", conf)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan srt.Conn, 1)
	go func() {
		c, _, err := ln.Accept(func(srt.ConnRequest) srt.ConnType { return srt.PUBLISH })
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	dconf := conf
	dconf.StreamId = "publish:bench"
	caller, err := srt.Dial("srt", ln.Addr().(*net.UDPAddr).String(), dconf)
	if err != nil {
		b.Fatal(err)
	}
	defer caller.Close()
	server := <-accepted
	if server == nil {
		b.Fatal("no connection accepted")
	}
	defer server.Close()

	delays := make([]time.Duration, 0, b.N)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for len(delays) < b.N {
			n, err := server.Read(buf)
			if err != nil {
				return
			}
			if n >= 8 {
				sent := int64(binary.BigEndian.Uint64(buf[:8]))
				delays = append(delays, time.Duration(time.Now().UnixNano()-sent))
			}
		}
	}()
	payload := make([]byte, 1316)
	b.ResetTimer()
	for range b.N {
		binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		if _, err := caller.Write(payload); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	b.StopTimer()
	if len(delays) == 0 {
		b.Fatal("nothing received")
	}
	slices.Sort(delays)
	q := func(f float64) float64 { return float64(delays[int(f*float64(len(delays)-1))]-latency) / 1e6 }
	b.ReportMetric(q(0.5), "ms-over-latency-p50")
	b.ReportMetric(q(0.99), "ms-over-latency-p99")
}
