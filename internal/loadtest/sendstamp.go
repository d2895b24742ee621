package loadtest

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v4"
)

// Delays start when the WHIP publisher's datagram goes out: the packet leaving the publisher,
// where the node's part begins. The stamp in the media is written before pion's send path (its
// interceptors, SRTP, the ICE conn), which in the load tool, sharing the machine with every
// subscriber, takes tens of microseconds at the median and milliseconds at the tail; that is
// the load tool's time, not the node's. So the publisher's sockets note when each RTP datagram
// is handed to the kernel (sendNet, keyed by the cleartext SSRC and sequence number, as the
// subscribers' sockets note arrivals), the publisher maps each packet's stamp to that time
// (outTimes), and the subscribers measure from it. The time from stamp to socket is reported as
// the publisher's write delay; a packet whose send time is not known (an SRT publisher, or one
// that left the map) is measured from its stamp.

// outTimesSize is how many of the latest packets' send times outTimes holds: seconds of them, and
// the subscribers look theirs up within milliseconds of the send.
const outTimesSize = 4096

// outTimes maps the stamp of each packet the WHIP publisher sent to when its datagram went to the
// socket. The publisher's send loops write; every subscriber reads, without locks: a slot is
// written stamp 0, time, stamp, and read stamp, time, stamp, so a read racing a write is
// discarded — as long as each stamp is put once (a send time, unique per packet): a stamp put
// again into its slot while a read of it is between its loads could pair it with another's time.
type outTimes struct {
	slots [outTimesSize]struct {
		stamp, out atomic.Int64
	}
}

// slot is where stamp's entry lives: stamps are nanosecond clock readings, spread over the slots
// by splitmix64's finalizer.
func (t *outTimes) slot(stamp int64) int {
	x := uint64(stamp)
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return int((x ^ x>>31) % outTimesSize)
}

// put records that the packet stamped stamp went to the socket at out (Unix ns).
func (t *outTimes) put(stamp, out int64) {
	s := &t.slots[t.slot(stamp)]
	s.stamp.Store(0)
	s.out.Store(out)
	s.stamp.Store(stamp)
}

// sentAt is when the packet stamped stamp went to the publisher's socket, or the stamp itself
// when that is not known. A nil outTimes knows nothing.
func (t *outTimes) sentAt(stamp int64) int64 {
	if t == nil || stamp == 0 {
		return stamp
	}
	s := &t.slots[t.slot(stamp)]
	if s.stamp.Load() != stamp {
		return stamp
	}
	out := s.out.Load()
	if s.stamp.Load() != stamp {
		return stamp
	}
	return out
}

// sendNet is the publisher's transport.Net: the system's, with UDP sockets that note in sent when
// each RTP datagram is written.
func sendNet(n transport.Net, sent *arrivals) transport.Net {
	return &udpNet{Net: n, wrap: func(uc *net.UDPConn) transport.UDPConn { return &sendConn{UDPConn: uc, sent: sent} }}
}

// sendConn notes the time of every RTP datagram just before it is written. pion's ICE writes with
// WriteToAddrPort when the socket has it (ice.AddrPortReaderWriter), else WriteTo.
type sendConn struct {
	*net.UDPConn
	sent *arrivals
}

// WriteToAddrPort is what pion's ICE writes with.
func (c *sendConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	c.sent.noteDatagram(b, time.Now().UnixNano())
	return c.UDPConn.WriteToUDPAddrPort(b, addr)
}

// WriteTo is WriteToAddrPort for callers with a net.Addr.
func (c *sendConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.sent.noteDatagram(b, time.Now().UnixNano())
	return c.UDPConn.WriteTo(b, addr)
}

// ReadFromAddrPort completes ice.AddrPortReaderWriter.
func (c *sendConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.UDPConn.ReadFromUDPAddrPort(b)
}
