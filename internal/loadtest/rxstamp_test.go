package loadtest

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v4/stdnet"
)

// TestStampConnNotesRTPArrivals sends datagrams to a subscriber socket made by stampNet over
// loopback: RTP (as SRTP leaves its header) is noted with a kernel time between its send and its
// read, RTCP and STUN are not, and the read returns the datagram and sender unchanged.
func TestStampConnNotesRTPArrivals(t *testing.T) {
	sys, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	arr := new(arrivals)
	c, err := stampNet(sys, arr, nil).ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, ok := c.(*stampConn)
	if !ok {
		t.Fatalf("ListenUDP gave %T, want a timestamping socket", c)
	}
	tx, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	rtpPkt := func(ssrc uint32, seq uint16) []byte {
		b := make([]byte, 40)
		b[0], b[1] = 0x80, 102
		binary.BigEndian.PutUint16(b[2:], seq)
		binary.BigEndian.PutUint32(b[8:], ssrc)
		return b
	}
	rtcpPkt := []byte{0x81, 201, 0, 1, 0, 0, 0, 9}
	stun := make([]byte, 20) // a binding request starts with two zero bits
	stun[1] = 1
	buf := make([]byte, 1500)
	for i, pkt := range [][]byte{rtpPkt(7, 65535), rtcpPkt, stun, rtpPkt(7, 0), rtpPkt(9, 3)} {
		before := time.Now().UnixNano()
		if _, err := tx.Write(pkt); err != nil {
			t.Fatal(err)
		}
		var n int
		if i%2 == 0 {
			var addr net.Addr
			n, addr, err = sc.ReadFrom(buf)
			if err == nil && addr.String() != tx.LocalAddr().String() {
				t.Errorf("ReadFrom sender %v, want %v", addr, tx.LocalAddr())
			}
		} else {
			n, _, err = sc.ReadFromAddrPort(buf)
		}
		after := time.Now().UnixNano()
		if err != nil || string(buf[:n]) != string(pkt) {
			t.Fatalf("read %d: %v %x", i, err, buf[:n])
		}
		if len(pkt) == 40 {
			at, ok := arr.lookup(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]))
			if !ok || at < before || at > after {
				t.Errorf("packet %d arrival %d ok %v, want within [%d, %d]", i, at, ok, before, after)
			}
		}
	}
	if got := arr.ssrcs[2].Load(); got != 0 {
		t.Errorf("RTCP or STUN claimed a ring: %x", got)
	}
	if _, ok := arr.lookup(7, 1); ok {
		t.Error("an unseen sequence number was found")
	}
	if _, ok := arr.lookup(8, 0); ok {
		t.Error("an unseen SSRC was found")
	}
}

// TestArrivalsRing checks slot reuse and the SSRC limit, with a writer and a reader racing under
// -race.
func TestArrivalsRing(t *testing.T) {
	arr := new(arrivals)
	for seq := range uint16(arrivalsPerSSRC + 10) {
		arr.note(1, seq, int64(seq)+1)
	}
	if _, ok := arr.lookup(1, 5); ok {
		t.Error("seq 5 should have been overwritten by a later one")
	}
	if at, ok := arr.lookup(1, arrivalsPerSSRC+5); !ok || at != arrivalsPerSSRC+6 {
		t.Errorf("recent seq: %d %v", at, ok)
	}
	for ssrc := uint32(2); ssrc < 10; ssrc++ {
		arr.note(ssrc, 1, 1)
	}
	if _, ok := arr.lookup(9, 1); ok {
		t.Error("a fifth SSRC got a ring")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := range uint16(20000) {
			arr.note(2, seq, int64(seq))
		}
	})
	wg.Go(func() {
		for seq := range uint16(20000) {
			if at, ok := arr.lookup(2, seq); ok && at != int64(seq) {
				t.Errorf("seq %d read time %d", seq, at)
				return
			}
		}
	})
	wg.Wait()
}

func TestRxTimestampMalformed(t *testing.T) {
	for _, oob := range [][]byte{nil, make([]byte, 8), make([]byte, 40)} {
		if _, ok := rxTimestamp(oob); ok {
			t.Errorf("timestamp found in %x", oob)
		}
	}
	bad := make([]byte, 32)
	binary.NativeEndian.PutUint64(bad, 1000) // a length past the buffer
	if _, ok := rxTimestamp(bad); ok {
		t.Error("timestamp found in a message longer than its buffer")
	}
}

// FuzzArrivals feeds arbitrary datagrams (what a server sends a subscriber) and control messages
// to the arrival log: nothing panics, and an RTP header that was noted is found again.
func FuzzArrivals(f *testing.F) {
	f.Add([]byte{0x80, 102, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 2}, []byte{})
	f.Add([]byte{0x81, 201, 0, 1}, make([]byte, 32))
	f.Fuzz(func(t *testing.T, dgram, oob []byte) {
		_, _ = rxTimestamp(oob)
		arr := new(arrivals)
		arr.noteDatagram(dgram, 42)
		if len(dgram) >= 12 && dgram[0] >= 128 && dgram[0] <= 191 && (dgram[1] < 192 || dgram[1] > 223) {
			at, ok := arr.lookup(binary.BigEndian.Uint32(dgram[8:]), binary.BigEndian.Uint16(dgram[2:]))
			if !ok || at != 42 {
				t.Fatalf("noted RTP not found: %d %v", at, ok)
			}
		}
	})
}
