package webrtcserver

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/pion/ice/v4"
	"golang.org/x/sys/unix"
)

// Batched sends. pion writes every SRTP packet down its stack (SRTP session, DTLS mux, ICE pair)
// to the net.PacketConn the ICE UDP mux hands each peer connection, one sendto per packet per
// viewer. batchUDPMux wraps those conns: an RTP packet written to a conn that belongs to a fan-out
// group is copied into the group's sendBatch instead, on the group's own goroutine (the only one
// that writes RTP to its viewers), and the group sends the whole round with one sendmmsg. STUN,
// DTLS and RTCP, written by pion's goroutines, go straight to the socket as before. No lock is
// shared between groups: each has its own batch, and its own descriptor of the socket.

// sendBatchSize is the most datagrams one sendmmsg carries: 16 lets the first viewers' datagrams
// of a round leave after 16 encryptions rather than 64 (at 200 viewers the fan-out's p95 went from
// 4.3 to 3.1 ms) while the system call's own cost is still spread thin.
const sendBatchSize = 16

// batchUDPMux is pion's ICE UDP mux with conns that can batch, and the addresses it offers as
// host candidates.
type batchUDPMux struct {
	ice.UDPMux
	listen []net.Addr
	mu     sync.Mutex
	conns  map[string]*muxConn // by local ufrag
}

func newBatchUDPMux(inner ice.UDPMux) *batchUDPMux {
	return &batchUDPMux{UDPMux: inner, listen: candidateAddrs(inner.GetListenAddresses()), conns: map[string]*muxConn{}}
}

// GetListenAddresses are the addresses of the node's host candidates.
func (m *batchUDPMux) GetListenAddresses() []net.Addr { return m.listen }

