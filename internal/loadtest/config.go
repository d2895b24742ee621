// Package loadtest is the streamfleet load tool: one WHIP publisher sending synthetic H264 and Opus,
// and N WHEP subscribers that measure time to first frame, one-way delay and packet loss, while the
// CPU and memory of the server processes are sampled from /proc and, for a streamfleet node, its own
// fan-out delay is read from its Prometheus metrics.
//
// It speaks only standard WHIP and WHEP (RFC 9725), so it can load any server. Delay is measured
// from a send time the publisher writes into the last bytes of each RTP payload; servers rewrite
// SSRC, sequence numbers and timestamps but forward payloads untouched, and publisher and
// subscribers share one clock because they run in one process.
package loadtest

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Media shape of the synthetic publisher. These are fixed so that runs stay comparable.
const (
	// VideoFPS is the frame rate of the synthetic video.
	VideoFPS = 30
	// GOPDuration is the keyframe interval of the synthetic video.
	GOPDuration = 2 * time.Second
	// AudioBitrate is the bitrate of the synthetic Opus audio.
	AudioBitrate = 48_000
)

// Config configures one load test run. Start from DefaultConfig.
type Config struct {
	// Server is the base URL of the server; WHIP goes to {Server}/whip/{Stream}, WHEP to
	// {Server}/whep/{Stream}.
	Server string
	// PublishServer, when set, takes the WHIP publisher instead of Server: publish on an origin,
	// play from an edge.
	PublishServer string
	// Stream is the stream name: 1–4 path segments of [A-Za-z0-9_.-].
	Stream string
	// Token, when set, is sent as "Authorization: Bearer {Token}" on every request.
	Token string
	// PublishToken, when set, replaces Token for the publisher (signed tokens grant one action:
	// publish or play).
	PublishToken string
	// VideoBitrate is the bitrate of the synthetic H264 video.
	VideoBitrate Bitrate
	// Pacing paces the WHIP publisher's video at Pacing × VideoBitrate, as a browser's pacer
	// does (DefaultPacing); 0 writes each frame's packets back to back. Audio is not paced, nor is
	// SRT ingest.
	Pacing float64
	// Subscribers is the number of WHEP subscribers.
	Subscribers int
	// RampPerSecond is how many subscribers start per second.
	RampPerSecond float64
	// Warmup is the time between the end of the ramp and the start of the measurement window.
	Warmup time.Duration
	// Duration is the length of the measurement window.
	Duration time.Duration
	// ConnectTimeout bounds one session's setup: ICE gathering, the HTTP exchange, ICE and DTLS.
	ConnectTimeout time.Duration
	// PIDs are server processes whose CPU and memory are sampled.
	PIDs []int
	// NodeMetrics, when set, is the URL of a node's Prometheus metrics page
	// ("http://127.0.0.1:8080/metrics"). It is scraped at the start and at the end of the
	// measurement window, and the report adds the node's own fan-out delay (FanoutMetric) inside
	// the window, which unlike Delay leaves out the load tool's receive path.
	NodeMetrics string
	// NoPublish subscribes to an existing stream instead of publishing one.
	NoPublish bool
	// ReceiverReports makes subscribers send RTCP receiver reports (one more interceptor each).
	ReceiverReports bool
	// PionReceive leaves WHEP subscribers' media to pion's receive chain, instead of decrypting
	// and measuring it in the sockets' read loops (directrx.go): several times the load tool's
	// CPU per packet, for comparison.
	PionReceive bool
	// GRO turns UDP GRO on for WHEP subscribers' sockets (rxstamp.go): a server's UDP GSO run is
	// then read as one buffer rather than queued, and its reader woken, datagram by datagram. It
	// helps on loopback with long runs; behind a veth with GRO it added delay (BENCHMARKS.md).
	GRO bool

	// Ingest is how the publisher sends: "whip" (default) or "srt" (MPEG-TS).
	Ingest string
	// Protocol is how subscribers read: "whep" (default), "srt" (MPEG-TS) or "rtsp".
	Protocol string
	// SRT is the host:port of the server's SRT listener, for SRT ingest or subscribers.
	SRT string
	// SRTPassphrase encrypts SRT sessions when set.
	SRTPassphrase string
	// SRTLatency is the SRT latency (receiver buffer) of every SRT session; 0 keeps SRT's 120 ms.
	SRTLatency time.Duration
	// RTSP is the host:port of the server's RTSP listener, for RTSP subscribers.
	RTSP string
	// RTSPUDP makes RTSP subscribers receive over UDP instead of interleaved TCP.
	RTSPUDP bool
}

// Protocols.
const (
	ProtoWHIP = "whip"
	ProtoWHEP = "whep"
	ProtoSRT  = "srt"
	ProtoRTSP = "rtsp"
)

// ingest and protocol return the publisher's and the subscribers' protocols, defaults applied.
func (c Config) ingest() string {
	if c.Ingest == "" {
		return ProtoWHIP
	}
	return c.Ingest
}

func (c Config) protocol() string {
	if c.Protocol == "" {
		return ProtoWHEP
	}
	return c.Protocol
}

// DefaultConfig returns the defaults of the loadtest command.
func DefaultConfig() Config {
	return Config{
		Server:         "http://127.0.0.1:8080",
		Stream:         "live/loadtest",
		VideoBitrate:   2_000_000,
		Pacing:         DefaultPacing,
		Subscribers:    10,
		RampPerSecond:  10,
		Warmup:         5 * time.Second,
		Duration:       30 * time.Second,
		ConnectTimeout: 10 * time.Second,
	}
}

