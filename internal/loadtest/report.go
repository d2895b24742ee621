package loadtest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is the result of a Run. Durations are in milliseconds, rates in bits per second, memory
// in bytes, CPU in seconds or cores (CPU seconds per wall-clock second).
type Report struct {
	Server        string    `json:"server"`
	Stream        string    `json:"stream"`
	StartedAt     time.Time `json:"started_at"`
	VideoBitrate  Bitrate   `json:"video_bitrate_bps"`
	RampPerSecond float64   `json:"ramp_per_second"`
	// RampSeconds runs from the first subscriber's start until every one connected or failed.
	RampSeconds     float64 `json:"ramp_seconds"`
	WarmupSeconds   float64 `json:"warmup_seconds"`
	MeasuredSeconds float64 `json:"measured_seconds"`
	// Interrupted is set when the run was cancelled inside the measurement window.
	Interrupted bool `json:"interrupted,omitempty"`

	Subscribers SubscriberCounts `json:"subscribers"`
	// TimeToFirstFrame runs from a subscriber's POST to its first video packet.
	TimeToFirstFrame Percentiles `json:"time_to_first_frame"`
	// TimeToKeyframe runs from a subscriber's POST to the first packet of a keyframe.
	TimeToKeyframe Percentiles `json:"time_to_keyframe"`
	// Delay is the one-way delay of stamped video and audio packets, publisher packet out to
	// subscriber read, inside the measurement window. A WHIP publisher's packet is out when its
	// datagram goes to the socket (Publisher.WriteDelay is the time before that, in the load
	// tool's own send path); an SRT publisher's when it is stamped.
	Delay Percentiles `json:"delay"`
	// SocketDelay is the same delay to the moment the kernel put the packet in the subscriber's
	// socket (its receive timestamp): the delay the node and the network add, without the wait
	// for the load tool's own reading (WHEP subscribers only).
	SocketDelay Percentiles `json:"socket_delay"`
	Video       MediaStats  `json:"video"`
	Audio       MediaStats  `json:"audio"`
	LossPercent float64     `json:"loss_percent"`
	// NodeFanoutDelay is the node's own share of Delay, hub to kernel, from its metrics
	// (Config.NodeMetrics); nil when they are not scraped.
	NodeFanoutDelay *FanoutDelay `json:"node_fanout_delay,omitempty"`

	Publisher *PublisherStats `json:"publisher,omitempty"`
	// ServerProcesses has one entry per --pid; ServerTotal sums them when there are several.
	ServerProcesses []ProcessUsage `json:"server_processes,omitempty"`
	ServerTotal     *ProcessUsage  `json:"server_total,omitempty"`
	LoadTool        Usage          `json:"load_tool"`
	// Receive is how the WHEP subscribers' media was read, over the whole run; nil for SRT and
	// RTSP subscribers.
	Receive *ReceiveStats `json:"receive,omitempty"`
}

// ReceiveStats counts the WHEP subscribers' packets by the path that read them: pion's receive
// chain, or the sockets' read loops, which decrypt adopted tracks' SRTP themselves (direct).
type ReceiveStats struct {
	// Direct is false with Config.PionReceive or ReceiverReports.
	Direct bool `json:"direct"`
	// DirectSubscribers had media read directly (the others' keys were not found).
	DirectSubscribers int    `json:"direct_subscribers"`
	PionPackets       uint64 `json:"pion_packets"`
	DirectPackets     uint64 `json:"direct_packets"`
	// DirectErrors counts adopted packets that did not decrypt; they were dropped (so lost).
	DirectErrors uint64 `json:"direct_errors,omitempty"`
	// GRO is whether the sockets took UDP GRO (Config.GRO); GROReads counts the reads that
	// returned more than one datagram (a server's UDP GSO run), GRODatagrams those datagrams.
	GRO          bool   `json:"gro"`
	GROReads     uint64 `json:"gro_reads"`
	GRODatagrams uint64 `json:"gro_datagrams"`
}

// SubscriberCounts counts WHEP subscribers by outcome.
type SubscriberCounts struct {
	Requested int `json:"requested"`
	// Connected subscribers completed ICE and DTLS.
	Connected int `json:"connected"`
	// Failed subscribers did not connect; FailureCauses splits them by cause.
	Failed        int            `json:"failed"`
	FailureCauses map[string]int `json:"failure_causes,omitempty"`
	// Dropped subscribers connected, then lost the connection before the end of the run.
	Dropped int `json:"dropped"`
	// NoVideo subscribers connected but received no video packet.
	NoVideo int `json:"no_video"`
}