// candidateAddrs are the mux's addresses without the loopback ones, unless it has no others (it
// listens on loopback). A socket bound to every address listens on 127.0.0.1 too, but offered to
// clients elsewhere that candidate only costs them checks that never answer, and a pion client
// that counts its pair as the best one waits for its check timer (200 ms) before it nominates
// the pair that works (pion filters them only from a mux of its own type).
func candidateAddrs(all []net.Addr) []net.Addr {
	var out []net.Addr
	for _, a := range all {
		if u, ok := a.(*net.UDPAddr); !ok || !u.IP.IsLoopback() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}

// GetConn wraps the mux's conn for a peer connection's local ICE ufrag.
func (m *batchUDPMux) GetConn(ufrag string, addr net.Addr) (net.PacketConn, error) {
	inner, err := m.UDPMux.GetConn(ufrag, addr)
	if err != nil {
		return nil, err
	}
	ap, ok := inner.(ice.AddrPortReaderWriter)
	if !ok {
		return inner, nil // not pion's muxed conn: nothing to batch
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.conns[ufrag]; c != nil && c.PacketConn == inner {
		return c, nil
	}
	c := &muxConn{PacketConn: inner, ap: ap, mux: m, ufrag: ufrag}
	m.conns[ufrag] = c
	return c, nil
}

// RemoveConnByUfrag forgets the wrapper with the mux's conn.
func (m *batchUDPMux) RemoveConnByUfrag(ufrag string) {
	m.forget(ufrag, nil)
	m.UDPMux.RemoveConnByUfrag(ufrag)
}

func (m *batchUDPMux) forget(ufrag string, c *muxConn) {
	m.mu.Lock()
	if cur := m.conns[ufrag]; cur != nil && (c == nil || cur == c) {
		delete(m.conns, ufrag)
	}
	m.mu.Unlock()
}

// conn is the wrapped conn of a local ufrag, or nil.
func (m *batchUDPMux) conn(ufrag string) *muxConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.conns[ufrag]
}

// muxConn is one peer connection's conn of the ICE UDP mux.
type muxConn struct {
	net.PacketConn
	ap    ice.AddrPortReaderWriter
	mux   *batchUDPMux
	ufrag string

	batch  atomic.Pointer[sendBatch] // the fan-out group's, while the viewer is in one
	closed atomic.Bool
	// sent is the address the last direct RTP write went to (the mux learns a viewer's address
	// from a direct write); written and read only on the group's goroutine.
	sent netip.AddrPort
	// to is where pion last sent media, DTLS or RTCP: the selected candidate pair's remote.
	to atomic.Pointer[netip.AddrPort]

	// The first packet's comparison of srtpOut.verify, on the group's goroutine: expect is the
	// ciphertext the node made; compared and matched tell what pion wrote.
	expect            []byte
	compared, matched bool
}

// dest is the viewer's address as pion last wrote to it (zero before any write).
func (c *muxConn) dest() netip.AddrPort {
	if p := c.to.Load(); p != nil {
		return *p
	}
	return netip.AddrPort{}
}

// saw records where pion writes anything but STUN (a check may go to a pair not selected).
func (c *muxConn) saw(b []byte, addr netip.AddrPort) {
	if len(b) == 0 || b[0] < 20 {
		return // STUN (RFC 7983: 0–3) or nothing
	}
	if p := c.to.Load(); p == nil || *p != addr {
		c.to.Store(&addr)
	}
}

// ReadFromAddrPort and WriteToAddrPort keep pion's allocation-free path (ice.AddrPortReaderWriter).
func (c *muxConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.ap.ReadFromAddrPort(b)
}

// WriteToAddrPort queues an RTP packet to the group's batch; anything else is written at once.
func (c *muxConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	c.saw(b, addr)
	if !isRTP(b) {
		return c.ap.WriteToAddrPort(b, addr)
	}
	if c.expect != nil { // RTP comes only from the group goroutine
		c.compared, c.matched = true, bytes.Equal(b, c.expect)
		c.expect = nil
	}
	batch := c.batch.Load()
	if batch == nil || !batch.fits(b, addr) {
		return c.ap.WriteToAddrPort(b, addr)
	}
	// From here on the caller is the group's goroutine: only it writes RTP to a batched conn.
	if c.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	if addr != c.sent {
		n, err := c.ap.WriteToAddrPort(b, addr) // registers addr with the mux
		if err == nil {
			c.sent = addr
		}
		return n, err
	}
	batch.add(b, addr)
	return len(b), nil
}

// Close closes the mux's conn and forgets the wrapper.
func (c *muxConn) Close() error {
	c.closed.Store(true)
	c.mux.forget(c.ufrag, c)
	return c.PacketConn.Close()
}

// isRTP tells an RTP packet from STUN, DTLS and RTCP sharing the port (RFC 7983, RFC 5761).
func isRTP(b []byte) bool {
	return len(b) >= 12 && b[0]>>6 == 2 && (b[1] < 192 || b[1] > 223)
}

// sendBatch collects the datagrams of one fan-out round and sends them with sendmmsg. It belongs
// to one goroutine. The system call is made raw, without telling the Go scheduler: a batch takes
// tens of microseconds of CPU in the kernel (it never blocks: on a full socket buffer it waits in
// the poller, through the mux's descriptor), and a scheduler told of each would wake its monitor
// thread or hand the P to another thread.
type sendBatch struct {
	fd    int             // the batch's own descriptor of the ICE socket, -1 once closed
	raw   syscall.RawConn // the mux's descriptor, for waiting on a full send buffer
	inet6 bool            // the socket is AF_INET6: IPv4 destinations as v4-mapped addresses
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	bufs  [][]byte
	sa4   []unix.RawSockaddrInet4
	sa6   []unix.RawSockaddrInet6
	dest  []netip.AddrPort // per datagram
	n     int

	// The messages of a flush: each one datagram, or with UDP GSO (gso) a run of datagrams to one
	// address sent as one, which the kernel cuts into datagrams after the stack's per-packet work.
	// first is each message's first datagram; sent is the flush's progress, in messages.
	gso   bool
	msgs  []unix.Mmsghdr
	ctrl  []byte
	first []int
	m     int
	sent  int
	// at is the hub arrival time (UnixNano) of the packet being written, for the datagrams
	// committed until it changes (0: not measured, as for retransmissions); arrivals holds it per
	// datagram.
	at       int64
	arrivals []int64
	errno    syscall.Errno
	write    func(fd uintptr) bool // b.sendmmsg, made once
	stats    *Stats

	// The packet path (Config.PacketSend), nil without it: the server's sender, the group's
	// rings by device (nil where one could not be opened), its own copy of the paths it has
	// used (cleared when the shared cache changes, and every second so stale ones are refreshed).
	pkt     *packetSender
	rings   map[int]*packetRing
	paths   map[netip.Addr]*pathEntry
	pathGen uint64
	pathsAt time.Time
	via     []uint8 // per datagram: viaSocket, viaRing or viaMessage
	// Runs of datagrams to one viewer go as one GSO message each through the group's packet
	// socket without a ring (runs.fd), which the kernel, or the device, cuts into datagrams.
	runs packetMessages
	// retry fires while a ring holds frames the kernel did not take (retryC), for retryRings.
	retry      *time.Timer
	retryArmed bool
	// In a round (startRound … endRound) the rings are kicked once, at its end, not at every
	// flush; heldAt are the arrival times of the frames filled and not yet kicked, for the
	// fan-out delay, observed when they are.
	inRound bool
	heldAt  []int64
}

// ringRetryInterval is how soon frames a kick left in a ring are handed to the kernel again.
const ringRetryInterval = time.Millisecond

// sendBufSize is the largest datagram batched; larger ones are written directly.
const sendBufSize = 1500

// newSendBatch makes a batch that sends from conn's socket through a descriptor of its own (see
// dupSocket); close releases it.
func newSendBatch(conn net.PacketConn, stats *Stats, pkt *packetSender) (*sendBatch, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("batched sends: %T has no file descriptor", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("batched sends: %w", err)
	}
	domain, err := socketDomain(raw)
	if err == nil && domain != unix.AF_INET && domain != unix.AF_INET6 {
		err = fmt.Errorf("socket domain %d", domain)
	}
	if err != nil {
		return nil, fmt.Errorf("batched sends: %w", err)
	}
	fd, err := dupSocket(raw)
	if err != nil {
		return nil, fmt.Errorf("batched sends: %w", err)
	}
	b := &sendBatch{
		fd:    fd,
		raw:   raw,
		inet6: domain == unix.AF_INET6,
		hdrs:  make([]unix.Mmsghdr, sendBatchSize),
		iovs:  make([]unix.Iovec, sendBatchSize),
		bufs:  make([][]byte, sendBatchSize),
		sa4:   make([]unix.RawSockaddrInet4, sendBatchSize),
		sa6:   make([]unix.RawSockaddrInet6, sendBatchSize),
		dest:  make([]netip.AddrPort, sendBatchSize),
		stats: stats,

		gso:      true,
		msgs:     make([]unix.Mmsghdr, sendBatchSize),
		ctrl:     make([]byte, sendBatchSize*unix.CmsgSpace(2)),
		first:    make([]int, sendBatchSize),
		arrivals: make([]int64, sendBatchSize),
	}
	if pkt != nil {
		b.usePacketPath(pkt)
	}
	b.write = b.sendmmsg
	for i := range b.hdrs {
		b.bufs[i] = make([]byte, sendBufSize)
		b.iovs[i].Base = &b.bufs[i][0]
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
	}
	return b, nil
}

// usePacketPath makes the batch send what it can through the packet path (Config.PacketSend).
func (b *sendBatch) usePacketPath(pkt *packetSender) {
	b.pkt, b.rings, b.paths, b.via = pkt, map[int]*packetRing{}, map[netip.Addr]*pathEntry{}, make([]uint8, sendBatchSize)
	b.runs = newPacketMessages()
	b.heldAt = make([]int64, 0, ringFrames)
}

// dupSocket opens another descriptor of the socket, outside Go's poller. Go serializes the
// writers of one descriptor (internal/poll's fdMutex, held across the system call), so fan-out
// groups sending through the one ICE socket took turns: with 200 viewers on two cores, a quarter
// of the scheduler's delay was groups queued on that lock while another group's sendmmsg ran. On
// a descriptor each, they send at once; the kernel's UDP send path takes no socket lock for an
// uncorked datagram. The socket, its port and its receive queue are the same. It stays out of the
// poller (epoll) because every datagram the socket sends wakes each epoll registration of it when
// its buffer is freed: a registration per group cost ~4 % of the node's CPU at 500 viewers. The
// socket is non-blocking (a property it shares with the mux's descriptor); a full send buffer is
// waited for through the mux's descriptor, which the poller watches.
func dupSocket(raw syscall.RawConn) (int, error) {
	fd, derr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	return fd, nil
}

// close releases the batch's descriptor (the socket stays open for the others). Only the batch's
// goroutine uses the descriptor, so it is closed with nothing in flight on it.
func (b *sendBatch) close() {
	if b != nil && b.fd >= 0 {
		_ = unix.Close(b.fd)
		b.fd = -1
		for _, r := range b.rings {
			if r != nil {
				r.close()
			}
		}
		clear(b.rings)
		b.runs.close()
		if b.retry != nil {
			b.retry.Stop()
			b.retryArmed = false
		}
	}
}

// fits tells whether a datagram can be batched.
func (b *sendBatch) fits(p []byte, addr netip.AddrPort) bool {
	return len(p) <= sendBufSize && addr.Addr().Zone() == "" && (b.inet6 || addr.Addr().Unmap().Is4())
}

// add copies a datagram into the batch (pion reuses p) and sends the batch when it is full.
func (b *sendBatch) add(p []byte, addr netip.AddrPort) {
	b.commit(copy(b.slot(), p), addr)
}

// slot is the buffer of the next datagram, sendBufSize long, for commit.
func (b *sendBatch) slot() []byte { return b.bufs[b.n] }

// commit queues the datagram of n bytes written into slot, to addr, and sends the batch when it is
// full.
func (b *sendBatch) commit(n int, addr netip.AddrPort) {
	i := b.n
	b.iovs[i].SetLen(n)
	b.arrivals[i] = b.at
	b.dest[i] = addr
	h := &b.hdrs[i].Hdr
	var name unsafe.Pointer
	putSockaddr(b.inet6, addr, &b.sa4[i], &b.sa6[i], &name, &h.Namelen) // fits checked the family
	h.Name = (*byte)(name)
	b.n++
	if b.n == len(b.hdrs) {
		b.flush()
	}
}

// flush sends what the batch holds. A datagram the kernel refuses is skipped and counted.
func (b *sendBatch) flush() {
	if b == nil || b.n == 0 {
		return
	}
	if b.pkt != nil && b.fd >= 0 {
		b.sendByRing()
		if b.n == 0 {
			return
		}
	}
	b.stats.SendBatches.Add(1)
	b.stats.BatchedPackets.Add(uint64(b.n))
	b.sent = 0
	b.messages(0)
	for b.sent < b.m {
		if b.fd < 0 { // used after close: never send on a number that may be another file's now
			b.stats.SendErrors.Add(uint64(b.n - b.first[b.sent]))
			break // closed
		}
		if !b.sendmmsg(uintptr(b.fd)) {
			// The send buffer is full: wait for it in the poller through the mux's descriptor,
			// and send from there.
			b.stats.SendBufferWaits.Add(1)
			if err := b.raw.Write(b.write); err != nil {
				b.stats.SendErrors.Add(uint64(b.n - b.first[b.sent]))
				break // the socket is closed
			}
		}
		if b.errno == 0 {
			continue
		}
		if segs := b.segments(b.sent); segs > 1 && (b.errno == unix.EIO || b.errno == unix.EINVAL) {
			// No UDP GSO here (the kernel, or the device, refused it): datagram by datagram from now.
			b.gso = false
			b.stats.GSODisabled.Add(1)
			b.messages(b.first[b.sent])
			continue
		}
		b.stats.SendErrors.Add(uint64(b.segments(b.sent)))
		b.sent++ // the first one failed: skip it
	}
	now := time.Now().UnixNano()
	for _, at := range b.arrivals[:b.n] {
		if at != 0 {
			b.stats.FanoutDelay.observe(now - at)
		}
	}
	b.n = 0
}

// gsoMaxSegment is the largest datagram sent in a GSO run: a GSO segment may not exceed the
// path MTU (1500 on most links) less the IP and UDP headers, where a lone datagram would be
// fragmented instead.
const gsoMaxSegment = 1400

// messages builds the flush's messages from datagram from on (earlier messages are kept): with
// GSO, consecutive datagrams to one address, all of the first's size but the last, which may be
// shorter, make one message.
func (b *sendBatch) messages(from int) {
	m := b.sent
	cs := unix.CmsgSpace(2)
	for i := from; i < b.n; m++ {
		size := b.iovs[i].Len
		j := b.runEnd(i)
		h := &b.msgs[m].Hdr
		*h = b.hdrs[i].Hdr // the first datagram's address and iovec
		h.SetIovlen(j - i)
		if j-i > 1 {
			c := b.ctrl[m*cs : (m+1)*cs]
			cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			cm.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(size)
			h.Control = &c[0]
			h.SetControllen(cs)
			b.stats.GSOMessages.Add(1)
		}
		b.first[m] = i
		i = j
	}
	b.m = m
}

// runEnd is the end of the GSO run that starts at datagram i (i+1: a datagram alone).
func (b *sendBatch) runEnd(i int) int {
	size := b.iovs[i].Len
	j := i + 1
	if b.gso && size <= gsoMaxSegment {
		for j < b.n && b.dest[j] == b.dest[i] && b.iovs[j-1].Len == size && b.iovs[j].Len <= size {
			j++
		}
	}
	return j
}

// segments is how many datagrams message m carries.
func (b *sendBatch) segments(m int) int {
	if m+1 < b.m {
		return b.first[m+1] - b.first[m]
	}
	return b.n - b.first[m]
}

// sendmmsg sends from message sent on, through fd (the batch's own, or the mux's as raw.Write's
// callback): false to wait until the socket is writable.
func (b *sendBatch) sendmmsg(fd uintptr) bool {
	n, errno, ok := rawCall(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[b.sent])), uintptr(b.m-b.sent), 0, 0, 0)
	b.sent += n
	b.errno = errno
	return ok
}

