package loadtest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/pion/transport/v4"
	"golang.org/x/sys/unix"
)

// A WHEP subscriber's delay is measured twice: when its track reader gets a packet (Delay), and
// when the kernel put the datagram in the subscriber's socket (SocketDelay). The second is the
// delay the node and the network add, publisher packet out to subscriber packet in, without the time
// the packet then waits for the load tool's own goroutines (pion's read loop, SRTP, the track
// reader), which on a shared machine is often longer than the node's part.
//
// The kernel's receive time comes from SO_TIMESTAMPNS on the subscriber's ICE sockets: pion gets
// a transport.Net (stampNet) whose UDP sockets read with recvmsg, and each SRTP datagram's
// cleartext SSRC and sequence number are noted with its time in the subscriber's arrivals, where
// the track reader looks them up after decryption.

// arrivalsPerSSRC is how many recent packets of one SSRC are remembered (seconds of video).
const (
	arrivalsPerSSRC = 256
	arrivalSSRCs    = 4 // a subscriber has a video and an audio SSRC; room for a restart
)

// arrivals holds the kernel receive times of a subscriber's recent RTP packets. The sockets' read
// loops write (media arrives on the selected pair's one) and one track reader per SSRC reads,
// without locks: an SSRC claims a ring once, and
// a slot is read as key, time, key so that a read racing a rewrite of its slot is discarded.
type arrivals struct {
	ssrcs [arrivalSSRCs]atomic.Uint64 // 1<<32 | SSRC once claimed
	rings [arrivalSSRCs][arrivalsPerSSRC]arrivalSlot
}

type arrivalSlot struct {
	key atomic.Uint32 // 1<<16 | sequence number; 0 while being written
	at  atomic.Int64  // Unix ns
}

// ring returns the ring of ssrc, claiming a free one when claim is set; nil when there is none.
func (a *arrivals) ring(ssrc uint32, claim bool) *[arrivalsPerSSRC]arrivalSlot {
	want := 1<<32 | uint64(ssrc)
	for i := range a.ssrcs {
		v := a.ssrcs[i].Load()
		if v == want {
			return &a.rings[i]
		}
		if v == 0 {
			if !claim {
				return nil
			}
			if a.ssrcs[i].CompareAndSwap(0, want) {
				return &a.rings[i]
			}
			if a.ssrcs[i].Load() == want {
				return &a.rings[i]
			}
		}
	}
	return nil
}

// note records that the packet ssrc/seq arrived at Unix ns at.
func (a *arrivals) note(ssrc uint32, seq uint16, at int64) {
	r := a.ring(ssrc, true)
	if r == nil {
		return
	}
	s := &r[seq%arrivalsPerSSRC]
	s.key.Store(0)
	s.at.Store(at)
	s.key.Store(1<<16 | uint32(seq))
}

// lookup returns when packet ssrc/seq arrived, if it is still remembered.
func (a *arrivals) lookup(ssrc uint32, seq uint16) (int64, bool) {
	r := a.ring(ssrc, false)
	if r == nil {
		return 0, false
	}
	s := &r[seq%arrivalsPerSSRC]
	want := 1<<16 | uint32(seq)
	if s.key.Load() != want {
		return 0, false
	}
	at := s.at.Load()
	if s.key.Load() != want {
		return 0, false
	}
	return at, true
}

// noteDatagram notes the arrival of one received datagram if it is RTP (RFC 7983: first byte
// 128–191; RFC 5761: RTCP has a second byte of 192–223). SRTP leaves the header in the clear.
func (a *arrivals) noteDatagram(b []byte, at int64) {
	if len(b) < 12 || b[0] < 128 || b[0] > 191 || (b[1] >= 192 && b[1] <= 223) {
		return
	}
	a.note(binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint16(b[2:]), at)
}

// udpNet is a transport.Net whose UDP sockets, when they are *net.UDPConn, are wrapped by wrap.
type udpNet struct {
	transport.Net
	wrap func(*net.UDPConn) transport.UDPConn
}

