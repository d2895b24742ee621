package webrtcserver

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSendBatchGSO sends one batch through a real loopback socket: runs of equal-sized datagrams
// to one address (the last may be shorter) go as one UDP GSO message each, and every receiver
// still gets each datagram whole, in order; a datagram over gsoMaxSegment goes alone.
func TestSendBatchGSO(t *testing.T) {
	b, stats := newTestBatch(t, "127.0.0.1:0")
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

// TestSendBatchOwnDescriptor: batches send through descriptors of their own (outside the poller)
// — so one group's sendmmsg never waits on another's lock — from the ICE socket itself (its port
// is the source), concurrently, and closing a batch leaves the socket working for the mux and the
// other batches.
func TestSendBatchOwnDescriptor(t *testing.T) {
	pc, err := listenICEUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	fdOf := func(c syscall.Conn) uintptr {
		raw, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var fd uintptr
		raw.Control(func(s uintptr) { fd = s })
		return fd
	}
	var batches []*sendBatch
	fds := map[uintptr]bool{fdOf(pc.(syscall.Conn)): true}
	for range 4 {
		b, err := newSendBatch(pc, new(Stats), nil)
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, b)
		fds[uintptr(b.fd)] = true
	}
	if len(fds) != 5 {
		t.Fatalf("%d descriptors for the socket and 4 batches", len(fds))
	}
	r := listenUDP(t)
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()
	const rounds = 50
	var wg sync.WaitGroup
	for i, b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				b.add([]byte{byte(i)}, to)
				b.flush()
			}
		}()
	}
	wg.Wait()
	counts := map[byte]int{}
	buf := make([]byte, 10)
	for range rounds * len(batches) {
		_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := r.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %v: %v", counts, err)
		}
		if from.Port() != uint16(pc.LocalAddr().(*net.UDPAddr).Port) || n != 1 {
			t.Fatalf("%d bytes from %v, not from the ICE socket's port", n, from)
		}
		counts[buf[0]]++
	}
	for i := range batches {
		if counts[byte(i)] != rounds {
			t.Fatalf("batch %d: %d datagrams, want %d", i, counts[byte(i)], rounds)
		}
	}

	batches[0].close()
	batches[1].add([]byte{9}, to)
	batches[1].flush()
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Read(buf); err != nil {
		t.Fatalf("another batch after one closed: %v", err)
	}
	self := pc.LocalAddr().(*net.UDPAddr)
	if _, err := pc.WriteTo([]byte("mux"), self); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := pc.ReadFrom(buf); err != nil || string(buf[:n]) != "mux" {
		t.Fatalf("the socket after a batch closed: %q, %v", buf[:n], err)
	}
	for _, b := range batches[1:] {
		b.close()
	}
}