// Percentiles summarises a distribution of durations, in milliseconds.
type Percentiles struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P95Ms  float64 `json:"p95_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// MediaStats is what all subscribers received of one kind of track inside the window.
type MediaStats struct {
	Packets     uint64      `json:"packets"`
	Lost        uint64      `json:"lost"`
	LossPercent float64     `json:"loss_percent"`
	Delay       Percentiles `json:"delay"`
	SocketDelay Percentiles `json:"socket_delay"`
	// SeqResets counts jumps in sequence numbers too large to be loss (a restarted stream).
	SeqResets uint64 `json:"seq_resets,omitempty"`
}

// PublisherStats is what the publisher sent inside the window.
type PublisherStats struct {
	VideoPackets     uint64  `json:"video_packets"`
	AudioPackets     uint64  `json:"audio_packets"`
	VideoBitrate     float64 `json:"video_bitrate_bps"`
	Keyframes        uint64  `json:"keyframes"`
	KeyframeRequests uint64  `json:"keyframe_requests"`
	// KeyframeRequestsTotal counts PLI and FIR over the whole run, ramp included.
	KeyframeRequestsTotal uint64 `json:"keyframe_requests_total"`
	WriteErrors           uint64 `json:"write_errors,omitempty"`
	ConnectionFailed      bool   `json:"connection_failed,omitempty"`
	// Pacer is the WHIP publisher's video pacer; nil for SRT ingest, which SRT paces.
	Pacer *PacerStats `json:"pacer,omitempty"`
	// WriteDelay is how long the WHIP publisher's stamped packets took from their stamp to the
	// socket (pion's send path in the load tool), left out of Delay and SocketDelay; nil for SRT
	// ingest, measured from the stamp.
	WriteDelay *Percentiles `json:"write_delay,omitempty"`
}

// PacerStats describes the publisher's video pacer and what it added before the packets left:
// Delay starts when a packet is written, after its wait here.
type PacerStats struct {
	// Factor is Config.Pacing: video leaves at Factor × the video bitrate; 0 is no pacing (each
	// frame's packets back to back).
	Factor float64 `json:"factor"`
	// RateBps is the pacing rate, Factor × the video bitrate; 0 without pacing.
	RateBps float64 `json:"rate_bps"`
	// BurstMs is how much of the pacing rate may leave at once.
	BurstMs float64 `json:"burst_ms"`
	// Wait is how long video packets waited, from their frame's due time to their write, inside
	// the window: the pacer's queueing (a keyframe's tail, and the frames queued behind it), plus
	// the send loop's own lateness, which is all there is without pacing.
	Wait Percentiles `json:"wait"`
}

// ProcessUsage is a server process's CPU inside the window and its memory growth over the run.
type ProcessUsage struct {
	PID        int     `json:"pid,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUCores   float64 `json:"cpu_cores"`
	// MillicoresPerSubscriber is CPUCores per connected subscriber, in thousandths of a core.
	MillicoresPerSubscriber float64 `json:"millicores_per_subscriber"`
	// CPUMicrosPerPacket is CPU time per RTP packet received by the subscribers.
	CPUMicrosPerPacket float64 `json:"cpu_us_per_forwarded_packet"`
	// RSS before the first subscriber, at the start and at the end of the window.
	RSSBaselineBytes int64 `json:"rss_baseline_bytes"`
	RSSStartBytes    int64 `json:"rss_start_bytes"`
	RSSEndBytes      int64 `json:"rss_end_bytes"`
	// RSSPerSubscriberBytes is (end − baseline) RSS per connected subscriber.
	RSSPerSubscriberBytes float64 `json:"rss_per_subscriber_bytes"`
	Error                 string  `json:"error,omitempty"`
}

