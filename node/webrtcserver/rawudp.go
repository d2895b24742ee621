package webrtcserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawUDPConn is the node's ICE UDP socket with its reads and writes made as raw system calls, as
// the fan-out's sendmmsg already is. A UDP socket's recvfrom and sendto never sleep (it is
// non-blocking: an empty or full socket waits in the poller), but a system call the Go scheduler
// is told of also wakes its monitor thread (sysmon) if that was asleep, and sysmon then polls
// every 20 µs for the next millisecond. A node's work comes in bursts — a packet in, a fan-out
// round out, idle — so every burst woke it: measured at 200 viewers, 1,700 wake-ups a second and
// a tenth of the node's CPU. Raw, the scheduler is not told, exactly as for a function that runs
// a few microseconds.
//
// It serves pion's ICE UDP mux through ice.AddrPortReaderWriter (allocation-free addresses) and
// net.PacketConn; everything else (deadlines, Close, SyscallConn for the send batches) is the
// *net.UDPConn's.
type rawUDPConn struct {
	*net.UDPConn
	raw   syscall.RawConn
	inet6 bool // AF_INET6: IPv4 destinations as v4-mapped addresses

	rmu sync.Mutex // one read at a time: pion's mux has one reader
	rd  rawRecv

	wr sync.Pool // *rawSend: pion writes from many goroutines
}

// rawRecv is one recvfrom's arguments and results, with its RawConn callback made once.
type rawRecv struct {
	buf     []byte
	from    unix.RawSockaddrAny
	fromlen uint32
	n       int
	errno   syscall.Errno
	fn      func(fd uintptr) bool
}

// rawSend is one sendto's.
type rawSend struct {
	buf   []byte
	sa4   unix.RawSockaddrInet4
	sa6   unix.RawSockaddrInet6
	name  unsafe.Pointer
	nlen  uint32
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

var errRawAddr = errors.New("raw udp: not an IP address")

func newRawUDPConn(c *net.UDPConn) (*rawUDPConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("raw udp: %w", err)
	}
	domain, err := socketDomain(raw)
	if err != nil {
		return nil, fmt.Errorf("raw udp: %w", err)
	}
	r := &rawUDPConn{UDPConn: c, raw: raw, inet6: domain == unix.AF_INET6}
	r.rd.fn = r.rd.recv
	r.wr.New = func() any {
		s := &rawSend{}
		s.fn = s.send
		return s
	}
	return r, nil
}

// socketDomain is the socket's address family (AF_INET or AF_INET6).
func socketDomain(raw syscall.RawConn) (int, error) {
	domain := 0
	var serr error
	if err := raw.Control(func(fd uintptr) { domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("socket domain: %w", serr)
	}
	return domain, nil
}

// rawCall makes a system call raw, again after EINTR; ok is false on EAGAIN (the socket is not
// ready: the RawConn callback returns false to wait in the poller), and n is 0 on another error.
// The pointers among its arguments must be to heap memory kept alive by the caller (fields of
// rawRecv, rawSend and sendBatch, and the buffers stored in them): unlike the syscall package's
// own functions, a plain function does not keep a uintptr-converted pointer's object alive or in
// place.
func rawCall(trap, a1, a2, a3, a4, a5, a6 uintptr) (n int, errno syscall.Errno, ok bool) {
	for {
		r, _, e := unix.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, 0, false
		case 0:
			return int(r), 0, true
		}
		return 0, e, true
	}
}

// recv is the RawConn.Read callback: false to wait until the socket is readable.
func (r *rawRecv) recv(fd uintptr) bool {
	p := unsafe.Pointer(&r.from) // a zero-length read still takes the datagram off the queue
	if len(r.buf) > 0 {
		p = unsafe.Pointer(&r.buf[0])
	}
	r.fromlen = unix.SizeofSockaddrAny
	n, errno, ok := rawCall(unix.SYS_RECVFROM, fd, uintptr(p), uintptr(len(r.buf)), 0,
		uintptr(unsafe.Pointer(&r.from)), uintptr(unsafe.Pointer(&r.fromlen)))
	r.n, r.errno = n, errno
	return ok
}