// How a datagram of a flush leaves with the packet path.
const (
	viaSocket  = iota // sendmmsg on the UDP socket
	viaRing           // a frame of the group's ring on the device
	viaMessage        // a message on the group's packet socket (b.runs)
)

// sendByRing sends the datagrams that have a packet path: each run of datagrams to one viewer as
// one GSO message through the group's packet socket (and what follows it to that viewer, so
// each viewer's datagrams stay in order: the rings are handed over first), the others through the
// group's rings (one sendto per device; in a round, at its end: startRound). It leaves the rest, in order, at the front of the batch
// for sendmmsg: those without a path and those a full ring or socket did not take (with what
// follows them to their viewer). Without messages (a kernel before 6.2) runs go by the ring.
func (b *sendBatch) sendByRing() {
	if g := b.pkt.paths.gen.Load(); g != b.pathGen || time.Since(b.pathsAt) > time.Second {
		clear(b.paths)
		b.pathGen, b.pathsAt = g, time.Now()
	}
	sent := 0
	b.runs.reset()
	// The rings are handed over first, then the messages, then the UDP socket's sendmmsg: once a
	// viewer's datagram goes a later way, so do the rest of its flush, to keep them in order.
	var later netip.AddrPort
	laterVia := uint8(viaSocket)
	for i := 0; i < b.n; i++ {
		b.via[i] = viaSocket
		d := b.dest[i]
		e, seen := b.paths[d.Addr()]
		if !seen {
			e = b.pkt.paths.lookup(d.Addr())
			b.paths[d.Addr()] = e
		}
		size := b.iovs[i].Len
		if e == nil || !e.ok {
			continue // no path: nor for the rest to this viewer
		}
		if int(size)+ipv4HdrLen+udpHdrLen > e.path.mtu || (d == later && laterVia == viaSocket) {
			later, laterVia = d, viaSocket
			continue
		}
		j := b.runEnd(i)
		if (j-i > 1 || d == later) && b.runs.ready(b.pkt) {
			b.runs.add(&e.path, b.pkt.srcPort, d, b.iovs[i:j], i)
			for ; i < j; i++ {
				b.via[i] = viaMessage
			}
			i--
			later, laterVia = d, viaMessage
			continue
		}
		r := b.ring(e.path.ifindex)
		if r == nil {
			later, laterVia = d, viaSocket
			continue
		}
		if !r.add(&e.path, b.pkt.srcPort, d, b.bufs[i][:size]) {
			b.stats.PacketRingFull.Add(1)
			later, laterVia = d, viaSocket
			continue
		}
		b.via[i] = viaRing
		sent++
	}
	if sent > 0 {
		b.stats.PacketRingDatagrams.Add(uint64(sent))
	}
	// In a round the rings wait for its end, unless something goes another way now (which must
	// not pass a viewer's frames still in a ring) or a ring is half full.
	hold := b.inRound && b.runs.m == 0 && sent == b.n && !b.ringsHalfFull()
	if hold {
		for i := range b.n {
			b.heldAt = append(b.heldAt, b.arrivals[i])
		}
		b.n = 0
		return
	}
	if sent > 0 || len(b.heldAt) > 0 {
		b.kickRings()
	}
	if sent == 0 && b.runs.m == 0 {
		return
	}
	if b.runs.m > 0 {
		b.runs.send(b.stats, b.pkt)
		for k := b.runs.sent; k < b.runs.m; k++ { // not taken: by the UDP socket, still in order
			for i := b.runs.first[k]; i < b.runs.first[k]+b.runs.count[k]; i++ {
				b.via[i] = viaSocket
			}
		}
	}
	now := time.Now().UnixNano()
	w := 0
	for i := range b.n {
		if b.via[i] != viaSocket {
			if at := b.arrivals[i]; at != 0 {
				b.stats.FanoutDelay.observe(now - at)
			}
			continue
		}
		if w != i {
			b.swap(w, i)
		}
		w++
	}
	b.n = w
}

