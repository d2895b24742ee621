package webrtcserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Sending fan-out datagrams past the IP stack (Config.PacketSend). The kernel's UDP send path
// costs ~3.4 µs of CPU per datagram on this kind of machine even to a device that drops it (route
// lookup, socket accounting, netfilter, the qdisc), more than the rest of a viewer's packet. With
// PacketSend, each fan-out group writes its IPv4 datagrams, with their Ethernet, IP and UDP
// headers, into the frames of an AF_PACKET transmit ring (packet_mmap, TPACKET_V2) of the egress
// device and hands the whole round to the device with one sendto: the kernel only copies each
// frame into an skb and queues it on the device (its qdisc still applies). The headers come from a
// path per destination — device, source address, next hop's MAC — resolved from the kernel's
// routing and neighbour tables over netlink, in the background, and refreshed every few seconds;
// a datagram with no path yet (a new viewer, IPv6, a device that is neither Ethernet nor
// loopback, no neighbour entry) goes by sendmmsg as before, and so does what finds the ring full.
// A run of datagrams to one viewer (a frame's packets) goes instead as one message through a
// packet socket without a ring (packetMessages), whose virtio_net_hdr asks for UDP segmentation.
// Frames the kernel does not take at once (the
// socket's send buffer is held by frames queued on the device) are handed over again by the
// group a millisecond later (sendBatch.retryC).
// The UDP checksum is left to the device (a virtio_net_hdr asks for it, as for a tap), and the
// same header's hdr_len makes the kernel copy the whole frame: a frame is handed back as soon as
// its skb is orphaned, which loopback and veth do at once, so the data must not stay in the ring.
// STUN, DTLS and RTCP still go through the UDP socket, which keeps the neighbour entries fresh.
// Needs CAP_NET_RAW; the datagrams skip netfilter's OUTPUT and POSTROUTING hooks.

const (
	ringFrameSize = 2048 // a TPACKET_V2 frame: header, virtio_net_hdr, Ethernet, IP, UDP, ≤ 1,500 bytes
	ringDataOff   = 32   // TPACKET2_HDRLEN - sizeof(struct sockaddr_ll): a TX frame's data
	vnetHdrLen    = 10   // struct virtio_net_hdr
	ethHdrLen     = 14
	ipv4HdrLen    = 20
	udpHdrLen     = 8
	frameHdrs     = ethHdrLen + ipv4HdrLen + udpHdrLen
	msgHdrLen     = vnetHdrLen + frameHdrs // what precedes a datagram's payload, in a frame or a message
	// pathTTL is how long a resolved path is used before it is resolved again (in the background,
	// the old one still used meanwhile), pathRetry how soon a destination without one is tried
	// again; pathForget drops paths nobody asked for in that long.
	pathTTL    = 5 * time.Second
	pathRetry  = time.Second
	pathForget = 6 * pathTTL
)

// vnetGSOType is a run's virtio_net_hdr gso_type: VIRTIO_NET_HDR_GSO_UDP_L4 (Linux 6.2). A
// variable for tests, which make the kernel refuse it.
var vnetGSOType uint8 = unix.VIRTIO_NET_HDR_GSO_UDP_L4

// ringFrames is the number of frames of a group's ring on each device (512 KiB): four rounds of
// 64 viewers. A variable for tests.
var ringFrames = 256

// netPath is how datagrams to one IPv4 destination leave: the device, its MTU, the Ethernet
// header (next hop's MAC, the device's, EtherType IPv4) and the source address.
type netPath struct {
	ifindex int
	mtu     int
	eth     [ethHdrLen]byte
	src     [4]byte
}

// pathEntry is a resolved path (ok) or the reason there is none, as of at.
type pathEntry struct {
	path netPath
	ok   bool
	err  error
	at   time.Time
}

// packetSender is the server's shared part of the packet path: the source port, the path cache
// and its resolver goroutine.
type packetSender struct {
	srcPort uint16
	paths   *pathCache
	log     *slog.Logger
	warned  sync.Map // ifindex (ring failures) or a string → struct{}: logged once
}