func (n *udpNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	if uc, ok := c.(*net.UDPConn); ok {
		return n.wrap(uc), nil
	}
	return c, nil
}

// stampNet is the transport.Net of one subscriber: the system's, with UDP sockets that note the
// kernel receive time of every RTP datagram in arr and, unless direct is nil, measure the media of
// adopted tracks themselves (directrx.go). With gro (not nil) the sockets also take UDP GRO, counted
// there. A socket that refuses receive timestamps still reads directly, without them (the
// subscriber then has no socket delay); without direct it is left as it is.
func stampNet(n transport.Net, arr *arrivals, direct *directRx, gro *groCounts) transport.Net {
	return &udpNet{Net: n, wrap: func(uc *net.UDPConn) transport.UDPConn {
		stamps := setSockoptInt(uc, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) == nil
		if !stamps && direct == nil {
			return uc
		}
		c := &stampConn{UDPConn: uc, arr: arr, direct: direct, stamps: stamps,
			oob: make([]byte, unix.CmsgSpace(16)+unix.CmsgSpace(4))}
		if gro != nil && setSockoptInt(uc, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil {
			c.gro = gro
		}
		return c
	}}
}

// UDP GRO (Linux 5.0): a socket that asks for it is handed a run of datagrams sent as one UDP GSO
// message (UDP_SEGMENT), or merged by the receiving device's GRO, as one buffer, with the segment
// size in a control message, instead of each datagram queued, and its reader woken, on its own.
// On loopback the node pays for its viewers' receive path inside its own send, so this takes part
// of that work (cutting and queueing each datagram of a run) out of the node's CPU figure where
// the node sends GSO runs; behind a NIC the viewers' machines do it. It changes no datagram: the
// reader cuts the buffer back into them. It is off unless asked for (Config.GRO): behind the
// benchmark's veth, whose GRO then merges datagrams for these sockets, it added delay.

// groBufferSize holds the largest GSO message (a UDP datagram's 64 KiB): a shorter buffer would
// lose the rest of a longer run. A socket allocates it on its first read.
const groBufferSize = 65535

// groCounts counts, over a run, the reads that returned more than one datagram and those
// datagrams.
type groCounts struct {
	reads, datagrams atomic.Uint64
}

// setSockoptInt sets an int socket option on uc's socket.
func setSockoptInt(uc *net.UDPConn, level, opt, value int) error {
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, value) }); err != nil {
		return err
	}
	return serr
}

// stampConn reads with recvmsg and notes RTP arrivals. pion's ICE reads each candidate's socket
// from one goroutine (ReadFromAddrPort when the socket has it, as here), so oob and the GRO state
// are not shared. With direct, a read keeps reading while the datagrams are adopted tracks' media,
// which it measures, and returns the first other one to pion; DTLS handshakes both ways are shown
// to the direct reader for the ServerHello's random.
type stampConn struct {
	*net.UDPConn
	arr    *arrivals
	direct *directRx
	stamps bool // SO_TIMESTAMPNS is on
	oob    []byte

	// With UDP GRO (gro not nil): reads go to buf, and the datagrams of the last read not yet
	// handed out are pend (segments of seg bytes, the last one maybe shorter), received at pendAt
	// from pendAddr.
	gro      *groCounts
	buf      []byte
	pend     []byte
	seg      int
	pendAt   int64
	pendAddr netip.AddrPort
}

