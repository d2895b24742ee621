package webrtcserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/vishvananda/netns"

	"github.com/streamfleet/streamfleet/node/hub"
)

// TestBuildFrame: a frame has the virtio_net_hdr that asks the device for the UDP checksum and
// makes the kernel copy it whole, the path's Ethernet header, a valid IPv4 header and a UDP header
// whose checksum, completed as a device does, is the datagram's.
func TestBuildFrame(t *testing.T) {
	p := netPath{ifindex: 3, mtu: 1500, src: [4]byte{10, 0, 0, 1}}
	copy(p.eth[:], []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0})
	dst := netip.MustParseAddrPort("10.0.0.2:6000")
	for _, size := range []int{0, 1, 101, 1200, 1472} {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(i*7 + size)
		}
		f := make([]byte, ringFrameSize-ringDataOff)
		n := buildFrame(f, &p, 5000, dst, payload)
		if n != vnetHdrLen+frameHdrs+size {
			t.Fatalf("size %d: frame of %d bytes", size, n)
		}
		ne, be := binary.NativeEndian, binary.BigEndian
		if f[0] != 1 || f[1] != 0 || int(ne.Uint16(f[2:])) != frameHdrs+size || ne.Uint16(f[6:]) != 34 || ne.Uint16(f[8:]) != 6 {
			t.Errorf("size %d: virtio_net_hdr % x", size, f[:vnetHdrLen])
		}
		pkt := f[vnetHdrLen:n]
		if !bytes.Equal(pkt[:ethHdrLen], p.eth[:]) {
			t.Errorf("size %d: Ethernet header % x", size, pkt[:ethHdrLen])
		}
		ip := pkt[ethHdrLen : ethHdrLen+ipv4HdrLen]
		if ip[0] != 0x45 || int(be.Uint16(ip[2:])) != ipv4HdrLen+udpHdrLen+size || be.Uint16(ip[6:]) != 0x4000 || ip[8] != 64 || ip[9] != 17 ||
			!bytes.Equal(ip[12:16], []byte{10, 0, 0, 1}) || !bytes.Equal(ip[16:20], []byte{10, 0, 0, 2}) {
			t.Errorf("size %d: IPv4 header % x", size, ip)
		}
		if c := checksum(ip); c != 0 {
			t.Errorf("size %d: IPv4 header checksum does not verify (%#x)", size, c)
		}
		udp := pkt[ethHdrLen+ipv4HdrLen:]
		if be.Uint16(udp[0:]) != 5000 || be.Uint16(udp[2:]) != 6000 || int(be.Uint16(udp[4:])) != udpHdrLen+size || !bytes.Equal(udp[udpHdrLen:], payload) {
			t.Errorf("size %d: UDP header % x or payload differ", size, udp[:udpHdrLen])
		}
		// What the device does: the one's-complement sum from csum_start to the end, complemented,
		// into the checksum field (which holds the pseudo-header's sum).
		done := append([]byte(nil), udp...)
		binary.BigEndian.PutUint16(done[6:], checksum(udp))
		// The datagram's checksum, computed the long way: pseudo-header and datagram with 0 in it.
		pseudo := append(append(append([]byte(nil), ip[12:20]...), 0, 17, 0, 0), udp...)
		binary.BigEndian.PutUint16(pseudo[10:], uint16(udpHdrLen+size))
		binary.BigEndian.PutUint16(pseudo[12+6:], 0)
		if want := checksum(pseudo); want != binary.BigEndian.Uint16(done[6:]) {
			t.Errorf("size %d: completed UDP checksum %#x, want %#x", size, binary.BigEndian.Uint16(done[6:]), want)
		}
	}
}