// newPacketSender checks that AF_PACKET sockets may be opened (CAP_NET_RAW) and starts the path
// resolver for datagrams from local (its address may be unspecified: the routes choose).
func newPacketSender(local netip.AddrPort, log *slog.Logger) (*packetSender, error) {
	fd, err := packetSocket()
	if err != nil {
		return nil, fmt.Errorf("packet send: %w (needs CAP_NET_RAW)", err)
	}
	_ = unix.Close(fd)
	bound := local.Addr().Unmap()
	var warned bool // on the resolver's goroutine only
	return &packetSender{
		srcPort: local.Port(),
		paths: newPathCache(func(dst netip.Addr) (netPath, error) {
			p, err := resolveNetPath(dst, bound)
			if err != nil {
				// The first destination without a path says why (loopback without its sysctls, a
				// tunnel device, ...); the rest only at debug level.
				level := slog.LevelDebug
				if !warned {
					level, warned = slog.LevelInfo, true
				}
				log.Log(context.Background(), level, "packet send: by the UDP socket", "viewer", dst, "reason", err)
			}
			return p, err
		}),
		log: log,
	}, nil
}

// warnOnce logs msg the first time key is given, for the whole server.
func (p *packetSender) warnOnce(key any, msg string, args ...any) {
	if _, logged := p.warned.LoadOrStore(key, struct{}{}); !logged {
		p.log.Warn(msg, args...)
	}
}

func (p *packetSender) close() {
	if p != nil {
		p.paths.close()
	}
}

// pathCache resolves paths on one goroutine and hands out the latest. gen changes whenever an
// entry does, so the groups' own copies know to look again.
type pathCache struct {
	resolve    func(netip.Addr) (netPath, error)
	ttl, retry time.Duration // pathTTL and pathRetry (tests shorten them before the first lookup)
	mu         sync.Mutex
	m          map[netip.Addr]*pathEntry
	pending    map[netip.Addr]bool
	gen        atomic.Uint64
	reqs       chan netip.Addr
	quit       chan struct{}
	done       chan struct{}
}

func newPathCache(resolve func(netip.Addr) (netPath, error)) *pathCache {
	c := &pathCache{
		resolve: resolve, ttl: pathTTL, retry: pathRetry, m: map[netip.Addr]*pathEntry{}, pending: map[netip.Addr]bool{},
		reqs: make(chan netip.Addr, 1024), quit: make(chan struct{}), done: make(chan struct{}),
	}
	go c.run()
	return c
}

func (c *pathCache) close() {
	close(c.quit)
	<-c.done
}

// lookup is the current entry for dst (nil until first resolved); it asks for a resolution when
// there is none or it is older than pathTTL (pathRetry if it found no path: a new viewer's
// neighbour entry appears with the node's first answers to it).
func (c *pathCache) lookup(dst netip.Addr) *pathEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[dst]
	if (e == nil || time.Since(e.at) > c.ttl || (!e.ok && time.Since(e.at) > c.retry)) && !c.pending[dst] {
		select {
		case c.reqs <- dst:
			c.pending[dst] = true
		default: // the resolver is behind: asked again on a later lookup
		}
	}
	return e
}

func (c *pathCache) run() {
	defer close(c.done)
	tick := time.NewTicker(pathTTL)
	defer tick.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-tick.C:
			c.mu.Lock()
			for a, e := range c.m {
				if time.Since(e.at) > pathForget {
					delete(c.m, a)
				}
			}
			c.mu.Unlock()
		case dst := <-c.reqs:
			p, err := c.resolve(dst)
			e := &pathEntry{path: p, ok: err == nil, err: err, at: time.Now()}
			c.mu.Lock()
			old := c.m[dst]
			c.m[dst] = e
			delete(c.pending, dst)
			c.mu.Unlock()
			if old == nil || old.ok != e.ok || old.path != e.path {
				c.gen.Add(1) // a refresh that changed nothing leaves the groups' copies alone
			}
		}
	}
}

var errNoPath = errors.New("no packet path")

