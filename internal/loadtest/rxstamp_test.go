package loadtest

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v4/stdnet"
	"golang.org/x/sys/unix"
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
	c, err := stampNet(sys, arr, nil, nil).ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
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

func TestRxControlMalformed(t *testing.T) {
	for _, oob := range [][]byte{nil, make([]byte, 8), make([]byte, 40)} {
		if at, seg := rxControl(oob); at != 0 || seg != 0 {
			t.Errorf("time %d, segment %d found in %x", at, seg, oob)
		}
	}
	bad := make([]byte, 32)
	binary.NativeEndian.PutUint64(bad, 1000) // a length past the buffer
	if at, seg := rxControl(bad); at != 0 || seg != 0 {
		t.Error("control message found in a message longer than its buffer")
	}
}

// FuzzArrivals feeds arbitrary datagrams (what a server sends a subscriber) and control messages
// to the arrival log: nothing panics, and an RTP header that was noted is found again.
func FuzzArrivals(f *testing.F) {
	f.Add([]byte{0x80, 102, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 2}, []byte{})
	f.Add([]byte{0x81, 201, 0, 1}, make([]byte, 32))
	f.Fuzz(func(t *testing.T, dgram, oob []byte) {
		_, _ = rxControl(oob)
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

// sendGSO sends dgrams from tx as one UDP GSO message (UDP_SEGMENT of the first's size): the
// kernel cuts it into those datagrams, or, to a socket with UDP GRO on loopback, queues it whole.
func sendGSO(t *testing.T, tx *net.UDPConn, dgrams ...[]byte) {
	t.Helper()
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(len(dgrams[0])))
	if _, _, err := tx.WriteMsgUDP(bytes.Join(dgrams, nil), oob, nil); err != nil {
		t.Fatal(err)
	}
}

// TestStampConnGRO: a subscriber socket with UDP GRO gets a GSO run on loopback as one buffer and
// hands it out datagram by datagram, unchanged and in order, each with the run's kernel time;
// adopted SRTP media in the run is measured in the read loop and the RTCP after it returned; a
// lone datagram after the run reads as before, and the run is counted.
func TestStampConnGRO(t *testing.T) {
	sys, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	f := newDirectFixture(t, srtp.ProtectionProfileAeadAes128Gcm, true)
	audio := &trackReader{s: f.sub, ssrc: 7, keyframeStart: h264KeyframeStart}
	f.d.adopt(audio)
	arr, gro := new(arrivals), new(groCounts)
	c, err := stampNet(sys, arr, f.d, gro).ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := c.(*stampConn)
	if sc.gro == nil {
		t.Fatal("the socket did not take UDP_GRO")
	}
	tx, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	buf := make([]byte, 1500)
	read := func() []byte {
		t.Helper()
		if err := sc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, addr, err := sc.ReadFromAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if addr.String() != tx.LocalAddr().String() {
			t.Errorf("sender %v, want %v", addr, tx.LocalAddr())
		}
		return append([]byte(nil), buf[:n]...)
	}

	// Adopted media, then RTCP (shorter, so it may end the run): only the RTCP reaches the caller.
	rtcpPkt := []byte{0x80, 200, 0, 3, 0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8}
	sendGSO(t, tx, f.srtp(t, 7, 10), f.srtp(t, 7, 11), f.srtp(t, 7, 12), rtcpPkt)
	if got := read(); !bytes.Equal(got, rtcpPkt) {
		t.Fatalf("read %x, want the RTCP after the run's media", got)
	}
	if audio.viaDirect != 3 || f.d.undecryptable() != 0 {
		t.Errorf("measured %d of the run's 3 media packets (%d undecryptable)", audio.viaDirect, f.d.undecryptable())
	}
	if gro.reads.Load() != 1 || gro.datagrams.Load() != 4 {
		t.Errorf("GRO counted %d reads, %d datagrams; want 1 and 4", gro.reads.Load(), gro.datagrams.Load())
	}

	// Media of a track not adopted: every datagram goes to the caller, noted at one time.
	rtpPkt := func(seq uint16) []byte {
		b := make([]byte, 100)
		b[0], b[1] = 0x80, 102
		binary.BigEndian.PutUint16(b[2:], seq)
		binary.BigEndian.PutUint32(b[8:], 9)
		b[99] = byte(seq)
		return b
	}
	before := time.Now().UnixNano()
	sendGSO(t, tx, rtpPkt(1), rtpPkt(2), rtpPkt(3))
	var at []int64
	for seq := uint16(1); seq <= 3; seq++ {
		if got := read(); !bytes.Equal(got, rtpPkt(seq)) {
			t.Fatalf("datagram %d of the run: %x", seq, got)
		}
		a, ok := arr.lookup(9, seq)
		if !ok || a < before {
			t.Fatalf("datagram %d noted %v at %d, sent after %d", seq, ok, a, before)
		}
		at = append(at, a)
	}
	if at[0] != at[1] || at[1] != at[2] {
		t.Errorf("one run's datagrams noted at different times %v", at)
	}
	if _, err := tx.Write(rtpPkt(4)); err != nil {
		t.Fatal(err)
	}
	if got := read(); !bytes.Equal(got, rtpPkt(4)) {
		t.Errorf("lone datagram read %x", got)
	}
	if gro.reads.Load() != 2 || gro.datagrams.Load() != 7 {
		t.Errorf("GRO counted %d reads, %d datagrams; want 2 and 7", gro.reads.Load(), gro.datagrams.Load())
	}
}
