package loadtest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v4/stdnet"
)

// TestSendConnNotesRTPSends writes through a publisher socket made by sendNet over loopback: each
// RTP datagram (SRTP leaves its header in the clear) is noted with a time between the call and its
// return, RTCP and STUN are not, and the receiver gets every datagram unchanged, whichever write
// method pion uses.
func TestSendConnNotesRTPSends(t *testing.T) {
	sys, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	sent := new(arrivals)
	c, err := sendNet(sys, sent).ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, ok := c.(*sendConn)
	if !ok {
		t.Fatalf("ListenUDP gave %T, want a send-noting socket", c)
	}
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	to := rx.LocalAddr().(*net.UDPAddr)

	rtpPkt := func(ssrc uint32, seq uint16) []byte {
		b := make([]byte, 40)
		b[0], b[1] = 0x80, 96
		binary.BigEndian.PutUint16(b[2:], seq)
		binary.BigEndian.PutUint32(b[8:], ssrc)
		return b
	}
	rtcpPkt := []byte{0x80, 200, 0, 1, 0, 0, 0, 5}
	stun := make([]byte, 20)
	stun[1] = 1
	buf := make([]byte, 1500)
	for i, pkt := range [][]byte{rtpPkt(5, 100), rtcpPkt, stun, rtpPkt(5, 101), rtpPkt(6, 7)} {
		before := time.Now().UnixNano()
		if i%2 == 0 {
			_, err = sc.WriteToAddrPort(pkt, to.AddrPort())
		} else {
			_, err = sc.WriteTo(pkt, to)
		}
		after := time.Now().UnixNano()
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		n, from, err := rx.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != string(pkt) || from != netip.MustParseAddrPort(c.LocalAddr().String()) {
			t.Fatalf("read %d: %v %x from %v", i, err, buf[:n], from)
		}
		if len(pkt) == 40 {
			at, ok := sent.lookup(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]))
			if !ok || at < before || at > after {
				t.Errorf("packet %d noted at %d (%v), want within [%d, %d]", i, at, ok, before, after)
			}
		}
	}
	if got := sent.ssrcs[2].Load(); got != 0 {
		t.Errorf("RTCP or STUN claimed a ring: %x", got)
	}
	// The socket still reads (pion's ICE reads with ReadFromAddrPort).
	if _, err := rx.WriteToUDP([]byte("back"), c.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	if n, from, err := sc.ReadFromAddrPort(buf); err != nil || string(buf[:n]) != "back" || from != to.AddrPort() {
		t.Fatalf("ReadFromAddrPort: %v %q from %v", err, buf[:n], from)
	}
}

// TestOutTimes: a stamp put is found with its send time, an unknown stamp (or a zero one, or any
// with a nil map) is its own send time, and an entry overwritten in its slot is lost, never
// mistaken for another stamp's.
func TestOutTimes(t *testing.T) {
	var nilTimes *outTimes
	if got := nilTimes.sentAt(42); got != 42 {
		t.Errorf("nil outTimes: sentAt(42) = %d", got)
	}
	out := new(outTimes)
	base := time.Now().UnixNano()
	for i := range int64(1000) {
		out.put(base+i*20_000, base+i*20_000+5_000)
	}
	found := 0
	for i := range int64(1000) {
		stamp := base + i*20_000
		switch got := out.sentAt(stamp); got {
		case stamp + 5_000:
			found++
		case stamp:
			// its slot was taken by a later stamp
		default:
			t.Fatalf("sentAt(%d) = %d", stamp, got)
		}
	}
	if found < 800 { // 1,000 stamps in 4,096 slots: few collide
		t.Errorf("%d of 1000 stamps found", found)
	}
	if got := out.sentAt(base + 1); got != base+1 {
		t.Errorf("an unknown stamp: sentAt = %d", got)
	}
	if got := out.sentAt(0); got != 0 {
		t.Errorf("sentAt(0) = %d", got)
	}
	// A slot's stamp and time are written and read as one (run with -race): stamps sharing a slot,
	// each put once as the publisher does, are each found with their own time or not at all. A
	// fresh map: the search for stamps sharing a slot walks past the stamps put above (base +
	// i×20,000), and one of those still in its slot would be found with its own +5,000.
	out = new(outTimes)
	var same []int64
	for x := base + 7; len(same) < 300; x++ {
		if out.slot(x) == out.slot(base+7) {
			same = append(same, x)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, x := range same {
			out.put(x, x+1)
		}
	})
	for range 20 {
		for _, x := range same {
			if got := out.sentAt(x); got != x && got != x+1 {
				t.Fatalf("sentAt(%d) = %d, want %d or %d", x, got, x, x+1)
			}
		}
	}
	wg.Wait()
}