// resolveNetPath asks the kernel how a datagram from bound (unspecified: any) to dst leaves: the
// route's device and source, and on Ethernet the next hop's MAC from the neighbour table.
func resolveNetPath(dst, bound netip.Addr) (netPath, error) {
	dst = dst.Unmap()
	if !dst.Is4() {
		return netPath{}, fmt.Errorf("%w: %s is not IPv4", errNoPath, dst)
	}
	var opts netlink.RouteGetOptions
	if bound.Is4() && !bound.IsUnspecified() {
		opts.SrcAddr = bound.AsSlice()
	}
	routes, err := netlink.RouteGetWithOptions(dst.AsSlice(), &opts)
	if err != nil {
		return netPath{}, fmt.Errorf("%w: route to %s: %v", errNoPath, dst, err)
	}
	if len(routes) == 0 {
		return netPath{}, fmt.Errorf("%w: no route to %s", errNoPath, dst)
	}
	r := routes[0]
	link, err := netlink.LinkByIndex(r.LinkIndex)
	if err != nil {
		return netPath{}, fmt.Errorf("%w: device %d: %v", errNoPath, r.LinkIndex, err)
	}
	attrs := link.Attrs()
	p := netPath{ifindex: attrs.Index, mtu: attrs.MTU}
	src := bound
	if !src.Is4() || src.IsUnspecified() {
		var ok bool
		if src, ok = netip.AddrFromSlice(r.Src); !ok || !src.Unmap().Is4() {
			return netPath{}, fmt.Errorf("%w: no IPv4 source for %s on %s", errNoPath, dst, attrs.Name)
		}
	}
	p.src = src.Unmap().As4()
	binary.BigEndian.PutUint16(p.eth[12:], unix.ETH_P_IP)
	switch attrs.EncapType {
	case "loopback":
		// A datagram put on loopback this way arrives without the route its sender's stack
		// attaches, and the kernel's input route drops a local (or 127/8) source unless the
		// interface accepts it.
		if !sysctlOn("accept_local", attrs.Name) || (src.IsLoopback() && !sysctlOn("route_localnet", attrs.Name)) {
			return netPath{}, fmt.Errorf("%w: %s: loopback needs net.ipv4.conf.%s.accept_local (and route_localnet for 127/8) set", errNoPath, dst, attrs.Name)
		}
	case "ether":
		hop := dst
		if gw, ok := netip.AddrFromSlice(r.Gw); ok && !gw.Unmap().IsUnspecified() {
			hop = gw.Unmap()
		}
		mac, err := neighbourMAC(attrs.Index, hop)
		if err != nil {
			return netPath{}, fmt.Errorf("%w: %s via %s on %s: %v", errNoPath, dst, hop, attrs.Name, err)
		}
		copy(p.eth[0:6], mac)
		copy(p.eth[6:12], attrs.HardwareAddr)
	default:
		return netPath{}, fmt.Errorf("%w: %s leaves by %s, a %s device", errNoPath, dst, attrs.Name, attrs.EncapType)
	}
	return p, nil
}

// neighbourMAC is hop's link-layer address on device ifindex, if the kernel knows it.
func neighbourMAC(ifindex int, hop netip.Addr) (net.HardwareAddr, error) {
	neighs, err := netlink.NeighList(ifindex, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == hop && n.State&usable != 0 && len(n.HardwareAddr) == 6 {
			return n.HardwareAddr, nil
		}
	}
	return nil, errors.New("no neighbour entry")
}

// sysctlOn tells whether net.ipv4.conf.{all,dev}.name is set (the kernel ORs the two).
func sysctlOn(name, dev string) bool {
	for _, d := range []string{"all", dev} {
		if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + d + "/" + name); err == nil && strings.TrimSpace(string(b)) == "1" {
			return true
		}
	}
	return false
}

// packetRing is one group's AF_PACKET transmit ring on one device; only the group's goroutine
// uses it.
type packetRing struct {
	fd     int
	mem    []byte
	frames int // ringFrames when it was opened
	next   int // the next frame to fill
	put    int // frames filled since the last kick
}

