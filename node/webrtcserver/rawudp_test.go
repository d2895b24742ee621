package webrtcserver

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// newTestRawConn is a rawUDPConn bound to addr ("127.0.0.1:0", "[::1]:0", "[::]:0"), closed when
// the test ends.
func newTestRawConn(t *testing.T, addr string) *rawUDPConn {
	t.Helper()
	pc, err := listenICEUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*rawUDPConn)
}

// TestRawUDPConnExchanges sends and receives through the raw calls on IPv4, IPv6 and a dual-stack
// socket (IPv4 peers as v4-mapped addresses, as the net package gives them), against plain
// sockets on the other end: contents, lengths and the peer's address must be exact.
func TestRawUDPConnExchanges(t *testing.T) {
	cases := []struct{ name, bind, peer, dial string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1"},
		{"ipv6", "[::1]:0", "[::1]:0", "::1"},
		{"dual-stack to ipv4", "[::]:0", "127.0.0.1:0", "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := newTestRawConn(t, tc.bind)
			peer, err := net.ListenPacket("udp", tc.peer)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			port := rc.LocalAddr().(*net.UDPAddr).Port
			to := netip.AddrPortFrom(netip.MustParseAddr(tc.dial), uint16(port))
			peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

			for _, size := range []int{0, 1, 1200, 9000} {
				msg := bytes.Repeat([]byte{byte(size)}, size)
				if _, err := peer.WriteTo(msg, net.UDPAddrFromAddrPort(to)); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 10000)
				rc.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := rc.ReadFromAddrPort(buf)
				if err != nil {
					t.Fatalf("read %d bytes: %v", size, err)
				}
				if n != size || !bytes.Equal(buf[:n], msg) {
					t.Fatalf("read %d bytes, want %d", n, size)
				}
				if from.Port() != peerAddr.Port() || from.Addr().Unmap() != peerAddr.Addr().Unmap() {
					t.Fatalf("from %v, want %v", from, peerAddr)
				}
				if rc.inet6 && !from.Addr().Is6() {
					t.Fatalf("from %v on an IPv6 socket: the net package would give a 16-byte address", from)
				}
				// Back to where it came from, by both write methods.
				if n, err := rc.WriteToAddrPort(msg, from); err != nil || n != size {
					t.Fatalf("write: %d, %v", n, err)
				}
				if n, err := rc.WriteTo(msg, net.UDPAddrFromAddrPort(from)); err != nil || n != size {
					t.Fatalf("WriteTo: %d, %v", n, err)
				}
				for range 2 {
					peer.SetReadDeadline(time.Now().Add(5 * time.Second))
					n, _, err := peer.ReadFrom(buf)
					if err != nil || n != size || !bytes.Equal(buf[:n], msg) {
						t.Fatalf("peer read %d, %v; want %d bytes", n, err, size)
					}
				}
			}
			// ReadFrom gives a *net.UDPAddr.
			peer.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(to))
			rc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, a, err := rc.ReadFrom(make([]byte, 10)); err != nil || a.(*net.UDPAddr).Port != int(peerAddr.Port()) {
				t.Fatalf("ReadFrom: %v, %v", a, err)
			}
		})
	}
}

// TestRawUDPConnErrors: deadlines, a closed socket, a too-small buffer and addresses the socket
// cannot send to each give the error the net package would, and nothing hangs.
func TestRawUDPConnErrors(t *testing.T) {
	rc := newTestRawConn(t, "127.0.0.1:0")
	rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, _, err := rc.ReadFromAddrPort(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	rc.SetReadDeadline(time.Time{})

	// A datagram longer than the buffer is cut to it, as recvfrom does.
	self := rc.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := rc.WriteToAddrPort([]byte("0123456789"), self); err != nil {
		t.Fatal(err)
	}
	if n, _, err := rc.ReadFromAddrPort(make([]byte, 4)); err != nil || n != 4 {
		t.Fatalf("short buffer: %d, %v", n, err)
	}

	for _, bad := range []netip.AddrPort{
		netip.MustParseAddrPort("[2001:db8::1]:5000"), // IPv6 on an IPv4 socket
		{}, // no address
	} {
		if _, err := rc.WriteToAddrPort([]byte("x"), bad); !errors.Is(err, errRawAddr) {
			t.Fatalf("write to %v: %v, want errRawAddr", bad, err)
		}
	}
	if _, err := rc.WriteTo([]byte("x"), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}); !errors.Is(err, errRawAddr) {
		t.Fatalf("write to a TCP address: %v", err)
	}

	// Close wakes a blocked reader with net.ErrClosed.
	done := make(chan error, 1)
	go func() {
		_, _, err := rc.ReadFromAddrPort(make([]byte, 10))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	rc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed socket: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked read did not end on Close")
	}
	if _, err := rc.WriteToAddrPort([]byte("x"), self); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed socket: %v, want net.ErrClosed", err)
	}
}

// TestRawUDPConnNoAllocs: pion's mux reads and writes every datagram through these.
func TestRawUDPConnNoAllocs(t *testing.T) {
	rc := newTestRawConn(t, "127.0.0.1:0")
	self := rc.LocalAddr().(*net.UDPAddr).AddrPort()
	msg, buf := make([]byte, 1200), make([]byte, 1500)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := rc.WriteToAddrPort(msg, self); err != nil {
			t.Fatal(err)
		}
		if _, _, err := rc.ReadFromAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per datagram written and read", allocs)
	}
}
