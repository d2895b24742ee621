package loadtest

import (
	"time"
)

// report builds the Report from the joined subscribers and the window's readings.
func (r *run) report(w *window) *Report {
	measured := w.end.Sub(w.start)
	rep := &Report{
		Server:          r.cfg.Server,
		Stream:          r.cfg.Stream,
		StartedAt:       w.started,
		VideoBitrate:    r.cfg.VideoBitrate,
		RampPerSecond:   r.cfg.RampPerSecond,
		RampSeconds:     w.rampTime.Seconds(),
		WarmupSeconds:   r.cfg.Warmup.Seconds(),
		MeasuredSeconds: measured.Seconds(),
		Interrupted:     w.interrupted,
		Subscribers:     SubscriberCounts{Requested: r.cfg.Subscribers},
	}

	var recv *ReceiveStats
	if r.cfg.protocol() == ProtoWHEP {
		recv = &ReceiveStats{Direct: !r.subAPIs.pionReceive}
		if g := r.subAPIs.gro; g != nil {
			recv.GRO, recv.GROReads, recv.GRODatagrams = true, g.reads.Load(), g.datagrams.Load()
		}
	}
	var ttff, ttfk []time.Duration
	var video, audio, all, videoSock, audioSock, allSock histogram
	var vseq, aseq seqCounter
	for _, s := range r.subs {
		if s.setupErr != nil {
			rep.Subscribers.Failed++
			if rep.Subscribers.FailureCauses == nil {
				rep.Subscribers.FailureCauses = map[string]int{}
			}
			rep.Subscribers.FailureCauses[failureCause(s.setupErr)]++
			continue
		}
		rep.Subscribers.Connected++
		if s.dropped.Load() {
			rep.Subscribers.Dropped++
		}
		if d := s.firstVideo.Load(); d > 0 {
			ttff = append(ttff, time.Duration(d))
		} else {
			rep.Subscribers.NoVideo++
		}
		if d := s.firstKeyframe.Load(); d > 0 {
			ttfk = append(ttfk, time.Duration(d))
		}
		video.merge(&s.video.delay)
		audio.merge(&s.audio.delay)
		videoSock.merge(&s.video.socketDelay)
		audioSock.merge(&s.audio.socketDelay)
		addSeq(&vseq, &s.video.seq)
		addSeq(&aseq, &s.audio.seq)
		if recv != nil {
			viaPion, viaDirect := s.receiveCounts()
			recv.PionPackets += viaPion
			recv.DirectPackets += viaDirect
			if viaDirect > 0 {
				recv.DirectSubscribers++
			}
			if s.direct != nil {
				recv.DirectErrors += s.direct.undecryptable()
			}
		}
	}
	rep.Receive = recv
	all.merge(&video)
	all.merge(&audio)
	allSock.merge(&videoSock)
	allSock.merge(&audioSock)
	rep.TimeToFirstFrame = exactPercentiles(ttff)
	rep.TimeToKeyframe = exactPercentiles(ttfk)
	rep.Delay = all.percentiles()
	rep.SocketDelay = allSock.percentiles()
	rep.Video = mediaStats(&vseq, &video, &videoSock)
	rep.Audio = mediaStats(&aseq, &audio, &audioSock)
	rep.LossPercent = lossPercent(rep.Video.Packets+rep.Audio.Packets, rep.Video.Lost+rep.Audio.Lost)

	if r.cfg.NodeMetrics != "" {
		rep.NodeFanoutDelay = fanoutDelay(r.cfg.NodeMetrics, w.fanoutFirst, w.fanoutLast)
	}
	if !r.cfg.NoPublish {
		rep.Publisher = publisherStats(w.pubFirst, w.pubLast, r.pub.Failed())
		rep.Publisher.Pacer = r.pub.pacerStats()
		rep.Publisher.WriteDelay = r.pub.writeDelays()
	}
	forwarded := rep.Video.Packets + rep.Audio.Packets
	var total ProcessUsage
	for i, pid := range r.cfg.PIDs {
		u := processUsage(w.baseline[i], w.first[i], w.last[i], rep.Subscribers.Connected, forwarded)
		u.PID = pid
		rep.ServerProcesses = append(rep.ServerProcesses, u)
		total.CPUSeconds += u.CPUSeconds
		total.RSSBaselineBytes += u.RSSBaselineBytes
		total.RSSStartBytes += u.RSSStartBytes
		total.RSSEndBytes += u.RSSEndBytes
		if u.Error != "" {
			total.Error = u.Error
		}
	}
	if len(r.cfg.PIDs) > 1 {
		total.CPUCores = perSecond(total.CPUSeconds, measured)
		total.MillicoresPerSubscriber = perSubscriber(total.CPUCores*1000, rep.Subscribers.Connected)
		if forwarded > 0 {
			total.CPUMicrosPerPacket = total.CPUSeconds * 1e6 / float64(forwarded)
		}
		total.RSSPerSubscriberBytes = perSubscriber(float64(total.RSSEndBytes-total.RSSBaselineBytes),
			rep.Subscribers.Connected)
		rep.ServerTotal = &total
	}
	rep.LoadTool = Usage{
		CPUSeconds:  (w.selfLast.cpu - w.selfFirst.cpu).Seconds(),
		CPUCores:    perSecond((w.selfLast.cpu - w.selfFirst.cpu).Seconds(), w.selfLast.at.Sub(w.selfFirst.at)),
		MaxRSSBytes: w.selfLast.maxRSS,
	}
	return rep
}