// send is the RawConn.Write callback.
func (s *rawSend) send(fd uintptr) bool {
	var p unsafe.Pointer
	if len(s.buf) > 0 {
		p = unsafe.Pointer(&s.buf[0])
	}
	n, errno, ok := rawCall(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(s.buf)), 0, uintptr(s.name), uintptr(s.nlen))
	s.n, s.errno = n, errno
	return ok
}

// ReadFromAddrPort reads one datagram, as (*net.UDPConn).ReadFromUDPAddrPort.
func (c *rawUDPConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	r := &c.rd
	r.buf, r.n, r.errno = b, 0, 0
	err := c.raw.Read(r.fn)
	r.buf = nil
	if err != nil {
		return 0, netip.AddrPort{}, c.opError("read", err)
	}
	if r.errno != 0 {
		return 0, netip.AddrPort{}, c.opError("read", r.errno)
	}
	return r.n, sockaddrAddrPort(&r.from), nil
}

// ReadFrom is net.PacketConn's.
func (c *rawUDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// WriteToAddrPort sends one datagram, as (*net.UDPConn).WriteToUDPAddrPort.
func (c *rawUDPConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	s := c.wr.Get().(*rawSend)
	defer c.wr.Put(s)
	if !putSockaddr(c.inet6, addr, &s.sa4, &s.sa6, &s.name, &s.nlen) {
		return 0, c.opError("write", errRawAddr)
	}
	s.buf, s.n, s.errno = b, 0, 0
	err := c.raw.Write(s.fn)
	s.buf = nil
	if err != nil {
		return 0, c.opError("write", err)
	}
	if s.errno != 0 {
		return 0, c.opError("write", s.errno)
	}
	return s.n, nil
}

// WriteTo is net.PacketConn's.
func (c *rawUDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opError("write", fmt.Errorf("%w: %T", errRawAddr, addr))
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

func (c *rawUDPConn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return err
	}
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Err: err}
}

// putSockaddr writes addr as the socket's family expects into sa4 or sa6 and points name and
// nlen at it; false if addr cannot be sent on this socket (an IPv6 address on an IPv4 socket, or
// no address at all).
func putSockaddr(inet6 bool, addr netip.AddrPort, sa4 *unix.RawSockaddrInet4, sa6 *unix.RawSockaddrInet6, name *unsafe.Pointer, nlen *uint32) bool {
	ip := addr.Addr()
	if !ip.IsValid() {
		return false
	}
	port := addr.Port()
	if inet6 {
		sa6.Family = unix.AF_INET6
		putPort(&sa6.Port, port)
		sa6.Addr = ip.As16()
		sa6.Scope_id = 0
		if z := ip.Zone(); z != "" {
			sa6.Scope_id = zoneIndex(z)
		}
		*name, *nlen = unsafe.Pointer(sa6), unix.SizeofSockaddrInet6
		return true
	}
	ip = ip.Unmap()
	if !ip.Is4() {
		return false
	}
	sa4.Family = unix.AF_INET
	putPort(&sa4.Port, port)
	sa4.Addr = ip.As4()
	*name, *nlen = unsafe.Pointer(sa4), unix.SizeofSockaddrInet4
	return true
}

// putPort and getPort write and read a sockaddr's port, which is in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

func getPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// sockaddrAddrPort is the address recvfrom filled in (the zero AddrPort for another family).
func sockaddrAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		s := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s.Addr), getPort(&s.Port))
	case unix.AF_INET6:
		s := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		ip := netip.AddrFrom16(s.Addr)
		if s.Scope_id != 0 {
			ip = ip.WithZone(zoneName(s.Scope_id))
		}
		return netip.AddrPortFrom(ip, getPort(&s.Port))
	}
	return netip.AddrPort{}
}

// zoneName and zoneIndex map an IPv6 scope to an interface name and back, as the net package does
// (the index itself when no interface has it). Only link-local peers have one.
func zoneName(index uint32) string {
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(index), 10)
}

func zoneIndex(zone string) uint32 {
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	n, _ := strconv.ParseUint(zone, 10, 32)
	return uint32(n)
}