// newTestBatch is a sendBatch on a UDP socket bound to addr, closed when the test ends.
func newTestBatch(tb testing.TB, addr string) (*sendBatch, *Stats) {
	tb.Helper()
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	stats := new(Stats)
	b, err := newSendBatch(conn, stats, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.close)
	return b, stats
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

// BenchmarkSendBatchKernelFloor measures what the kernel alone charges the node's sending thread
// per datagram: datagrams through a sendBatch to 200 loopback sockets, one each per round, a round
// every 10 ms (20,000 datagrams/s, the rate of 200 viewers at 600 kbps). No SRTP, no hub, no pion:
// the sender-µs/datagram metric (the sending thread's user+system CPU from getrusage) is the floor
// under the node's CPU per forwarded packet on loopback, the receive side included. Cases: video
// (1,200 bytes) and audio (160) sized datagrams to sockets drained by a goroutine each, as the
// load tool's viewers are, and video to sockets nobody reads (no wake-ups; most are dropped when
// the receive buffer is full, after the receive path ran).
func BenchmarkSendBatchKernelFloor(b *testing.B) {
	for _, c := range []struct {
		name            string
		size            int
		read, connected bool
	}{
		{"video-1200B", 1200, true, false}, {"audio-160B", 160, true, false},
		{"video-1200B-unread", 1200, false, false}, {"video-1200B-connected", 1200, true, true},
	} {
		b.Run(c.name, func(b *testing.B) { benchKernelFloor(b, c.size, c.read, c.connected) })
	}
	// With SF_FLOOR_DROP set to an address routed to a device that drops what it is given
	// (scripts/bench-floor.sh makes one in a network namespace of its own), the send path alone,
	// as if a NIC took each datagram away: nothing is received on this machine.
	if dst := os.Getenv("SF_FLOOR_DROP"); dst != "" {
		b.Run("video-1200B-dropping-device", func(b *testing.B) { benchDropFloor(b, dst, 1200, false) })
		b.Run("video-1200B-dropping-device-packet-ring", func(b *testing.B) { benchDropFloor(b, dst, 1200, true) })
	}
}

// benchDropFloor sends datagrams through a sendBatch to 200 ports of dst, a round every 10 ms,
// and reports the sending thread's CPU per datagram; with ring, through the packet path, its path
// to dst resolved first (scripts/bench-floor.sh gives dst a permanent neighbour entry).
func benchDropFloor(b *testing.B, dst string, size int, ring bool) {
	addr, err := netip.ParseAddr(dst)
	if err != nil {
		b.Fatal(err)
	}
	batch, stats := newTestBatch(b, ":0")
	if ring {
		pkt, err := newPacketSender(netip.AddrPortFrom(netip.IPv4Unspecified(), 9), slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pkt.close)
		batch.usePacketPath(pkt)
		waitPath(b, pkt, addr)
	}
	dests := make([]netip.AddrPort, 200)
	for i := range dests {
		dests[i] = netip.AddrPortFrom(addr, uint16(20000+i))
	}
	sendFloorRounds(b, batch, dests, make([]byte, size), nil)
	if n := stats.SendErrors.Load() + stats.PacketRingErrors.Load(); n != 0 {
		b.Errorf("%d send errors", n)
	}
	if ring && stats.PacketRingDatagrams.Load() < uint64(b.N) {
		b.Errorf("%d of %d datagrams by the ring", stats.PacketRingDatagrams.Load(), b.N)
	}
}

// benchKernelFloor is one case of BenchmarkSendBatchKernelFloor; connected sends each datagram
// with its own write(2) on a socket connected to its receiver instead (no route lookup, one
// system call per datagram), to compare.
func benchKernelFloor(b *testing.B, size int, read, connected bool) {
	const receivers = 200
	batch, stats := newTestBatch(b, "127.0.0.1:0")
	dests := make([]netip.AddrPort, receivers)
	conns := make([]*net.UDPConn, receivers)
	var received atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range dests {
		r, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		dests[i] = r.LocalAddr().(*net.UDPAddr).AddrPort()
		if connected {
			if conns[i], err = net.DialUDP("udp", nil, r.LocalAddr().(*net.UDPAddr)); err != nil {
				b.Fatal(err)
			}
			defer conns[i].Close()
		}
		if !read {
			continue
		}
		wg.Go(func() {
			buf := make([]byte, 2000)
			for {
				if _, err := r.Read(buf); err != nil {
					return
				}
				received.Add(1)
			}
		})
	}
	sendFloorRounds(b, batch, dests, make([]byte, size), conns)
	if read {
		time.Sleep(50 * time.Millisecond)
		b.ReportMetric(float64(received.Load())/float64(b.N)*100, "%received")
	}
	if n := stats.SendErrors.Load(); n != 0 {
		b.Errorf("%d send errors", n)
	}
}

// sendFloorRounds sends b.N datagrams of p, one to each of dests per 10 ms round (through batch,
// or on conns[i] when conns is given), and reports the sending thread's CPU per datagram.
func sendFloorRounds(b *testing.B, batch *sendBatch, dests []netip.AddrPort, p []byte, conns []*net.UDPConn) {
	const round = 10 * time.Millisecond
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	start := cpu()
	next := time.Now()
	for sent := 0; sent < b.N; {
		for i, d := range dests {
			if sent == b.N {
				break
			}
			if conns != nil && conns[i] != nil {
				if _, err := conns[i].Write(p); err != nil {
					b.Fatal(err)
				}
			} else {
				batch.add(p, d)
			}
			sent++
		}
		batch.flush()
		next = next.Add(round)
		time.Sleep(time.Until(next))
	}
	used := cpu() - start
	b.StopTimer()
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "sender-µs/datagram")
}

