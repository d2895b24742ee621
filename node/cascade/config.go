package cascade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/streamfleet/streamfleet/internal/streamname"
)

// Defaults.
const (
	DefaultLinger       = 30 * time.Second
	DefaultStallTimeout = time.Second
	DefaultRetryBackoff = 200 * time.Millisecond
	DefaultMaxBackoff   = 2 * time.Second
	DefaultRTSPTimeout  = 5 * time.Second
	// DefaultRTSPPort is the port of an upstream given without one.
	DefaultRTSPPort = 8554
)

// Config configures a Puller.
type Config struct {
	// Upstreams are the nodes to pull from, in order of preference: rtsp://host:port or host:port
	// (port 8554 if left out). A pull starts on the first; when an upstream dies, stalls or lacks
	// the stream, the next one is tried, round robin. With a Resolver they are the fallback,
	// tried after the resolver's candidates (alone when it has none).
	Upstreams []string
	// Resolver, if set, is asked for the ordered upstreams of a stream before every attempt (the
	// first of a pull and each after a failure), so a pull follows the routing table rather than
	// a fixed list. Nil: Upstreams alone.
	Resolver UpstreamResolver
	// ClusterSecret is presented to upstreams (RTSP Basic, user rtspserver.ClusterUser). Empty: pull
	// without credentials (upstreams without a cluster secret).
	ClusterSecret string
	// Linger is how long a pulled stream without readers is kept before its pull stops.
	Linger time.Duration
	// StallTimeout: an upstream that sends nothing for this long, neither RTP nor RTCP (an idle
	// upstream sends heartbeats), is given up for the next one.
	StallTimeout time.Duration
	// RetryBackoff is the wait after every upstream failed in a row, doubling up to MaxBackoff.
	RetryBackoff time.Duration
	MaxBackoff   time.Duration
	// RTSPTimeout bounds each RTSP request and read of an upstream session.
	RTSPTimeout time.Duration
}

// UpstreamResolver finds where a stream can be pulled from at the moment of an attempt, e.g. from
// the stream managers' routing table. It must be safe for concurrent use and answer quickly (from
// memory): the puller asks before every attempt.
type UpstreamResolver interface {
	// Upstreams returns the upstreams of stream in order of preference (rtsp://host:port or
	// host:port). None, with an error wrapping hub.ErrStreamNotFound: no node of the cluster has
	// the stream (the pull fails, or a pulled stream ends, as when an upstream answers 404).
	// None otherwise: nothing known to pull from now (the static Upstreams are tried, or the
	// attempt fails as an unavailable upstream).
	Upstreams(ctx context.Context, stream streamname.Name) ([]string, error)
}

// DefaultConfig returns a configuration without upstreams.
func DefaultConfig() Config {
	return Config{
		Linger:       DefaultLinger,
		StallTimeout: DefaultStallTimeout,
		RetryBackoff: DefaultRetryBackoff,
		MaxBackoff:   DefaultMaxBackoff,
		RTSPTimeout:  DefaultRTSPTimeout,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if len(c.Upstreams) == 0 && c.Resolver == nil {
		errs = append(errs, errors.New("no upstream (and no upstream resolver)"))
	}
	for _, u := range c.Upstreams {
		if _, err := ParseUpstream(u); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Linger <= 0 {
		errs = append(errs, errors.New("pull linger must be positive"))
	}
	if c.StallTimeout <= 0 || c.RetryBackoff <= 0 || c.MaxBackoff < c.RetryBackoff || c.RTSPTimeout <= 0 {
		errs = append(errs, errors.New("pull stall timeout, backoff and RTSP timeout must be positive (max backoff ≥ backoff)"))
	}
	return errors.Join(errs...)
}

// ParseUpstream reads an upstream as rtsp://host[:port][/] or host[:port] and returns host:port.
func ParseUpstream(s string) (string, error) {
	hostport := strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(hostport, "rtsp://"); ok {
		hostport = strings.TrimSuffix(rest, "/")
	} else if strings.Contains(hostport, "://") {
		return "", fmt.Errorf("%w %q: want rtsp://host:port or host:port", ErrBadUpstream, s)
	}
	if hostport == "" || strings.ContainsAny(hostport, "/?#@ ") {
		return "", fmt.Errorf("%w %q: want rtsp://host:port or host:port", ErrBadUpstream, s)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		// no port (a bare host or IPv6 address in brackets)
		host, port = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), strconv.Itoa(DefaultRTSPPort)
		if strings.ContainsAny(host, "[]") {
			return "", fmt.Errorf("%w %q: %v", ErrBadUpstream, s, err)
		}
	}
	if host == "" {
		return "", fmt.Errorf("%w %q: no host", ErrBadUpstream, s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", fmt.Errorf("%w %q: bad port %q", ErrBadUpstream, s, port)
	}
	return net.JoinHostPort(host, port), nil
}