// Usage is the load tool's own CPU inside the window and its peak memory.
type Usage struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUCores    float64 `json:"cpu_cores"`
	MaxRSSBytes int64   `json:"max_rss_bytes"`
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-18s "+format+"\n", append([]any{label}, args...)...)
	}
	fmt.Fprintf(&b, "streamfleet loadtest  %s  stream %s  video %s H264 + Opus\n", r.Server, r.Stream, r.VideoBitrate)
	window := fmt.Sprintf("%.1f s measured after %.1f s ramp and %.1f s warm-up", r.MeasuredSeconds, r.RampSeconds, r.WarmupSeconds)
	if r.Interrupted {
		window += " (interrupted)"
	}
	line("window", "%s", window)
	s := r.Subscribers
	line("subscribers", "%d requested at %g/s: %d connected, %d failed%s, %d dropped, %d without video",
		s.Requested, r.RampPerSecond, s.Connected, s.Failed, causes(s.FailureCauses), s.Dropped, s.NoVideo)
	line("time to 1st frame", "%s", pct(r.TimeToFirstFrame))
	line("time to keyframe", "%s", pct(r.TimeToKeyframe))
	line("delay", "%s", pct(r.Delay))
	line("  video", "%s", pct(r.Video.Delay))
	line("  audio", "%s", pct(r.Audio.Delay))
	if r.SocketDelay.Count > 0 {
		line("delay to socket", "%s", pct(r.SocketDelay))
		line("  video", "%s", pct(r.Video.SocketDelay))
		line("  audio", "%s", pct(r.Audio.SocketDelay))
	}
	if f := r.NodeFanoutDelay; f != nil {
		line("node fan-out", "%s", fanout(*f))
	}
	line("packets", "%d received, %d lost (%.3f %%); video %d/%d, audio %d/%d",
		r.Video.Packets+r.Audio.Packets, r.Video.Lost+r.Audio.Lost, r.LossPercent,
		r.Video.Packets, r.Video.Lost, r.Audio.Packets, r.Audio.Lost)
	if p := r.Publisher; p != nil {
		failed := ""
		if p.ConnectionFailed {
			failed = ", CONNECTION FAILED"
		}
		line("publisher", "video %.2f Mbit/s, %d video + %d audio packets, %d keyframes, %d keyframe requests (%d in all)%s",
			p.VideoBitrate/1e6, p.VideoPackets, p.AudioPackets, p.Keyframes, p.KeyframeRequests,
			p.KeyframeRequestsTotal, failed)
		if p.Pacer != nil {
			line("pacer", "%s", pacerText(*p.Pacer))
		}
		if p.WriteDelay != nil && p.WriteDelay.Count > 0 {
			line("publisher write", "%s (stamp to socket, not in the delays)", pct(*p.WriteDelay))
		}
	}
	for _, p := range r.ServerProcesses {
		line(fmt.Sprintf("server pid %d", p.PID), "%s", usage(p))
	}
	if r.ServerTotal != nil {
		line("server total", "%s", usage(*r.ServerTotal))
	}
	line("load tool", "CPU %.2f cores (%.1f s), max RSS %s", r.LoadTool.CPUCores, r.LoadTool.CPUSeconds,
		mib(r.LoadTool.MaxRSSBytes))
	if rc := r.Receive; rc != nil {
		if rc.Direct {
			line("receive", "direct for %d of %d subscribers: %d packets decrypted in the socket read loop, %d through pion; %d undecryptable",
				rc.DirectSubscribers, r.Subscribers.Connected, rc.DirectPackets, rc.PionPackets, rc.DirectErrors)
		} else {
			line("receive", "pion's receive chain: %d packets", rc.PionPackets)
		}
		if rc.GRO {
			line("  UDP GRO", "%d reads carried %d datagrams of the server's GSO runs", rc.GROReads, rc.GRODatagrams)
		} else {
			line("  UDP GRO", "off")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func pct(p Percentiles) string {
	if p.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %.1f ms  p95 %.1f ms  p99 %.1f ms  max %.1f ms  (%d samples)",
		p.P50Ms, p.P95Ms, p.P99Ms, p.MaxMs, p.Count)
}

func pacerText(p PacerStats) string {
	how := "off, frames back to back"
	if p.Factor > 0 {
		how = fmt.Sprintf("%g × bitrate = %.2f Mbit/s, %s ms burst", p.Factor, p.RateBps/1e6, msShort(p.BurstMs))
	}
	return how + "; video packets waited " + pct(p.Wait)
}

func fanout(f FanoutDelay) string {
	switch {
	case f.Error != "":
		return "unavailable: " + f.Error
	case f.Count == 0:
		return "no datagrams (hub → kernel)"
	}
	above := ""
	if f.Above > 0 {
		above = fmt.Sprintf(", %d above %s ms", f.Above, msShort(f.AboveMs))
	}
	return fmt.Sprintf("p50 %s ms  p95 %s ms  p99 %s ms  mean %s ms  (%d datagrams%s; hub → kernel)",
		msShort(f.P50Ms), msShort(f.P95Ms), msShort(f.P99Ms), msShort(f.MeanMs), f.Count, above)
}

// msShort formats milliseconds compactly: 0.21, 1.9, 12.5, 102.
func msShort(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func usage(p ProcessUsage) string {
	if p.Error != "" {
		return "unavailable: " + p.Error
	}
	return fmt.Sprintf("CPU %.2f cores, %.2f millicores/subscriber, %.2f µs/forwarded packet; RSS %s → %s → %s, %+.0f KiB/subscriber",
		p.CPUCores, p.MillicoresPerSubscriber, p.CPUMicrosPerPacket,
		mib(p.RSSBaselineBytes), mib(p.RSSStartBytes), mib(p.RSSEndBytes), p.RSSPerSubscriberBytes/1024)
}

func causes(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