// checksum is the Internet checksum of b (RFC 1071), an odd last byte padded with zero.
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i < len(b); i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < len(b) {
			w |= uint32(b[i+1])
		}
		s += w
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// TestResolveNetPath: paths come from the kernel's routes and neighbours — a neighbour on the
// device, a gateway's MAC for a routed destination, the bound address as source — and there is
// none without a neighbour entry, for IPv6, or on a loopback that would drop what is put on it.
func TestResolveNetPath(t *testing.T) {
	if !inNetns(t, "ip link set lo up && ip link add v0 type veth peer name v1 && ip addr add 10.9.0.1/24 dev v0 && "+
		"ip link set v0 up && ip link set v1 up && ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 nud permanent && "+
		"ip route add 10.8.0.0/16 via 10.9.0.2") {
		return
	}
	v0, err := net.InterfaceByName("v0")
	if err != nil {
		t.Fatal(err)
	}
	want := netPath{ifindex: v0.Index, mtu: v0.MTU, src: [4]byte{10, 9, 0, 1}}
	copy(want.eth[:], []byte{2, 0, 0, 0, 0, 2})
	copy(want.eth[6:], v0.HardwareAddr)
	want.eth[12], want.eth[13] = 8, 0
	any4, bound := netip.IPv4Unspecified(), netip.MustParseAddr("10.9.0.1")
	for _, c := range []struct{ dst, from netip.Addr }{
		{netip.MustParseAddr("10.9.0.2"), any4},                    // on the link
		{netip.MustParseAddr("10.8.1.1"), any4},                    // through the gateway 10.9.0.2
		{netip.MustParseAddr("::ffff:10.8.1.1"), bound},            // v4-mapped, from the bound address
		{netip.MustParseAddr("10.9.0.2"), netip.IPv6Unspecified()}, // a dual-stack socket's
	} {
		got, err := resolveNetPath(c.dst, c.from)
		if err != nil || got != want {
			t.Errorf("%s from %s: %+v, %v; want %+v", c.dst, c.from, got, err, want)
		}
	}
	for _, dst := range []string{"10.9.0.3", "::1", "127.0.0.1"} { // no neighbour; IPv6; loopback as it is by default
		if p, err := resolveNetPath(netip.MustParseAddr(dst), any4); !errors.Is(err, errNoPath) {
			t.Errorf("%s: %+v, %v; want errNoPath", dst, p, err)
		} else {
			t.Logf("%s: %v", dst, err)
		}
	}
	setLoopbackSysctls(t)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	got, err := resolveNetPath(netip.MustParseAddr("127.0.0.1"), any4)
	if err != nil || got.ifindex != lo.Index || got.eth != [ethHdrLen]byte{12: 8} || got.src != [4]byte{127, 0, 0, 1} {
		t.Errorf("127.0.0.1 with accept_local and route_localnet: %+v, %v", got, err)
	}
}