// addSeq folds one track's counts into a total (only the totals matter, not the numbering).
func addSeq(total, c *seqCounter) {
	total.prevExpected += c.expected()
	total.prevReceived += c.receivedTotal()
	total.resets += c.resets
}

func mediaStats(c *seqCounter, h, sock *histogram) MediaStats {
	got, lost := c.receivedTotal(), c.lost()
	return MediaStats{
		Packets:     got,
		Lost:        lost,
		LossPercent: lossPercent(got, lost),
		Delay:       h.percentiles(),
		SocketDelay: sock.percentiles(),
		SeqResets:   c.resets,
	}
}

func lossPercent(received, lost uint64) float64 {
	if received+lost == 0 {
		return 0
	}
	return 100 * float64(lost) / float64(received+lost)
}

// perSecond returns v per second of d, or 0 for an empty interval.
func perSecond(v float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return v / d.Seconds()
}

func perSubscriber(v float64, subscribers int) float64 {
	if subscribers == 0 {
		return 0
	}
	return v / float64(subscribers)
}

func publisherStats(first, last publisherSnapshot, failed bool) *PublisherStats {
	p := &PublisherStats{
		VideoPackets:          last.videoPackets - first.videoPackets,
		AudioPackets:          last.audioPackets - first.audioPackets,
		Keyframes:             last.keyframes - first.keyframes,
		KeyframeRequests:      last.keyframeRequests - first.keyframeRequests,
		KeyframeRequestsTotal: last.keyframeRequests,
		WriteErrors:           last.writeErrors,
		ConnectionFailed:      failed,
	}
	p.VideoBitrate = perSecond(float64(last.videoBytes-first.videoBytes)*8, last.at.Sub(first.at))
	return p
}

// processUsage computes one server process's figures from its three samples.
func processUsage(baseline, first, last procSample, subscribers int, forwarded uint64) ProcessUsage {
	for _, s := range []procSample{baseline, first, last} {
		if s.err != nil {
			return ProcessUsage{Error: s.err.Error()}
		}
	}
	cpu := (last.cpu - first.cpu).Seconds()
	u := ProcessUsage{
		CPUSeconds:       cpu,
		CPUCores:         perSecond(cpu, last.at.Sub(first.at)),
		RSSBaselineBytes: baseline.rss,
		RSSStartBytes:    first.rss,
		RSSEndBytes:      last.rss,
	}
	u.MillicoresPerSubscriber = perSubscriber(u.CPUCores*1000, subscribers)
	if forwarded > 0 {
		u.CPUMicrosPerPacket = cpu * 1e6 / float64(forwarded)
	}
	u.RSSPerSubscriberBytes = perSubscriber(float64(last.rss-baseline.rss), subscribers)
	return u
}