// ringSendBuffer, if not 0, is the rings' SO_SNDBUF (tests); otherwise the kernel's default, which
// bounds each group's frames queued on the device as the UDP socket's buffer bounds its datagrams.
var ringSendBuffer = 0

// packetSocket opens an AF_PACKET socket that sends frames after a virtio_net_hdr (protocol 0: it
// receives nothing); a ring, if any, is set up after.
func packetSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("an AF_PACKET socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("PACKET_VNET_HDR: %w", err)
	}
	return fd, nil
}

func openPacketRing(ifindex int) (*packetRing, error) {
	fd, err := packetSocket()
	if err != nil {
		return nil, err
	}
	r := &packetRing{fd: fd, frames: ringFrames}
	set := func(opt, v int) error { return unix.SetsockoptInt(fd, unix.SOL_PACKET, opt, v) }
	size := r.frames * ringFrameSize
	block := 1 << 16
	if size < block {
		block = size
	}
	for _, step := range []func() error{
		func() error { return set(unix.PACKET_VERSION, unix.TPACKET_V2) },
		func() error { return set(unix.PACKET_LOSS, 1) }, // a bad frame is skipped, not a stuck ring
		func() error {
			if ringSendBuffer == 0 {
				return nil
			}
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, ringSendBuffer)
		},
		func() error {
			return unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &unix.TpacketReq{
				Block_size: uint32(block), Block_nr: uint32(size / block), Frame_size: ringFrameSize, Frame_nr: uint32(r.frames),
			})
		},
		func() (err error) {
			r.mem, err = unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			return err
		},
		func() error { return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}) },
	} {
		if err := step(); err != nil {
			r.close()
			return nil, fmt.Errorf("packet ring on device %d: %w", ifindex, err)
		}
	}
	return r, nil
}

func (r *packetRing) close() {
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem = nil
	}
	if r.fd >= 0 {
		_ = unix.Close(r.fd)
		r.fd = -1
	}
}

// status is frame i's status word, shared with the kernel.
func (r *packetRing) status(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.mem[i*ringFrameSize]))
}

// add writes a datagram of payload from the path's source and srcPort to dst into the next frame;
// false if that frame is still the kernel's (the ring is full).
func (r *packetRing) add(p *netPath, srcPort uint16, dst netip.AddrPort, payload []byte) bool {
	st := r.status(r.next)
	if atomic.LoadUint32(st) != unix.TP_STATUS_AVAILABLE {
		return false
	}
	f := r.mem[r.next*ringFrameSize : (r.next+1)*ringFrameSize]
	n := buildFrame(f[ringDataOff:], p, srcPort, dst, payload)
	binary.NativeEndian.PutUint32(f[4:], uint32(n)) // tp_len
	atomic.StoreUint32(st, unix.TP_STATUS_SEND_REQUEST)
	r.next = (r.next + 1) % r.frames
	r.put++
	return true
}