// netnsEnv names the test that runs in its own network namespace (inNetns).
const netnsEnv = "STREAMFLEET_TEST_NETNS"

// inNetns runs the (top-level) test again in a network namespace of its own, made with a user
// namespace so that no root is needed and the test is root inside, after the shell commands
// setup (in a mount namespace of its own too, so setup may mount a tmpfs on /run for ip netns).
// It tells the caller whether it is that run and should go on; in the outer run it has already
// failed the test unless the inner one passed.
func inNetns(t *testing.T, setup string) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		return true
	}
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--net", "--mount", "--", "sh", "-c", setup+` && exec "$@"`, "sh",
		os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("in a network namespace of its own (needs unshare, ip/tc and ethtool: util-linux, iproute2, ethtool): %v\n%s", err, out)
	}
	t.Logf("in its namespace:\n%s", out)
	return false
}

// TestSendBatchWaitsForSendBuffer: when the socket's send buffer is full, sendmmsg fails with
// EAGAIN part-way through a batch; the batch waits in Go's poller through the mux's descriptor and
// sends the rest from there, so every datagram arrives, in order, none counted as an error.
// Loopback frees a datagram's share of the send buffer as it sends it, so the buffer never fills
// there: the test runs itself again in a network namespace of its own whose loopback has a
// token-bucket qdisc at 2 Mbit/s, which holds the datagrams, and their buffer, until they may
// leave.
func TestSendBatchWaitsForSendBuffer(t *testing.T) {
	if !inNetns(t, "ip link set lo up && tc qdisc add dev lo root tbf rate 2mbit burst 4kb latency 10s") {
		return
	}
	pc, err := listenICEUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	raw, err := pc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096) })
	if err != nil {
		t.Fatal(err)
	}
	stats := new(Stats)
	b, err := newSendBatch(pc, stats, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	r := listenUDP(t)
	if err := r.SetReadBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()
	// Sizes that differ, so that no two go as one GSO message: 48 datagrams, ~58 KB, ~0.2 s at
	// the qdisc's rate, through a send buffer that holds two or three.
	const datagrams = 48
	start := time.Now()
	sendNumbered(b, to, datagrams)
	t.Logf("%d datagrams sent in %v, %d waits for the send buffer", datagrams, time.Since(start), stats.SendBufferWaits.Load())
	if stats.SendBufferWaits.Load() == 0 {
		t.Fatal("the batch never found the send buffer full: the test's qdisc did not hold the datagrams")
	}
	if n := stats.SendErrors.Load(); n != 0 {
		t.Fatalf("%d send errors", n)
	}
	readNumbered(t, r, datagrams)
}

// sendNumbered sends n datagrams to to through b, the i-th 1000+i bytes long and starting with
// byte i, so that no two go as one GSO message; readNumbered checks that r got them, in order.
func sendNumbered(b *sendBatch, to netip.AddrPort, n int) {
	for i := range n {
		p := make([]byte, 1000+i)
		p[0] = byte(i)
		b.add(p, to)
	}
	b.flush()
}

func readNumbered(t *testing.T, r *net.UDPConn, n int) {
	t.Helper()
	buf := make([]byte, 2000)
	for i := range n {
		_ = r.SetReadDeadline(time.Now().Add(10 * time.Second))
		size, _, err := r.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if size != 1000+i || buf[0] != byte(i) {
			t.Fatalf("datagram %d: %d bytes, first byte %d", i, size, buf[0])
		}
	}
}
