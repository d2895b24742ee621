package srtserver

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/streamfleet/streamfleet/node/auth"
)

// Config configures the SRT server of a node.
type Config struct {
	// Addr is the UDP address of the SRT listener; empty disables SRT. Port 0 picks a free port.
	Addr string
	// Passphrase, when set, is required of every caller (AES encryption); a caller without it or
	// with another is refused. SRT allows 10 to 79 characters.
	Passphrase string
	// Latency is the SRT receive latency (TSBPD delay) the node offers; the larger of the two
	// peers' values is used.
	Latency time.Duration
	// Draining, when set and true, refuses new publish and read sessions with reject 1503
	// (REJX_DOWN; the stream managers are draining the node); sessions already open continue.
	// Nil: never draining.
	Draining func() bool
	// Auth decides who may publish and read; a caller gives its token as t= in the streamid (and
	// may name itself with u=). Nil: an authorizer with just PublishToken and PlayToken.
	Auth *auth.Authorizer
	// PublishToken and PlayToken are static tokens, used only when Auth is nil (empty: open).
	PublishToken string
	PlayToken    string
	// ReaderQueue bounds each SRT reader's queue in MPEG-TS chunks of 1316 bytes.
	ReaderQueue int
	// ProbeTimeout bounds how long a publisher's start is buffered until its tracks are known.
	ProbeTimeout time.Duration
	// InputTimeout ends a publication whose input carried no valid media for this long.
	InputTimeout time.Duration
}

// DefaultConfig returns the defaults: SRT on UDP :9000, 120 ms latency, no passphrase.
func DefaultConfig() Config {
	return Config{
		Addr:         ":9000",
		Latency:      120 * time.Millisecond,
		ReaderQueue:  512,
		ProbeTimeout: 5 * time.Second,
		InputTimeout: 5 * time.Second,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Addr != "" {
		if _, err := net.ResolveUDPAddr("udp", c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("srt address %q: %w", c.Addr, err))
		}
	}
	if n := len(c.Passphrase); n != 0 && (n < 10 || n > 79) {
		errs = append(errs, fmt.Errorf("srt passphrase must be 10 to 79 characters, not %d", n))
	}
	if c.Latency < 0 || c.Latency > time.Minute {
		errs = append(errs, fmt.Errorf("srt latency %s out of range (0 to 1m)", c.Latency))
	}
	if c.ReaderQueue < 0 || c.ProbeTimeout < 0 || c.InputTimeout < 0 {
		errs = append(errs, errors.New("srt reader queue and timeouts must not be negative"))
	}
	return errors.Join(errs...)
}
