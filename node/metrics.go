package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtspserver"
	"github.com/streamfleet/streamfleet/node/srtserver"
	"github.com/streamfleet/streamfleet/node/webrtcserver"
	"github.com/streamfleet/streamfleet/transcode"
)

// newRegistry builds the node's Prometheus registry. Every figure is read from the components'
// own counters at scrape time, so the hot path only bumps atomics.
func newRegistry(id string, role Role, h *hub.Hub, w *webrtcserver.Server) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labels := prometheus.Labels{"node": id, "role": string(role)}
	counter := func(name, help string, f func() uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "streamfleet", Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(f()) }))
	}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "streamfleet", Name: name, Help: help, ConstLabels: labels,
		}, f))
	}
	hs, ws := h.Stats(), w.Stats()
	gauge("streams", "Streams on the node, live or waiting for their publisher.", func() float64 { return float64(len(h.Streams())) })
	gauge("whip_sessions", "Open WHIP (publisher) sessions.", func() float64 { return float64(ws.WHIPSessions.Load()) })
	gauge("whep_sessions", "Open WHEP (viewer) sessions.", func() float64 { return float64(ws.WHEPSessions.Load()) })
	counter("ingest_packets_total", "RTP packets received from publishers.", hs.PacketsIn.Load)
	counter("ingest_bytes_total", "RTP bytes received from publishers.", hs.BytesIn.Load)
	counter("reader_drops_total", "Packets readers lost because they fell behind.", hs.ReaderDrops.Load)
	counter("keyframe_requests_total", "Keyframe requests made by readers, before coalescing.", hs.KeyframeRequests.Load)
	counter("keyframe_requests_sent_total", "Keyframe requests sent to publishers, after coalescing.", hs.KeyframeRequestsSent.Load)
	counter("webrtc_packets_out_total", "RTP packets sent to WHEP viewers.", ws.PacketsOut.Load)
	counter("webrtc_bytes_out_total", "RTP bytes sent to WHEP viewers.", ws.BytesOut.Load)
	counter("webrtc_retransmissions_total", "Packets resent to viewers from the shared history after a NACK.", ws.Retransmissions.Load)
	counter("webrtc_sessions_rejected_total", "WHIP and WHEP requests refused with an error.", ws.SessionsRejected.Load)
	counter("webrtc_sessions_timed_out_total", "Sessions closed because the peer never connected.", ws.SessionsTimedOut.Load)
	counter("webrtc_keyframe_requests_in_total", "PLI and FIR received from viewers.", ws.KeyframeRequestsIn.Load)
	counter("webrtc_send_batches_total", "sendmmsg calls carrying RTP to viewers.", ws.SendBatches.Load)
	counter("webrtc_batched_packets_total", "RTP datagrams to viewers sent in sendmmsg batches.", ws.BatchedPackets.Load)
	counter("webrtc_send_errors_total", "RTP datagrams to viewers the kernel refused.", ws.SendErrors.Load)
	counter("webrtc_send_buffer_waits_total", "Times a fan-out batch found the UDP socket's send buffer full and waited for room.", ws.SendBufferWaits.Load)
	counter("webrtc_gso_messages_total", "Messages that carried several datagrams to one viewer (UDP GSO).", ws.GSOMessages.Load)
	counter("webrtc_packet_ring_datagrams_total", "RTP datagrams to viewers sent through AF_PACKET rings (--packet-send).", ws.PacketRingDatagrams.Load)
	counter("webrtc_packet_ring_full_total", "RTP datagrams that found a packet ring full and went by the UDP socket.", ws.PacketRingFull.Load)
	counter("webrtc_packet_ring_errors_total", "Packet-path sends (ring kicks and messages) the kernel refused.", ws.PacketRingErrors.Load)
	counter("webrtc_packet_message_datagrams_total", "RTP datagrams to viewers sent in messages through packet sockets (--packet-send): runs to one viewer, and what follows one.", ws.PacketMessageDatagrams.Load)
	counter("webrtc_packet_gso_messages_total", "Messages through packet sockets that carried a run of datagrams for the kernel to cut (UDP GSO).", ws.PacketGSOMessages.Load)
	counter("webrtc_packet_message_waits_total", "Flushes whose packet-socket messages found its send buffer full and went on by the UDP socket.", ws.PacketMessagesWaits.Load)
	counter("webrtc_packet_ring_waits_total", "Times a packet ring's frames had to wait for the device's queue to drain.", ws.PacketRingWaits.Load)
	counter("webrtc_gso_disabled_total", "Send batches that found UDP GSO refused (by the UDP socket, or for the packet path's messages) and went on without it.", ws.GSODisabled.Load)
	counter("webrtc_own_srtp_viewers_total", "Viewers whose RTP the node encrypted itself (its first packet matched pion's).", ws.OwnSRTPViewers.Load)
	reg.MustRegister(&delayCollector{h: &ws.FanoutDelay, desc: prometheus.NewDesc("streamfleet_webrtc_fanout_delay_seconds",
		"Time from a packet's arrival in the hub to the return of the sendmmsg (or packet ring send) carrying it to a viewer, per datagram.", nil, labels)})
	counter("webrtc_own_srtp_fallbacks_total", "Viewers whose RTP was left to pion because the node's encryption did not match.", ws.OwnSRTPFallbacks.Load)
	return reg
}