// setLoopbackSysctls lets loopback take datagrams put on it from a local 127/8 source (in the
// test's own namespace).
func setLoopbackSysctls(t *testing.T) {
	t.Helper()
	for _, k := range []string{"accept_local", "route_localnet"} {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/lo/"+k, []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPacketSendLoopback: a batch with the packet path sends, once the path is known, its IPv4
// datagrams through its ring, from the socket's own address and port, in order, and the rest by
// sendmmsg: the first round (no path yet), IPv6 destinations of a dual-stack socket, and what
// does not fit a full ring.
func TestPacketSendLoopback(t *testing.T) {
	if !inNetns(t, "ip link set lo up") {
		return
	}
	setLoopbackSysctls(t)
	for _, c := range []struct {
		name, listen string
		frames       int
	}{{"ipv4", "127.0.0.1:0", 256}, {"dual-stack", "[::]:0", 256}, {"small ring", "127.0.0.1:0", 8}} {
		t.Run(c.name, func(t *testing.T) { packetSendRounds(t, c.listen, c.frames) })
	}
	t.Run("runs as GSO messages", func(t *testing.T) { packetSendRuns(t, false) })
	t.Run("runs without messages", func(t *testing.T) { packetSendRuns(t, true) })
	t.Run("GSO messages refused", packetSendRunsRefused)
	t.Run("a round's frames kicked at its end", packetSendRoundKicks)
}

// packetSendRoundKicks: in a fan-out round the ring's frames wait for its end (one kick a round),
// and their fan-out delay is observed then; a ring half full is kicked at once; and a run that
// goes as a GSO message mid-round takes the frames before it along first, so the viewer gets
// its datagrams in order.
func packetSendRoundKicks(t *testing.T) {
	defer func(n int) { ringFrames = n }(ringFrames)
	ringFrames = 128
	b, stats, _, pkt := newPacketBatch(t, "127.0.0.1:0")
	waitPath(t, pkt, netip.MustParseAddr("127.0.0.1"))
	a := listenUDP(t)
	to := a.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 2000)
	nothingYet := func(when string) {
		t.Helper()
		_ = a.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := a.ReadFromUDPAddrPort(buf); err == nil {
			t.Fatalf("%s: a datagram of %d bytes arrived", when, n)
		}
	}
	delays := func() uint64 { _, _, n, _ := stats.FanoutDelay.Snapshot(); return n }
	// send adds n datagrams numbered from first: of growing sizes from size (each one lone), or
	// all of size (a run).
	send := func(n, size int, run bool, first byte) {
		for i := range n {
			p := make([]byte, size)
			if !run {
				p = make([]byte, size+i)
			}
			p[0] = first + byte(i)
			b.at = time.Now().UnixNano()
			b.add(p, to)
		}
	}
	expect := func(n int, first byte) {
		t.Helper()
		for i := range n {
			_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
			size, _, err := a.ReadFromUDPAddrPort(buf)
			if err != nil || buf[0] != first+byte(i) {
				t.Fatalf("datagram %d: %d bytes, first byte %d, %v; want %d", i, size, buf[0], err, first+byte(i))
			}
		}
	}

	// Two batches' worth of lone datagrams: both flushed into the ring, neither kicked.
	b.startRound()
	send(2*sendBatchSize, 100, false, 0)
	nothingYet("mid-round")
	if got := stats.PacketRingDatagrams.Load(); got != 2*sendBatchSize {
		t.Fatalf("%d datagrams in the ring, want %d", got, 2*sendBatchSize)
	}
	if d := delays(); d != 0 {
		t.Errorf("%d delays observed before the frames were kicked", d)
	}
	b.endRound()
	expect(2*sendBatchSize, 0)
	if d := delays(); d != 2*sendBatchSize {
		t.Errorf("%d delays observed, want %d", d, 2*sendBatchSize)
	}

	// Half the ring filled mid-round: kicked at once.
	b.startRound()
	send(ringFrames/2, 100, false, 50)
	expect(ringFrames/2, 50)
	b.endRound()

	// Lone datagrams held in the ring, then a run that goes as one GSO message: the held frames
	// are kicked before it.
	b.startRound()
	send(sendBatchSize, 100, false, 100)
	send(sendBatchSize, 1000, true, 150)
	if stats.PacketGSOMessages.Load() == 0 {
		t.Fatal("the run did not go as a GSO message")
	}
	expect(sendBatchSize, 100)
	expect(sendBatchSize, 150)
	b.endRound()
	nothingYet("after the round")
}

// newPacketBatch is a batch with the packet path on a socket of listen's.
func newPacketBatch(t *testing.T, listen string) (*sendBatch, *Stats, netip.AddrPort, *packetSender) {
	t.Helper()
	pc, err := listenICEUDP(listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	local := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pkt, err := newPacketSender(local, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pkt.close)
	stats := new(Stats)
	b, err := newSendBatch(pc, stats, pkt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)
	return b, stats, local, pkt
}

// waitPath waits until pkt has a path to dst.
func waitPath(t testing.TB, pkt *packetSender, dst netip.Addr) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if e := pkt.paths.lookup(dst); e != nil {
			if !e.ok {
				t.Fatalf("no path to %s: %v", dst, e.err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the path to %s was not resolved", dst)
		}
	}
}

// packetSendRuns: a run of equal-sized datagrams to one viewer goes as one GSO message through
// the packet socket, with what follows it to that viewer, the datagrams before it and to others
// by the ring; with the messages off (a kernel that refuses them) all go by the ring. Either way
// each receiver gets its own in order, from the socket's port.
func packetSendRuns(t *testing.T, messagesOff bool) {
	b, stats, local, pkt := newPacketBatch(t, "127.0.0.1:0")
	b.runs.off = messagesOff
	waitPath(t, pkt, netip.MustParseAddr("127.0.0.1"))
	a, c := listenUDP(t), listenUDP(t)
	to := func(u *net.UDPConn) netip.AddrPort { return u.LocalAddr().(*net.UDPAddr).AddrPort() }
	// A flush of lone datagrams first, all by the ring: what the next flush's runs must not take
	// for sent.
	buf := make([]byte, 2000)
	for i := range 7 {
		b.add(make([]byte, 10+i), to(a))
	}
	b.flush()
	for i := range 7 {
		_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _, err := a.ReadFromUDPAddrPort(buf); err != nil || n != 10+i {
			t.Fatalf("lone datagram %d: %d bytes, %v", i, n, err)
		}
	}
	ring0 := stats.PacketRingDatagrams.Load() // the counts below are the next flush's
	sizes := []struct {
		u    *net.UDPConn
		size int
	}{{c, 50}, {a, 100}, {c, 500}, {c, 500}, {c, 300}, {c, 700}, {a, 200}}
	for i, d := range sizes {
		p := make([]byte, d.size)
		p[0] = byte(i)
		b.add(p, to(d.u))
	}
	b.flush()
	// By the ring: c's first and a's two; then c's run of three and its last, a message each.
	type counts struct{ ring, batched, gsoMessages, byMessages uint64 }
	want := counts{ring: 3, gsoMessages: 1, byMessages: 4}
	if messagesOff {
		want = counts{ring: 7}
	}
	got := counts{stats.PacketRingDatagrams.Load() - ring0, stats.BatchedPackets.Load(), stats.PacketGSOMessages.Load(), stats.PacketMessageDatagrams.Load()}
	if got != want {
		t.Errorf("sent %+v, want %+v", got, want)
	}
	if n := stats.SendErrors.Load() + stats.PacketRingErrors.Load() + stats.PacketMessagesWaits.Load(); n != 0 {
		t.Errorf("%d send errors or waits", n)
	}
	for i, d := range sizes {
		_ = d.u.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := d.u.ReadFromUDPAddrPort(buf)
		if err != nil || n != d.size || buf[0] != byte(i) {
			t.Errorf("datagram %d: %d bytes, first byte %d, %v; want %d bytes, %d", i, n, buf[0], err, d.size, i)
		}
		if from.Port() != local.Port() {
			t.Errorf("datagram %d from %s, want port %d", i, from, local.Port())
		}
	}
}

// packetSendRunsRefused: a kernel that refuses a GSO message (here, one with a gso_type it does
// not know) turns the messages off: that flush's runs, and what follows them, go by sendmmsg,
// later ones by the ring, all delivered in order.
func packetSendRunsRefused(t *testing.T) {
	defer func(v uint8) { vnetGSOType = v }(vnetGSOType)
	vnetGSOType = 0x7e
	b, stats, _, pkt := newPacketBatch(t, "127.0.0.1:0")
	waitPath(t, pkt, netip.MustParseAddr("127.0.0.1"))
	c := listenUDP(t)
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	sizes := []int{50, 500, 500, 300, 80}
	for round := range 2 {
		for i, size := range sizes {
			p := make([]byte, size)
			p[0], p[1] = byte(round), byte(i)
			b.add(p, to)
		}
		b.flush()
	}
	// Round 0: the first by the ring, the run and the last by sendmmsg once the message failed;
	// round 1: all by the ring.
	if ring, batched, off := stats.PacketRingDatagrams.Load(), stats.BatchedPackets.Load(), stats.GSODisabled.Load(); ring != 6 || batched != 4 || off != 1 || !b.runs.off {
		t.Errorf("%d by the ring, %d by sendmmsg, GSO refusals %d (messages off: %v); want 6, 4, 1, true", ring, batched, off, b.runs.off)
	}
	if n := stats.PacketMessageDatagrams.Load() + stats.SendErrors.Load(); n != 0 {
		t.Errorf("%d datagrams counted as sent in messages or as errors", n)
	}
	buf := make([]byte, 2000)
	for round := range 2 {
		for i, size := range sizes {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil || n != size || buf[0] != byte(round) || buf[1] != byte(i) {
				t.Fatalf("round %d, datagram %d: %d bytes (round %d, %d), %v; want %d bytes", round, i, n, buf[0], buf[1], err, size)
			}
		}
	}
}

func packetSendRounds(t *testing.T, listen string, frames int) {
	defer func(n int) { ringFrames = n }(ringFrames)
	ringFrames = frames
	b, stats, local, pkt := newPacketBatch(t, listen)
	var err error
	dual := strings.HasPrefix(listen, "[")
	const receivers, rounds = 30, 4
	rs := make([]*net.UDPConn, receivers)
	for i := range rs {
		addr := "127.0.0.1:0"
		if dual && i%3 == 0 {
			addr = "[::1]:0"
		}
		if rs[i], err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))); err != nil {
			t.Fatal(err)
		}
		defer rs[i].Close()
	}
	// What a round sends by the ring: the IPv4 datagrams of each sendBatchSize-long flush, as many
	// as the ring has frames (loopback frees each frame within the kick).
	v4, perRound := 0, 0
	for from := 0; from < receivers; from += sendBatchSize {
		n := 0
		for i := from; i < min(from+sendBatchSize, receivers); i++ {
			if !dual || i%3 != 0 {
				n++
			}
		}
		v4 += n
		perRound += min(n, frames)
	}
	round := func(r int) {
		for i, c := range rs {
			p := make([]byte, 20+i*40+r)
			p[0], p[1] = byte(i), byte(r)
			b.add(p, c.LocalAddr().(*net.UDPAddr).AddrPort()) // flushes every sendBatchSize
			if r == 0 && i == sendBatchSize-1 && stats.PacketRingDatagrams.Load() != 0 {
				t.Errorf("%d datagrams by the ring before any path was known", stats.PacketRingDatagrams.Load())
			}
		}
		b.flush()
	}
	round(0) // the first flush by sendmmsg only, the paths asked for (later ones may have them)
	waitPath(t, pkt, netip.MustParseAddr("127.0.0.1"))
	ring0, full0 := int(stats.PacketRingDatagrams.Load()), int(stats.PacketRingFull.Load())
	for r := 1; r < rounds; r++ {
		round(r)
	}
	byRing, full := int(stats.PacketRingDatagrams.Load())-ring0, int(stats.PacketRingFull.Load())-full0
	wantRing := (rounds - 1) * perRound
	if byRing != wantRing || full != (rounds-1)*v4-wantRing {
		t.Errorf("%d datagrams by the ring, %d found it full; want %d and %d", byRing, full, wantRing, (rounds-1)*v4-wantRing)
	}
	if n := stats.SendErrors.Load() + stats.PacketRingErrors.Load(); n != 0 {
		t.Errorf("%d send errors", n)
	}
	buf := make([]byte, 2000)
	for i, c := range rs {
		for r := range rounds {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("receiver %d, round %d: %v", i, r, err)
			}
			if n != 20+i*40+r || buf[0] != byte(i) || buf[1] != byte(r) {
				t.Errorf("receiver %d, round %d: %d bytes, from round %d", i, r, n, buf[1])
			}
			if from.Port() != local.Port() || (!local.Addr().IsUnspecified() && from.Addr().Unmap() != local.Addr()) {
				t.Errorf("receiver %d, round %d: from %s, want the socket's %s", i, r, from, local)
			}
		}
	}
}

