package webrtcserver

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestSendBatchGSO sends one batch through a real loopback socket: runs of equal-sized datagrams
// to one address (the last may be shorter) go as one UDP GSO message each, and every receiver
// still gets each datagram whole, in order; a datagram over gsoMaxSegment goes alone.
func TestSendBatchGSO(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var stats Stats
	b, err := newSendBatch(conn, &stats)
	if err != nil {
		t.Fatal(err)
	}
	ra, rb := listenUDP(t), listenUDP(t)
	a, c := ra.LocalAddr().(*net.UDPAddr).AddrPort(), rb.LocalAddr().(*net.UDPAddr).AddrPort()

	type dgram struct {
		to   netip.AddrPort
		size int
	}
	plan := []dgram{{a, 1000}, {a, 1000}, {a, 1000}, {a, 600}, {c, 1000}, {a, 500}, {a, 500}, {a, 1450}, {a, 1450}}
	want := map[netip.AddrPort][][]byte{}
	for i, d := range plan {
		p := bytes.Repeat([]byte{byte(i + 1)}, d.size)
		b.add(p, d.to)
		want[d.to] = append(want[d.to], p)
	}
	b.flush()
	if got, off := stats.GSOMessages.Load(), stats.GSODisabled.Load(); got != 2 || off != 0 {
		t.Errorf("%d GSO messages (GSO refused %d times), want 2: four to a, then two to a", got, off)
	}
	if n := stats.SendErrors.Load(); n != 0 {
		t.Fatalf("%d send errors", n)
	}
	for r, to := range map[*net.UDPConn]netip.AddrPort{ra: a, rb: c} {
		buf := make([]byte, 2000)
		for i, w := range want[to] {
			_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := r.Read(buf)
			if err != nil {
				t.Fatalf("%v datagram %d: %v", to, i, err)
			}
			if !bytes.Equal(buf[:n], w) {
				t.Fatalf("%v datagram %d: %d bytes of %d, want %d of %d", to, i, n, buf[0], len(w), w[0])
			}
		}
	}
}

func listenUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