// ReadFromAddrPort is what pion's ICE reads with (see its AddrPortReaderWriter).
func (c *stampConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		var d []byte
		var at int64
		var addr netip.AddrPort
		if c.gro != nil {
			if len(c.pend) == 0 {
				if err := c.readGRO(); err != nil {
					return 0, netip.AddrPort{}, err
				}
			}
			n := min(c.seg, len(c.pend))
			d, c.pend = c.pend[:n:n], c.pend[n:] // capped: nothing appends into the next datagram
			at, addr = c.pendAt, c.pendAddr
		} else {
			n, oobn, _, from, err := c.ReadMsgUDPAddrPort(b, c.oob)
			if err != nil {
				return n, from, err
			}
			d, addr = b[:n], from
			if c.stamps {
				at, _ = rxControl(c.oob[:oobn])
			}
		}
		if c.direct != nil {
			if c.direct.consume(d, at) {
				continue
			}
			c.sniffDTLS(d)
		}
		if at != 0 {
			c.arr.noteDatagram(d, at)
		}
		if c.gro != nil {
			return copy(b, d), addr, nil // a datagram longer than b is cut, as a read into b would
		}
		return len(d), addr, nil
	}
}

// readGRO reads the next buffer of datagrams into pend.
func (c *stampConn) readGRO() error {
	if c.buf == nil {
		c.buf = make([]byte, groBufferSize)
	}
	n, oobn, _, from, err := c.ReadMsgUDPAddrPort(c.buf, c.oob)
	if err != nil {
		return err
	}
	at, seg := rxControl(c.oob[:oobn])
	if !c.stamps {
		at = 0
	}
	if seg <= 0 || seg >= n {
		seg = n // one datagram (an empty one too: it is handed out once)
	} else {
		c.gro.reads.Add(1)
		c.gro.datagrams.Add(uint64((n + seg - 1) / seg))
	}
	c.pend, c.seg, c.pendAt, c.pendAddr = c.buf[:n], seg, at, from
	return nil
}

// ReadFrom is ReadFromAddrPort for callers that want a net.Addr.
func (c *stampConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), nil
}

// WriteToAddrPort is what pion's ICE writes with; a DTLS handshake is shown to the direct reader.
func (c *stampConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	c.sniffDTLS(b)
	return c.UDPConn.WriteToUDPAddrPort(b, addr)
}

// WriteTo is WriteToAddrPort for callers with a net.Addr.
func (c *stampConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.sniffDTLS(b)
	return c.UDPConn.WriteTo(b, addr)
}

// sniffDTLS shows a DTLS handshake datagram, sent or received, to the direct reader.
func (c *stampConn) sniffDTLS(b []byte) {
	if c.direct != nil && len(b) > 0 && b[0] == dtlsHandshake {
		c.direct.sniff(b)
	}
}

// rxControl finds, in the control messages of a read, the SCM_TIMESTAMPNS time (a struct
// timespec, CLOCK_REALTIME) in Unix ns and the UDP_GRO segment size (an int), each 0 when it is not
// there, without allocating. The cmsghdr is read field by field (its length is a size_t: 8 bytes
// on 64-bit Linux, 4 on 32-bit) rather than cast.
func rxControl(oob []byte) (at int64, seg int) {
	const lenSize = unix.SizeofCmsghdr - 8 // level and type are int32s
	for len(oob) >= unix.SizeofCmsghdr {
		var l int
		if lenSize == 8 {
			l = int(min(binary.NativeEndian.Uint64(oob), uint64(len(oob)+1)))
		} else {
			l = int(binary.NativeEndian.Uint32(oob))
		}
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return at, seg
		}
		level := int32(binary.NativeEndian.Uint32(oob[lenSize:]))
		typ := int32(binary.NativeEndian.Uint32(oob[lenSize+4:]))
		d := oob[unix.CmsgLen(0):l]
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && len(d) >= 16:
			sec := int64(binary.NativeEndian.Uint64(d))
			nsec := int64(binary.NativeEndian.Uint64(d[8:]))
			at = sec*1e9 + nsec
		case level == unix.IPPROTO_UDP && typ == unix.UDP_GRO && len(d) >= 4:
			seg = int(int32(binary.NativeEndian.Uint32(d)))
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			return at, seg
		}
		oob = oob[next:]
	}
	return at, seg
}
