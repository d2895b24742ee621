package rtspserver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/streamfleet/streamfleet/node/auth"
)

// Config configures the RTSP server.
type Config struct {
	// Addr is the TCP address of RTSP (requests and interleaved media). Empty disables RTSP. Port
	// 0 picks a free port (see Server.Addr).
	Addr string
	// UDPRTPAddr and UDPRTCPAddr are the UDP pair of the UDP unicast transport: an even RTP port
	// and the next port for RTCP. Both empty disables UDP (clients then use TCP). Both with port
	// 0 pick a free pair.
	UDPRTPAddr  string
	UDPRTCPAddr string
	// Draining, when set and true, refuses new publish and read sessions with 503 (the stream
	// managers are draining the node); sessions already open continue, and so do pulls of other
	// nodes (the cluster secret). Nil: never draining.
	Draining func() bool
	// Auth decides who may publish and read. A client gives its token as ?token= in the URL or as
	// the password of RTSP Basic authentication (the user name goes to the auth webhook). Nil: an
	// authorizer with just PublishToken and PlayToken.
	Auth *auth.Authorizer
	// PublishToken, if set, is required to publish; PlayToken, if set, to read; used only when
	// Auth is nil.
	PublishToken string
	PlayToken    string
	// ClusterSecret, if set, is required (RTSP Basic, user ClusterUser, the secret as password) of
	// every pull of all layers (?layers=all), which only other nodes make; a client that presents
	// it may also read without the play token. Empty: all-layers pulls are open like any read.
	ClusterSecret string
	// ReadTimeout and WriteTimeout bound each read and write on a connection.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// WriteQueue is each reader's queue of outgoing packets, a power of two. A reader that falls
	// this far behind loses packets (counted).
	WriteQueue int
	// ReaderQueue bounds the hub reader behind each RTSP stream, in packets (hub default if 0).
	ReaderQueue int
}

// DefaultConfig returns RTSP on TCP :8554 with UDP on :8000/:8001.
func DefaultConfig() Config {
	return Config{
		Addr:         ":8554",
		UDPRTPAddr:   ":8000",
		UDPRTCPAddr:  ":8001",
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		WriteQueue:   512,
	}
}

// Enabled reports whether RTSP is served at all.
func (c Config) Enabled() bool { return c.Addr != "" }

// UDP reports whether the UDP transport is served.
func (c Config) UDP() bool { return c.UDPRTPAddr != "" || c.UDPRTCPAddr != "" }

// Validate checks the configuration. A disabled server is always valid.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	if _, err := net.ResolveTCPAddr("tcp", c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("rtsp address %q: %w", c.Addr, err))
	}
	if c.UDP() {
		rtp, err1 := udpPort(c.UDPRTPAddr)
		rtcp, err2 := udpPort(c.UDPRTCPAddr)
		switch {
		case err1 != nil:
			errs = append(errs, fmt.Errorf("rtsp udp rtp address %q: %w", c.UDPRTPAddr, err1))
		case err2 != nil:
			errs = append(errs, fmt.Errorf("rtsp udp rtcp address %q: %w", c.UDPRTCPAddr, err2))
		case rtp == 0 && rtcp == 0:
			// a free pair is picked at Start
		case rtp%2 != 0 || rtcp != rtp+1:
			errs = append(errs, fmt.Errorf("rtsp udp ports %d/%d: want an even RTP port and RTCP on the next one", rtp, rtcp))
		}
	}
	if c.ReadTimeout <= 0 || c.WriteTimeout <= 0 {
		errs = append(errs, errors.New("rtsp read and write timeouts must be positive"))
	}
	if c.WriteQueue <= 0 || c.WriteQueue&(c.WriteQueue-1) != 0 {
		errs = append(errs, fmt.Errorf("rtsp write queue %d: want a power of two", c.WriteQueue))
	}
	if c.ReaderQueue < 0 {
		errs = append(errs, errors.New("rtsp reader queue must not be negative"))
	}
	return errors.Join(errs...)
}

func udpPort(addr string) (int, error) {
	if addr == "" {
		return 0, errors.New("empty (set both UDP addresses or neither)")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q: %w", port, err)
	}
	return int(p), nil
}