// TestPacketSendFanOut: with Config.PacketSend, WebRTC viewers (pion peers) of a stream receive
// every packet through the fan-out groups' rings — encrypted by the node, framed by it, checked
// by each viewer's SRTP — and a NACK is still answered.
func TestPacketSendFanOut(t *testing.T) {
	if !inNetns(t, "ip link set lo up") {
		return
	}
	setLoopbackSysctls(t)
	ctx, s, base, api, pub := startSR(t, func(c *Config) { c.PacketSend = true })
	const viewers = 3
	vs := joinSR(ctx, t, s, api, base, viewers)
	// The path is resolved when a group first sends to the address; here before the media starts,
	// so that the counts below are the ring's alone (a new viewer's first packets go by sendmmsg
	// until then, as they would anyway).
	start := time.Now()
	waitPath(t, s.pkt, netip.MustParseAddr("127.0.0.1"))
	t.Logf("path resolved in %v", time.Since(start))
	sendSR(t, pub, 2500*time.Millisecond, 0) // about 75 video and 125 audio packets, numbered from 0
	received := 0
	for i, v := range vs {
		v.mu.Lock()
		for _, kind := range []string{"video", "audio"} {
			ssrc := v.ssrc[kind]
			n, last := v.packets[ssrc], int(v.lastSeq[ssrc])
			received += n
			if n < 60 || n != last+1 {
				t.Errorf("viewer %d: %d %s packets up to number %d, want all of them (60 or more)", i, n, kind, last)
			}
		}
		v.mu.Unlock()
	}
	// Nearly all went by the packet path, lone datagrams through the rings and runs to one viewer
	// (a video and an audio packet in one round) as messages; the rest by sendmmsg, and each
	// viewer's first packet by pion, to be compared.
	byRing, byMessage := int(s.stats.PacketRingDatagrams.Load()), int(s.stats.PacketMessageDatagrams.Load())
	batched := int(s.stats.BatchedPackets.Load())
	if byRing < received/2 || byRing+byMessage < received-2*viewers || byRing+byMessage+batched+viewers < received {
		t.Errorf("of the %d datagrams received %d went by the rings, %d in messages and %d by sendmmsg; want nearly all by the packet path, all by one of them",
			received, byRing, byMessage, batched)
	}
	t.Logf("%d datagrams by the rings, %d in messages (%d GSO), %d by sendmmsg", byRing, byMessage, s.stats.PacketGSOMessages.Load(), batched)
	if n := s.stats.SendErrors.Load() + s.stats.PacketRingErrors.Load() + s.stats.PacketRingFull.Load(); n != 0 {
		t.Errorf("%d send errors or full rings", n)
	}
	v := vs[0]
	v.mu.Lock()
	ssrc, seq := v.ssrc["video"], v.lastSeq[v.ssrc["video"]]
	v.mu.Unlock()
	rtx := s.stats.Retransmissions.Load()
	if err := v.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: seq - 5}}}}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); s.stats.Retransmissions.Load() == rtx; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("NACK not answered")
		}
	}
}