// delayCollector reports a webrtcserver.DelayHistogram as a Prometheus histogram.
type delayCollector struct {
	h    *webrtcserver.DelayHistogram
	desc *prometheus.Desc
}

func (c *delayCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *delayCollector) Collect(ch chan<- prometheus.Metric) {
	bounds, cumulative, count, sum := c.h.Snapshot()
	buckets := make(map[float64]uint64, len(bounds))
	for i, b := range bounds {
		buckets[b] = cumulative[i]
	}
	ch <- prometheus.MustNewConstHistogram(c.desc, count, sum, buckets)
}

// registerTranscodeMetrics adds the transcoders' figures to reg.
func registerTranscodeMetrics(reg *prometheus.Registry, id string, role Role, tc *transcode.Supervisor) {
	labels := prometheus.Labels{"node": id, "role": string(role)}
	st := tc.Stats()
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "streamfleet", Name: "transcoders_running",
			Help: "Transcoders (one ffmpeg each) running now.", ConstLabels: labels},
			func() float64 { return float64(st.Running.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "transcoder_starts_total",
			Help: "ffmpeg processes started by transcoders.", ConstLabels: labels},
			func() float64 { return float64(st.Started.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "transcoder_failures_total",
			Help: "ffmpeg processes that died while needed or could not start.", ConstLabels: labels},
			func() float64 { return float64(st.Failures.Load()) }),
	)
}

