package loadtest

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// rtspURL is the RTSP URL of the stream, with the token as a query parameter.
func rtspURL(cfg Config) string {
	u := "rtsp://" + cfg.RTSP + "/" + cfg.Stream
	if cfg.Token != "" {
		u += "?token=" + url.QueryEscape(cfg.Token)
	}
	return u
}

// connectRTSP reads the stream over RTSP, interleaved on the TCP connection (or UDP when
// cfg.RTSPUDP is set). The RTP packets are measured exactly as a WHEP subscriber's.
func (s *subscriber) connectRTSP(cfg Config) error {
	s.postedAt.Store(time.Now().UnixNano())
	u, err := base.ParseURL(rtspURL(cfg))
	if err != nil {
		return fmt.Errorf("rtsp url: %w", err)
	}
	transport := gortsplib.TransportTCP
	if cfg.RTSPUDP {
		transport = gortsplib.TransportUDP
	}
	c := &gortsplib.Client{Transport: &transport, ReadTimeout: cfg.ConnectTimeout, WriteTimeout: cfg.ConnectTimeout}
	if err := c.Start(u.Scheme, u.Host); err != nil {
		return fmt.Errorf("rtsp %s: %w", cfg.RTSP, err)
	}
	s.closeFn = func() error { c.Close(); return nil }
	desc, _, err := c.Describe(u)
	if err != nil {
		return fmt.Errorf("rtsp describe: %w", err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		return fmt.Errorf("rtsp setup: %w", err)
	}
	var lastPLI time.Time
	c.OnPacketRTPAny(func(m *description.Media, f format.Format, pkt *rtp.Packet) {
		isVideo := m.Type == description.MediaTypeVideo
		keyframeStart := h264KeyframeStart
		if strings.EqualFold(f.Codec(), "VP8") {
			keyframeStart = vp8KeyframeStart
		}
		s.onRTP(isVideo, pkt.SequenceNumber, pkt.Payload, keyframeStart, &lastPLI, func() {
			_ = c.WritePacketRTCP(m, &rtcp.PictureLossIndication{MediaSSRC: pkt.SSRC})
		}, pkt.SSRC, 0)
	})
	if _, err := c.Play(nil); err != nil {
		return fmt.Errorf("rtsp play: %w", err)
	}
	if !s.enter() {
		return fmt.Errorf("subscriber closed")
	}
	go func() {
		defer s.wg.Done()
		err := c.Wait()
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if !closing && err != nil {
			s.dropped.Store(true)
		}
	}()
	return nil
}
