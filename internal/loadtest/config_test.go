package loadtest

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseBitrate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Bitrate
		str  string
	}{
		{"600k", 600_000, "600k"},
		{"2M", 2_000_000, "2M"},
		{"1.5M", 1_500_000, "1.5M"},
		{"2Mbps", 2_000_000, "2M"},
		{"800000", 800_000, "800k"},
		{"64kb", 64_000, "64k"},
		{"1234567", 1_234_567, "1234567"},
	} {
		got, err := ParseBitrate(tc.in)
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseBitrate(%q) = %v (%q), %v; want %d (%q)", tc.in, int64(got), got.String(), err, tc.want, tc.str)
		}
	}
	for _, bad := range []string{"", "k", "fast", "-1M", "1e400", "NaN"} {
		if _, err := ParseBitrate(bad); err == nil {
			t.Errorf("ParseBitrate(%q) succeeded", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
	}{
		{"server not a URL", func(c *Config) { c.Server = "127.0.0.1:8080" }},
		{"server scheme", func(c *Config) { c.Server = "ftp://x" }},
		{"publish server not a URL", func(c *Config) { c.PublishServer = "127.0.0.1:8080" }},
		{"ingest", func(c *Config) { c.Ingest = "rtmp" }},
		{"protocol", func(c *Config) { c.Protocol = "hls" }},
		{"srt ingest without address", func(c *Config) { c.Ingest, c.SRT = ProtoSRT, "" }},
		{"rtsp without address", func(c *Config) { c.Protocol, c.RTSP = ProtoRTSP, "" }},
		{"empty stream", func(c *Config) { c.Stream = "" }},
		{"stream segment", func(c *Config) { c.Stream = "live/a b" }},
		{"stream depth", func(c *Config) { c.Stream = "a/b/c/d/e" }},
		{"stream empty segment", func(c *Config) { c.Stream = "live//x" }},
		{"bitrate", func(c *Config) { c.VideoBitrate = 1000 }},
		{"subscribers", func(c *Config) { c.Subscribers = -1 }},
		{"nothing to do", func(c *Config) { c.Subscribers, c.NoPublish = 0, true }},
		{"ramp", func(c *Config) { c.RampPerSecond = 0 }},
		{"warmup", func(c *Config) { c.Warmup = -time.Second }},
		{"duration", func(c *Config) { c.Duration = 0 }},
		{"connect timeout", func(c *Config) { c.ConnectTimeout = 0 }},
		{"pid", func(c *Config) { c.PIDs = []int{0} }},
		{"node metrics not a URL", func(c *Config) { c.NodeMetrics = "127.0.0.1:8080/metrics" }},
		{"negative pacing", func(c *Config) { c.Pacing = -1 }},
		{"pacing not a number", func(c *Config) { c.Pacing = math.NaN() }},
		{"pacing infinite", func(c *Config) { c.Pacing = math.Inf(1) }},
		{"pacing no faster than the video", func(c *Config) { c.Pacing = 1 }},
	} {
		c := DefaultConfig()
		tc.mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
	}
	c := DefaultConfig()
	c.Pacing = -2.5
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "pacing -2.5") {
		t.Errorf("negative pacing: %v, want an error naming the pacing", err)
	}
	if DefaultConfig().Pacing != DefaultPacing {
		t.Errorf("default pacing %g", DefaultConfig().Pacing)
	}
	for _, pacing := range []float64{0, 1.5, DefaultPacing, 10} {
		c.Pacing = pacing
		if err := c.Validate(); err != nil {
			t.Errorf("pacing %g: %v", pacing, err)
		}
	}
	c = DefaultConfig()
	c.Server, c.Stream = "http://example.test:8080/", "a/b.c/d_e/f-g"
	c.NodeMetrics = "http://example.test:8080/metrics"
	if err := c.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	if got := c.endpoint("whep"); got != "http://example.test:8080/whep/a/b.c/d_e/f-g" {
		t.Errorf("endpoint = %s", got)
	}
}