// ring is the group's ring on device ifindex, opened on first use; nil if it cannot be.
func (b *sendBatch) ring(ifindex int) *packetRing {
	r, ok := b.rings[ifindex]
	if !ok {
		var err error
		if r, err = openPacketRing(ifindex); err != nil {
			b.pkt.warnOnce(ifindex, "packet send: sending by the UDP socket instead", "error", err)
			r = nil
		}
		b.rings[ifindex] = r
	}
	return r
}

// swap exchanges the batch's datagrams i and j (their buffers, lengths, addresses and times).
func (b *sendBatch) swap(i, j int) {
	b.bufs[i], b.bufs[j] = b.bufs[j], b.bufs[i]
	b.iovs[i], b.iovs[j] = b.iovs[j], b.iovs[i]
	b.sa4[i], b.sa4[j] = b.sa4[j], b.sa4[i]
	b.sa6[i], b.sa6[j] = b.sa6[j], b.sa6[i]
	b.dest[i], b.dest[j] = b.dest[j], b.dest[i]
	b.arrivals[i], b.arrivals[j] = b.arrivals[j], b.arrivals[i]
	b.hdrs[i].Hdr.Namelen, b.hdrs[j].Hdr.Namelen = b.hdrs[j].Hdr.Namelen, b.hdrs[i].Hdr.Namelen
}