// TestPacketSendNeedsCapability: without CAP_NET_RAW (a user namespace that does not own the
// network namespace) a server asked for the packet path refuses to start, saying why.
func TestPacketSendNeedsCapability(t *testing.T) {
	if os.Getenv(netnsEnv) != t.Name() {
		cmd := exec.Command("unshare", "--user", "--map-root-user", "--", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name())
		if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
			t.Fatalf("in a user namespace of its own (needs unshare: util-linux): %v\n%s", err, out)
		}
		return
	}
	h := hub.New(hub.Config{}, nil)
	defer h.Close()
	cfg := DefaultConfig()
	cfg.ICEUDPAddr, cfg.PacketSend = "127.0.0.1:0", true
	s, err := New(cfg, h, nil)
	if err == nil {
		_ = s.Close(context.Background())
		t.Fatal("started without CAP_NET_RAW")
	}
	if !strings.Contains(err.Error(), "CAP_NET_RAW") {
		t.Errorf("error %q does not say what is missing", err)
	}
	t.Log(err)
}

// TestPacketRingWaitsForDevice: when the device's queue holds the ring socket's whole send
// buffer, a kick leaves frames in the ring; the batch's retry hands them over as the queue drains,
// so every datagram arrives, in order, none dropped or sent twice. The namespace's loopback has a
// 2 Mbit/s token bucket, which holds the frames' skbs, and the ring's send buffer is small.
func TestPacketRingWaitsForDevice(t *testing.T) {
	if !inNetns(t, "ip link set lo up && tc qdisc add dev lo root tbf rate 2mbit burst 4kb latency 10s") {
		return
	}
	setLoopbackSysctls(t)
	defer func(n int) { ringSendBuffer = n }(ringSendBuffer)
	ringSendBuffer = 4096
	b, stats, _, pkt := newPacketBatch(t, "127.0.0.1:0")
	r := listenUDP(t)
	if err := r.SetReadBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()
	waitPath(t, pkt, to.Addr())
	const datagrams = 48 // ~58 KB, ~0.2 s at the qdisc's rate
	sendNumbered(b, to, datagrams)
	start := time.Now()
	for b.retryC() != nil { // as the group's loop does
		if time.Since(start) > 10*time.Second {
			t.Fatal("frames still waiting after 10 s")
		}
		<-b.retryC()
		b.retryRings()
	}
	t.Logf("%d datagrams by the ring, %d waits, all taken after %v", stats.PacketRingDatagrams.Load(), stats.PacketRingWaits.Load(), time.Since(start))
	if stats.PacketRingDatagrams.Load() != datagrams || stats.PacketRingWaits.Load() == 0 {
		t.Errorf("%d datagrams by the ring, %d waits; want %d and some", stats.PacketRingDatagrams.Load(), stats.PacketRingWaits.Load(), datagrams)
	}
	if n := stats.SendErrors.Load() + stats.PacketRingErrors.Load() + stats.PacketRingFull.Load(); n != 0 {
		t.Errorf("%d errors or full rings", n)
	}
	readNumbered(t, r, datagrams)
	buf := make([]byte, 2000)
	_ = r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, _, err := r.ReadFromUDPAddrPort(buf); err == nil {
		t.Error("a datagram more than was sent")
	}
}