// kick hands the filled frames to the device without waiting. Frames the kernel could not take
// now (the socket's send buffer is full of frames still queued on the device) stay in the ring,
// and waiting says so: they go with a later kick.
func (r *packetRing) kick() syscall.Errno {
	if r.put == 0 && !r.waiting() {
		return 0
	}
	r.put = 0
	_, errno, _ := rawCall(unix.SYS_SENDTO, uintptr(r.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return errno
}

// waiting tells whether the last frame filled is still waiting for the kernel to take it (the
// kernel takes frames in ring order, so then all after the first it left are).
func (r *packetRing) waiting() bool {
	return atomic.LoadUint32(r.status((r.next+r.frames-1)%r.frames)) == unix.TP_STATUS_SEND_REQUEST
}

// buildFrame writes a datagram of payload, after its virtio_net_hdr and Ethernet, IPv4 and UDP
// headers (putHeaders), into f and returns the frame's length. hdr_len covers the whole frame so
// the kernel copies it all.
func buildFrame(f []byte, p *netPath, srcPort uint16, dst netip.AddrPort, payload []byte) int {
	putHeaders(f, p, srcPort, dst, len(payload), 0, frameHdrs+len(payload))
	return msgHdrLen + copy(f[msgHdrLen:], payload)
}

// putHeaders writes into h (msgHdrLen bytes) a virtio_net_hdr and the Ethernet, IPv4 and UDP
// headers of a datagram of payload bytes or, with gsoSize, of a run of datagrams of gsoSize bytes
// each (the last may be shorter) for the kernel to cut (VIRTIO_NET_HDR_GSO_UDP_L4). The UDP
// checksum field holds the pseudo-header's sum for the device, or the segmentation, to complete
// (VIRTIO_NET_HDR_F_NEEDS_CSUM); hdrLen is what the kernel is to copy into the skb's head.
func putHeaders(h []byte, p *netPath, srcPort uint16, dst netip.AddrPort, payload, gsoSize, hdrLen int) {
	ne := binary.NativeEndian
	h[0], h[1] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, unix.VIRTIO_NET_HDR_GSO_NONE
	if gsoSize > 0 {
		h[1] = vnetGSOType
	}
	ne.PutUint16(h[2:], uint16(hdrLen))       // hdr_len
	ne.PutUint16(h[4:], uint16(gsoSize))      // gso_size
	ne.PutUint16(h[6:], ethHdrLen+ipv4HdrLen) // csum_start
	ne.PutUint16(h[8:], 6)                    // csum_offset: the UDP checksum
	pkt := h[vnetHdrLen:msgHdrLen]
	copy(pkt, p.eth[:])
	ip := pkt[ethHdrLen : ethHdrLen+ipv4HdrLen]
	be := binary.BigEndian
	udpLen := udpHdrLen + payload
	ip[0], ip[1] = 0x45, 0
	be.PutUint16(ip[2:], uint16(ipv4HdrLen+udpLen))
	be.PutUint32(ip[4:], 0x00004000) // id 0, don't fragment (as the UDP socket sends, path MTU discovery on)
	ip[8], ip[9] = 64, unix.IPPROTO_UDP
	ip[10], ip[11] = 0, 0
	copy(ip[12:16], p.src[:])
	d := dst.Addr().Unmap().As4()
	copy(ip[16:20], d[:])
	be.PutUint16(ip[10:], ^foldSum(sum16(ip)))
	u := pkt[ethHdrLen+ipv4HdrLen : frameHdrs]
	be.PutUint16(u[0:], srcPort)
	be.PutUint16(u[2:], dst.Port())
	be.PutUint16(u[4:], uint16(udpLen))
	pseudo := sum16(ip[12:20]) + unix.IPPROTO_UDP + uint32(udpLen)
	be.PutUint16(u[6:], foldSum(pseudo))
}

// sum16 adds b as big-endian 16-bit words (len(b) even).
func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	return s
}

// foldSum folds a one's-complement sum to 16 bits.
func foldSum(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// packetMessages are a flush's runs of datagrams to one viewer, each sent as one message through
// a packet socket without a ring: the message's iovecs are its headers (a virtio_net_hdr asking
// for UDP segmentation, VIRTIO_NET_HDR_GSO_UDP_L4) and the batch's datagrams as they are, which
// the kernel copies once; the kernel (or a device with UDP segmentation offload) cuts the message
// into the datagrams after one pass through the device's queue. A ring's frames have one size,
// too small for a run. Only the group's goroutine uses it.
type packetMessages struct {
	fd    int  // the socket, -1 until opened
	off   bool // no messages: the socket could not be opened, or the kernel refused GSO
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	heads []byte // msgHdrLen per message
	sa    []unix.RawSockaddrLinklayer
	first []int // each message's first datagram in the batch
	count []int // and how many it carries
	m     int   // messages
	io    int   // iovecs used
	sent  int   // messages the kernel took (send)
}

func newPacketMessages() packetMessages {
	return packetMessages{
		fd: -1, hdrs: make([]unix.Mmsghdr, sendBatchSize), iovs: make([]unix.Iovec, 2*sendBatchSize),
		heads: make([]byte, sendBatchSize*msgHdrLen), sa: make([]unix.RawSockaddrLinklayer, sendBatchSize),
		first: make([]int, sendBatchSize), count: make([]int, sendBatchSize),
	}
}

func (pm *packetMessages) close() {
	if pm.hdrs != nil && pm.fd >= 0 { // the zero value (no packet path) holds no socket
		_ = unix.Close(pm.fd)
		pm.fd = -1
	}
}

func (pm *packetMessages) reset() { pm.m, pm.io, pm.sent = 0, 0, 0 }

// ready opens the socket on first use and tells whether messages may be sent.
func (pm *packetMessages) ready(pkt *packetSender) bool {
	if pm.fd >= 0 || pm.off {
		return !pm.off
	}
	fd, err := packetSocket()
	if err != nil {
		pm.off = true
		pkt.warnOnce("messages", "packet send: runs of datagrams by the ring", "error", err)
		return false
	}
	pm.fd = fd
	return true
}

// add queues a message of the datagrams segs (the batch's iovecs, first at index first) from the
// path's source and srcPort to dst: one datagram alone, or a run for the kernel to cut, all of the
// first's size but the last.
func (pm *packetMessages) add(p *netPath, srcPort uint16, dst netip.AddrPort, segs []unix.Iovec, first int) {
	k := pm.m
	payload, gso := 0, 0
	for _, v := range segs {
		payload += int(v.Len)
	}
	if len(segs) > 1 {
		gso = int(segs[0].Len)
	}
	head := pm.heads[k*msgHdrLen : (k+1)*msgHdrLen]
	putHeaders(head, p, srcPort, dst, payload, gso, frameHdrs)
	sa := &pm.sa[k]
	*sa = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: int32(p.ifindex), Halen: 6}
	copy(sa.Addr[:6], p.eth[0:6])
	iov := pm.iovs[pm.io : pm.io+1+len(segs)]
	iov[0].Base = &head[0]
	iov[0].SetLen(msgHdrLen)
	copy(iov[1:], segs)
	h := &pm.hdrs[k].Hdr
	*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(sa)), Namelen: unix.SizeofSockaddrLinklayer, Iov: &iov[0]}
	h.SetIovlen(len(iov))
	pm.first[k], pm.count[k] = first, len(segs)
	pm.io += len(iov)
	pm.m++
}