// startRound begins a fan-out round: until endRound, the rings are kicked only where sendByRing
// must (ringsHalfFull, or a datagram going another way). One kick a round rather than one every
// sendBatchSize datagrams: each kick is a system call, and on a veth it wakes the receiving
// side's NAPI thread, which then preempts the group on its CPU.
func (b *sendBatch) startRound() {
	if b != nil {
		b.inRound = true
	}
}

// endRound sends what the round left in the batch and hands the rings' frames to the kernel.
func (b *sendBatch) endRound() {
	if b == nil {
		return
	}
	b.inRound = false
	b.flush()
	if len(b.heldAt) > 0 {
		b.kickRings()
	}
}

// ringsHalfFull tells whether a ring holds half its frames not yet kicked.
func (b *sendBatch) ringsHalfFull() bool {
	for _, r := range b.rings {
		if r != nil && 2*r.put >= r.frames {
			return true
		}
	}
	return false
}

// kickRings hands every ring's filled frames to the kernel, and arms the retry while a ring still
// holds some it did not take.
func (b *sendBatch) kickRings() {
	if len(b.heldAt) > 0 {
		now := time.Now().UnixNano()
		for _, at := range b.heldAt {
			if at != 0 {
				b.stats.FanoutDelay.observe(now - at)
			}
		}
		b.heldAt = b.heldAt[:0]
	}
	waiting := false
	for _, r := range b.rings {
		if r == nil {
			continue
		}
		if errno := r.kick(); errno != 0 && errno != unix.ENOBUFS {
			b.stats.PacketRingErrors.Add(1)
		}
		waiting = waiting || r.waiting()
	}
	if !waiting || b.retryArmed {
		return
	}
	b.stats.PacketRingWaits.Add(1)
	b.retryArmed = true
	if b.retry == nil {
		b.retry = time.NewTimer(ringRetryInterval)
	} else {
		b.retry.Reset(ringRetryInterval)
	}
}

// retryC fires when frames a kick left in a ring are due again (nil: none are).
func (b *sendBatch) retryC() <-chan time.Time {
	if b == nil || !b.retryArmed {
		return nil
	}
	return b.retry.C
}

// drainRings gives the frames still waiting in the rings up to 100 ms to be taken, before the
// group ends.
func (b *sendBatch) drainRings() {
	if b == nil {
		return
	}
	for deadline := time.Now().Add(100 * time.Millisecond); b.retryArmed && time.Now().Before(deadline); {
		time.Sleep(ringRetryInterval)
		b.retryRings()
	}
}

// retryRings kicks the rings again, after retryC fired.
func (b *sendBatch) retryRings() {
	b.retryArmed = false
	if b.fd >= 0 {
		b.kickRings()
	}
}