// TestPathCache: a path is resolved once on the first lookup, in the background, and again once
// it is older than the cache's TTL (sooner after a failure); the generation the groups watch moves
// only when what a lookup returns changes, not on a refresh that found the same path.
func TestPathCache(t *testing.T) {
	var mu sync.Mutex
	calls, fail := 0, false
	want := netPath{ifindex: 7, mtu: 1500, src: [4]byte{10, 0, 0, 1}}
	c := newPathCache(func(netip.Addr) (netPath, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if fail {
			return netPath{}, errNoPath
		}
		return want, nil
	})
	defer c.close()
	c.ttl, c.retry = 200*time.Millisecond, 20*time.Millisecond
	dst := netip.MustParseAddr("10.0.0.2")
	// resolved waits until a lookup returns an entry resolved after since, and returns it.
	resolved := func(since time.Time) *pathEntry {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if e := c.lookup(dst); e != nil && e.at.After(since) {
				return e
			}
		}
		t.Fatal("not resolved")
		return nil
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return calls }

	start := time.Now()
	if e := c.lookup(dst); e != nil {
		t.Fatalf("an entry before any resolution: %+v", e)
	}
	e := resolved(start)
	if !e.ok || e.path != want || count() != 1 || c.gen.Load() != 1 {
		t.Fatalf("first: %+v, %d calls, generation %d", e, count(), c.gen.Load())
	}
	if c.lookup(dst) != e || count() != 1 {
		t.Fatal("resolved again before its TTL")
	}
	time.Sleep(c.ttl)
	if e = resolved(e.at); count() != 2 || c.gen.Load() != 1 || !e.ok {
		t.Errorf("refresh: %+v, %d calls, generation %d; want 2 calls, generation 1", e, count(), c.gen.Load())
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	time.Sleep(c.ttl)
	if e = resolved(e.at); e.ok || count() != 3 || c.gen.Load() != 2 {
		t.Errorf("failing: %+v, %d calls, generation %d; want no path, 3 calls, generation 2", e, count(), c.gen.Load())
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	failed := e.at
	if e = resolved(failed); !e.ok || e.at.Sub(failed) > c.ttl/2 || c.gen.Load() != 3 {
		t.Errorf("after the failure: %+v %v later, generation %d; want a path within the retry interval, generation 3", e, e.at.Sub(failed), c.gen.Load())
	}
}

// TestPacketSendVeth: over a veth to a second namespace, with checksums computed by the kernel in
// software on the way out and verified on the way in (the sending end's checksum offload and the
// receiving end's off), the datagrams the ring and the packet socket send arrive intact, in order,
// from the socket's address and port: lone datagrams by the ring, runs to one viewer as GSO
// messages cut by the kernel, and what follows a run to that viewer as a message after it.
func TestPacketSendVeth(t *testing.T) {
	if !inNetns(t, `mount -t tmpfs none /run && ip netns add peer && `+
		`ip link add sf0 address 02:00:00:00:00:01 type veth peer name sf1 address 02:00:00:00:00:02 netns peer && `+
		`ip addr add 10.9.0.1/24 dev sf0 && ip link set sf0 up && ethtool -K sf0 tx off >/dev/null && `+
		`ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev sf0 nud permanent && `+
		`ip netns exec peer sh -c 'ip addr add 10.9.0.2/24 dev sf1 && ip link set sf1 up && ethtool -K sf1 rx off >/dev/null'`) {
		return
	}
	b, stats, local, pkt := newPacketBatch(t, "10.9.0.1:0")
	waitPath(t, pkt, netip.MustParseAddr("10.9.0.2"))
	const receivers, rounds = 5, 3
	rs := make([]*net.UDPConn, receivers)
	inPeer(t, func() {
		for i := range rs {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(10, 9, 0, 2)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			_ = c.SetReadBuffer(1 << 20)
			rs[i] = c
		}
	})
	csum0 := peerUDPCounter(t, "InCsumErrors")
	// Per receiver and round: a lone datagram, a run of four of 1,200 bytes and a shorter one, one
	// more after the run; the receivers' datagrams interleaved per round as a group writes them.
	type datagram struct{ r, size int }
	var order []datagram
	for i := range receivers {
		order = append(order, datagram{i, 100 + i})
		for range 4 {
			order = append(order, datagram{i, 1200})
		}
		order = append(order, datagram{i, 300}, datagram{i, 80})
	}
	seq := make([]int, receivers)
	payload := func(r, n, size int) []byte {
		p := make([]byte, size)
		for k := range p {
			p[k] = byte(r*31 + n*7 + k)
		}
		return p
	}
	for range rounds {
		for _, d := range order {
			b.add(payload(d.r, seq[d.r], d.size), rs[d.r].LocalAddr().(*net.UDPAddr).AddrPort())
			seq[d.r]++
		}
		b.flush()
	}
	if stats.PacketRingDatagrams.Load() == 0 || stats.PacketGSOMessages.Load() == 0 || stats.PacketMessageDatagrams.Load() == 0 {
		t.Errorf("%d datagrams by the ring, %d by messages (%d GSO); want some of each",
			stats.PacketRingDatagrams.Load(), stats.PacketMessageDatagrams.Load(), stats.PacketGSOMessages.Load())
	}
	if got, want := stats.PacketRingDatagrams.Load()+stats.PacketMessageDatagrams.Load(), uint64(rounds*len(order)); got != want {
		t.Errorf("%d datagrams by the packet path, want all %d (%d by sendmmsg)", got, want, stats.BatchedPackets.Load())
	}
	if n := stats.SendErrors.Load() + stats.PacketRingErrors.Load() + stats.PacketMessagesWaits.Load() + stats.GSODisabled.Load(); n != 0 {
		t.Errorf("%d send errors, waits or refusals", n)
	}
	buf := make([]byte, 2000)
	for r, c := range rs {
		n := 0
		for range rounds {
			for _, d := range order {
				if d.r != r {
					continue
				}
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("receiver %d, datagram %d: %v (checksum errors: %d)", r, n, err, peerUDPCounter(t, "InCsumErrors")-csum0)
				}
				if !bytes.Equal(buf[:got], payload(r, n, d.size)) {
					t.Fatalf("receiver %d, datagram %d: %d bytes, not the %d sent (lost or out of order; checksum errors: %d)",
						r, n, got, d.size, peerUDPCounter(t, "InCsumErrors")-csum0)
				}
				if from != local {
					t.Errorf("receiver %d, datagram %d: from %s, want the socket's %s", r, n, from, local)
				}
				n++
			}
		}
	}
	if n := peerUDPCounter(t, "InCsumErrors") - csum0; n != 0 {
		t.Errorf("%d datagrams with bad checksums", n)
	}
}

// inPeer runs f on a thread in network namespace "peer" (sockets made there stay there).
func inPeer(t *testing.T, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	peer, err := netns.GetFromName("peer")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if err := netns.Set(peer); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // the locked thread would go back to the pool in the wrong namespace
		}
	}()
	f()
}

// peerUDPCounter reads one of the UDP counters of /proc/net/snmp in namespace "peer".
func peerUDPCounter(t *testing.T, name string) uint64 {
	t.Helper()
	var v uint64
	inPeer(t, func() {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || fields[0] != "Udp:" {
				continue
			}
			if names == nil {
				names = fields
				continue
			}
			for i, f := range fields {
				if i < len(names) && names[i] == name {
					v, err = strconv.ParseUint(f, 10, 64)
				}
			}
		}
		if err != nil || !slices.Contains(names, name) {
			t.Fatalf("no Udp %s in /proc/net/snmp: %v", name, err)
		}
	})
	return v
}
