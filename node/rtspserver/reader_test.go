package rtspserver

import (
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtpmpeg4audio"
	"github.com/pion/rtp"
)

// rtspReader is a gortsplib client playing a stream. It decodes H264 into access units (checking
// that every IDR comes with SPS and PPS) and AAC into access units.
type rtspReader struct {
	c    *gortsplib.Client
	desc *description.Session

	mu            sync.Mutex
	packets       map[string]int // per codec
	h264AUs       int
	h264IDRs      int
	idrWithoutPS  int // IDR access units without SPS and PPS in them
	aacAUs        int
	h264Media     *description.Media
	h264Format    *format.H264
	mpeg4Format   *format.MPEG4Audio
	codecsOffered []string
}

func newRTSPReader(t *testing.T, url string, transport gortsplib.Transport) *rtspReader {
	t.Helper()
	r, err := dialRTSPReader(url, transport)
	if err != nil {
		t.Fatalf("play %s: %v", url, err)
	}
	t.Cleanup(r.Close)
	return r
}

func dialRTSPReader(url string, transport gortsplib.Transport) (*rtspReader, error) {
	u, err := base.ParseURL(url)
	if err != nil {
		return nil, err
	}
	r := &rtspReader{packets: map[string]int{}}
	r.c = &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &transport}
	if err := r.c.Start2(); err != nil {
		return nil, err
	}
	desc, _, err := r.c.Describe(u)
	if err != nil {
		r.c.Close()
		return nil, err
	}
	r.desc = desc
	for _, m := range desc.Medias {
		for _, f := range m.Formats {
			r.codecsOffered = append(r.codecsOffered, f.Codec())
		}
	}
	if err := r.c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		r.c.Close()
		return nil, err
	}
	var h264Dec *rtph264.Decoder
	if m := desc.FindFormat(&r.h264Format); m != nil {
		r.h264Media = m
		if h264Dec, err = r.h264Format.CreateDecoder(); err != nil {
			r.c.Close()
			return nil, err
		}
	}
	var aacDec *rtpmpeg4audio.Decoder
	if m := desc.FindFormat(&r.mpeg4Format); m != nil {
		if aacDec, err = r.mpeg4Format.CreateDecoder(); err != nil {
			r.c.Close()
			return nil, err
		}
	}
	r.c.OnPacketRTPAny(func(_ *description.Media, f format.Format, pkt *rtp.Packet) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.packets[f.Codec()]++
		switch f.(type) {
		case *format.H264:
			au, err := h264Dec.Decode(pkt)
			if err != nil {
				return
			}
			r.h264AUs++
			var idr, sps, pps bool
			for _, n := range au {
				switch n[0] & 0x1f {
				case nalIDR:
					idr = true
				case nalSPS:
					sps = true
				case nalPPS:
					pps = true
				}
			}
			if idr {
				r.h264IDRs++
				if !sps || !pps {
					r.idrWithoutPS++
				}
			}
		case *format.MPEG4Audio:
			aus, err := aacDec.Decode(pkt)
			if err == nil {
				r.aacAUs += len(aus)
			}
		}
	})
	if _, err := r.c.Play(nil); err != nil {
		r.c.Close()
		return nil, err
	}
	return r, nil
}

func (r *rtspReader) Close() { r.c.Close() }

type readerCounts struct {
	packets                    map[string]int
	h264AUs, h264IDRs, badIDRs int
	aacAUs                     int
}

func (r *rtspReader) counts() readerCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := map[string]int{}
	for k, v := range r.packets {
		p[k] = v
	}
	return readerCounts{packets: p, h264AUs: r.h264AUs, h264IDRs: r.h264IDRs, badIDRs: r.idrWithoutPS, aacAUs: r.aacAUs}
}

// waitCounts polls until ok accepts the reader's counts.
func (r *rtspReader) waitCounts(t *testing.T, what string, timeout time.Duration, ok func(readerCounts) bool) readerCounts {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := r.counts()
		if ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %v: %+v", what, timeout, c)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
