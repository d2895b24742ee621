package webrtcserver

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/auth"
)

// Config configures the WHIP/WHEP server of a node.
type Config struct {
	// ICEUDPAddr is the one UDP address every WebRTC session uses (ICE UDP mux), so a node needs a
	// single firewall rule. Port 0 picks a free port.
	ICEUDPAddr string
	// PublicIPs are announced as host candidates instead of the bound address, for a node behind
	// 1:1 NAT (a cloud VM's public IP).
	PublicIPs []string
	// ICEServers are handed to clients in Link headers (STUN/TURN), per RFC 9725.
	ICEServers []webrtc.ICEServer
	// Auth decides who may publish (WHIP) and play (WHEP); a client presents its token as
	// "Authorization: Bearer <token>" or as ?token= on the POST URL. Nil: an authorizer with just
	// PublishToken and PlayToken (empty: open).
	Auth *auth.Authorizer
	// PublishToken and PlayToken are static tokens, used only when Auth is nil.
	PublishToken string
	PlayToken    string
	// ConnectTimeout bounds the time from the answer to an established connection; a peer that
	// never completes ICE and DTLS is dropped after it.
	ConnectTimeout time.Duration
	// DisconnectedTimeout and FailedTimeout are ICE's: without traffic from the peer for
	// DisconnectedTimeout the session is disconnected, after FailedTimeout more it is closed.
	DisconnectedTimeout time.Duration
	FailedTimeout       time.Duration
	// MaxSDPBytes caps the size of an offer or a trickle PATCH body.
	MaxSDPBytes int64
	// ReaderQueue bounds each viewer track's queue, in packets.
	ReaderQueue int
	// PacketSend sends the fan-out's RTP to IPv4 viewers through an AF_PACKET transmit ring of
	// the egress device, past the kernel's UDP and IP stack (packetsend.go): about a third of the
	// CPU per datagram. Needs CAP_NET_RAW; those datagrams skip netfilter's OUTPUT hooks.
	PacketSend bool
}

// DefaultConfig returns the defaults: ICE on UDP 8189 on every interface.
func DefaultConfig() Config {
	return Config{
		ICEUDPAddr:          ":8189",
		ConnectTimeout:      10 * time.Second,
		DisconnectedTimeout: 3 * time.Second,
		FailedTimeout:       5 * time.Second,
		MaxSDPBytes:         64 << 10,
		ReaderQueue:         256,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if _, err := net.ResolveUDPAddr("udp", c.ICEUDPAddr); err != nil {
		errs = append(errs, fmt.Errorf("ice udp address %q: %w", c.ICEUDPAddr, err))
	}
	for _, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, fmt.Errorf("public ip %q is not an IP address", ip))
		}
	}
	if c.ConnectTimeout <= 0 || c.DisconnectedTimeout <= 0 || c.FailedTimeout <= 0 {
		errs = append(errs, errors.New("connect, disconnected and failed timeouts must be positive"))
	}
	if c.MaxSDPBytes < 1024 {
		errs = append(errs, errors.New("max sdp bytes must be at least 1024"))
	}
	return errors.Join(errs...)
}