// registerRTSPMetrics adds the RTSP server's figures to reg.
func registerRTSPMetrics(reg *prometheus.Registry, id string, role Role, rs *rtspserver.Server) {
	labels := prometheus.Labels{"node": id, "role": string(role)}
	st := rs.Stats()
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "streamfleet", Name: "rtsp_sessions",
			Help: "Open RTSP sessions by direction: publish (RECORD) or read (PLAY).", ConstLabels: mergeLabels(labels, "direction", "publish")},
			func() float64 { return float64(st.PublishSessions.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "streamfleet", Name: "rtsp_sessions",
			Help: "Open RTSP sessions by direction: publish (RECORD) or read (PLAY).", ConstLabels: mergeLabels(labels, "direction", "read")},
			func() float64 { return float64(st.ReadSessions.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "rtsp_sessions_rejected_total",
			Help: "RTSP requests refused: bad stream name, token, SDP or codec, busy or unknown stream.", ConstLabels: labels},
			func() float64 { return float64(st.SessionsRejected.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "streamfleet", Name: "rtsp_streams",
			Help: "RTSP server streams open: one per hub stream with RTSP readers, however many readers.", ConstLabels: labels},
			func() float64 { return float64(st.ServerStreams.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "rtsp_packets_in_total",
			Help: "RTP packets received from RTSP publishers.", ConstLabels: labels},
			func() float64 { return float64(st.PacketsIn.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "rtsp_packets_out_total",
			Help: "RTP packets written to RTSP server streams (once per stream, not per reader).", ConstLabels: labels},
			func() float64 { return float64(st.PacketsOut.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "rtsp_h264_parameter_sets_inserted_total",
			Help: "SPS/PPS packets inserted before H264 IDRs that arrived without them.", ConstLabels: labels},
			func() float64 { return float64(st.ParamSetsAdded.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "rtsp_reader_queue_drops_total",
			Help: "Packets RTSP readers lost because their write queue was full.", ConstLabels: labels},
			func() float64 { return float64(st.ReaderQueueFull.Load()) }),
	)
}

// registerSRTMetrics adds the SRT server's and its MPEG-TS conversion's figures to reg.
func registerSRTMetrics(reg *prometheus.Registry, id string, role Role, ss *srtserver.Server) {
	labels := prometheus.Labels{"node": id, "role": string(role)}
	st := ss.Stats()
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "streamfleet", Name: "srt_sessions",
			Help: "Open SRT sessions by direction: publish or read.", ConstLabels: mergeLabels(labels, "direction", "publish")},
			func() float64 { return float64(st.PublishSessions.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "streamfleet", Name: "srt_sessions",
			Help: "Open SRT sessions by direction: publish or read.", ConstLabels: mergeLabels(labels, "direction", "read")},
			func() float64 { return float64(st.ReadSessions.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "srt_bytes_out_total",
			Help: "MPEG-TS bytes sent to SRT readers.", ConstLabels: labels},
			func() float64 { return float64(st.BytesOut.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "srt_write_errors_total",
			Help: "MPEG-TS chunks an SRT reader's send queue refused.", ConstLabels: labels},
			func() float64 { return float64(st.WriteErrors.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "mpegts_errors_total",
			Help: "Unusable MPEG-TS input skipped: garbage before sync bytes, broken packets or PES, frames that failed to packetize.", ConstLabels: labels},
			func() float64 { return float64(st.TS.TSErrors.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "mpegts_bframe_refusals_total",
			Help: "MPEG-TS inputs refused because their video has B-frames, which WebRTC cannot play.", ConstLabels: labels},
			func() float64 { return float64(st.TS.BFrameRefusals.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "mpegts_skipped_tracks_total",
			Help: "MPEG-TS input tracks left out for an unsupported codec or missing parameters.", ConstLabels: labels},
			func() float64 { return float64(st.TS.SkippedTracks.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "mpegts_keyframe_requests_total",
			Help: "Keyframe requests for MPEG-TS inputs, which cannot be passed on to the encoder.", ConstLabels: labels},
			func() float64 { return float64(st.TS.KeyframeRequests.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "streamfleet", Name: "mpegts_muxers",
			Help: "MPEG-TS muxers running: one per stream read over SRT, however many readers.", ConstLabels: labels},
			func() float64 { return float64(st.TS.MuxersRunning.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "mpegts_reader_drops_total",
			Help: "MPEG-TS chunks dropped because an SRT reader fell behind.", ConstLabels: labels},
			func() float64 { return float64(st.TS.SubscriberDrops.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "mpegts_mux_errors_total",
			Help: "RTP packets or frames the MPEG-TS muxer could not convert.", ConstLabels: labels},
			func() float64 { return float64(st.TS.MuxErrors.Load()) }),
	)
	for _, reason := range srtserver.RejectReasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "srt_sessions_rejected_total",
			Help: "SRT connection requests refused at handshake, by reason.", ConstLabels: mergeLabels(labels, "reason", reason)},
			func() float64 { return float64(st.Rejected(reason)) }))
	}
}

func mergeLabels(base prometheus.Labels, k, v string) prometheus.Labels {
	out := prometheus.Labels{k: v}
	for bk, bv := range base {
		out[bk] = bv
	}
	return out
}