// send hands the messages to the kernel without waiting, as many as it takes (sent): the socket's
// send buffer may be full of skbs still queued on the device, or the device's queue full. A
// kernel that refuses a GSO message (before Linux 6.2) turns the messages off for the batch.
func (pm *packetMessages) send(stats *Stats, pkt *packetSender) {
	for pm.sent < pm.m {
		n, errno, ok := rawCall(unix.SYS_SENDMMSG, uintptr(pm.fd), uintptr(unsafe.Pointer(&pm.hdrs[pm.sent])), uintptr(pm.m-pm.sent), unix.MSG_DONTWAIT, 0, 0)
		if !ok || errno == unix.ENOBUFS {
			stats.PacketMessagesWaits.Add(1)
			return
		}
		if errno != 0 {
			if pm.count[pm.sent] > 1 && (errno == unix.EINVAL || errno == unix.EOPNOTSUPP) {
				pm.off = true
				stats.GSODisabled.Add(1)
				pkt.warnOnce("gso", "packet send: the kernel refuses UDP segmentation on packet sockets; runs of datagrams by the ring", "error", errno)
			} else {
				stats.PacketRingErrors.Add(1)
			}
			return
		}
		var datagrams, gso uint64
		for _, c := range pm.count[pm.sent : pm.sent+n] {
			datagrams += uint64(c)
			if c > 1 {
				gso++
			}
		}
		stats.PacketMessageDatagrams.Add(datagrams) // once per call: the counters are the server's
		stats.PacketGSOMessages.Add(gso)
		pm.sent += n
	}
}

// htons is v in network byte order, as sockaddr_ll's protocol field holds it.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