var streamSegment = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Validate reports the first invalid field, wrapped in ErrInvalidConfig.
func (c Config) Validate() error {
	for _, f := range []struct {
		name, url string
		optional  bool
	}{
		{"server", c.Server, false},
		{"publish server", c.PublishServer, true},
		{"node metrics", c.NodeMetrics, true},
	} {
		if f.optional && f.url == "" {
			continue
		}
		if u, err := url.Parse(f.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: %s %q is not an http(s) URL", ErrInvalidConfig, f.name, f.url)
		}
	}
	segments := strings.Split(c.Stream, "/")
	if len(segments) > 4 {
		return fmt.Errorf("%w: stream %q has more than 4 segments", ErrInvalidConfig, c.Stream)
	}
	for _, s := range segments {
		if !streamSegment.MatchString(s) {
			return fmt.Errorf("%w: stream %q: segments must be [A-Za-z0-9_.-]+", ErrInvalidConfig, c.Stream)
		}
	}
	switch {
	case c.VideoBitrate < 50_000 || c.VideoBitrate > 50_000_000:
		return fmt.Errorf("%w: video bitrate %s is outside 50k..50M", ErrInvalidConfig, c.VideoBitrate)
	case c.Pacing < 0 || math.IsNaN(c.Pacing) || math.IsInf(c.Pacing, 0):
		return fmt.Errorf("%w: pacing %g: want a factor of the video bitrate (browsers pace at %g), or 0 for none",
			ErrInvalidConfig, c.Pacing, DefaultPacing)
	case c.Pacing > 0 && c.Pacing <= 1:
		return fmt.Errorf("%w: pacing %g would send video no faster than it is produced, so it falls ever further "+
			"behind: want a factor above 1, or 0 for none", ErrInvalidConfig, c.Pacing)
	case c.Subscribers < 0:
		return fmt.Errorf("%w: subscribers must not be negative", ErrInvalidConfig)
	case c.Subscribers == 0 && c.NoPublish:
		return fmt.Errorf("%w: no publisher and no subscribers: nothing to do", ErrInvalidConfig)
	case !(c.RampPerSecond > 0) || math.IsInf(c.RampPerSecond, 0):
		return fmt.Errorf("%w: ramp must be a positive number of subscribers per second", ErrInvalidConfig)
	case c.Warmup < 0:
		return fmt.Errorf("%w: warmup must not be negative", ErrInvalidConfig)
	case c.Duration <= 0:
		return fmt.Errorf("%w: duration must be positive", ErrInvalidConfig)
	case c.ConnectTimeout <= 0:
		return fmt.Errorf("%w: connect timeout must be positive", ErrInvalidConfig)
	}
	switch c.ingest() {
	case ProtoWHIP:
	case ProtoSRT:
		if c.SRT == "" {
			return fmt.Errorf("%w: SRT ingest needs the server's SRT address", ErrInvalidConfig)
		}
	default:
		return fmt.Errorf("%w: ingest %q (want whip or srt)", ErrInvalidConfig, c.Ingest)
	}
	switch c.protocol() {
	case ProtoWHEP:
	case ProtoSRT:
		if c.SRT == "" {
			return fmt.Errorf("%w: SRT subscribers need the server's SRT address", ErrInvalidConfig)
		}
	case ProtoRTSP:
		if c.RTSP == "" {
			return fmt.Errorf("%w: RTSP subscribers need the server's RTSP address", ErrInvalidConfig)
		}
	default:
		return fmt.Errorf("%w: protocol %q (want whep, srt or rtsp)", ErrInvalidConfig, c.Protocol)
	}
	for _, pid := range c.PIDs {
		if pid <= 0 {
			return fmt.Errorf("%w: pid %d", ErrInvalidConfig, pid)
		}
	}
	return nil
}

// endpoint returns the WHIP ("whip") or WHEP ("whep") URL of the stream: WHIP on PublishServer
// when it is set, everything else on Server.
func (c Config) endpoint(kind string) string {
	base := c.Server
	if kind == "whip" && c.PublishServer != "" {
		base = c.PublishServer
	}
	return strings.TrimRight(base, "/") + "/" + kind + "/" + c.Stream
}

// Bitrate is a rate in bits per second. As a flag it accepts "600k", "2M", "1.5M" or "800000".
type Bitrate int64

// ParseBitrate parses a bitrate with an optional k, M or G suffix (powers of 1000), and an
// optional "bps" or "b" after it ("2Mbps").
func ParseBitrate(s string) (Bitrate, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "bps"), "b")
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult = 1e3
		case 'm', 'M':
			mult = 1e6
		case 'g', 'G':
			mult = 1e9
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || v*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("bitrate %q: want a number with an optional k, M or G suffix", s)
	}
	return Bitrate(math.Round(v * mult)), nil
}

// String formats b compactly: 600k, 2M, 1.5M.
func (b Bitrate) String() string {
	switch {
	case b >= 1_000_000 && b%10_000 == 0:
		return strconv.FormatFloat(float64(b)/1e6, 'f', -1, 64) + "M"
	case b >= 1_000 && b%10 == 0:
		return strconv.FormatFloat(float64(b)/1e3, 'f', -1, 64) + "k"
	default:
		return strconv.FormatInt(int64(b), 10)
	}
}

// Set implements flag.Value.
func (b *Bitrate) Set(s string) error {
	v, err := ParseBitrate(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// publishToken is the publisher's token.
func (c Config) publishToken() string {
	if c.PublishToken != "" {
		return c.PublishToken
	}
	return c.Token
}
