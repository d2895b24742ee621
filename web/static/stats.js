// Turns an RTCStatsReport into the flat numbers of window.sf.stats, and shows
// them as a definition list.

/** Computes bitrates from byte counters sampled over time. */
export class Rates {
  #previous = new Map();

  /** Bits per second of the counter `key` since its previous sample. */
  bitrate(key, bytes, timestampMs) {
    if (bytes == null) return 0;
    const prev = this.#previous.get(key);
    this.#previous.set(key, { bytes, timestampMs });
    if (!prev || timestampMs <= prev.timestampMs || bytes < prev.bytes) return 0;
    return Math.round(((bytes - prev.bytes) * 8000) / (timestampMs - prev.timestampMs));
  }
}

const statsOfType = (report, type) => [...report.values()].filter((s) => s.type === type);
const codecOf = (report, stat) => report.get(stat?.codecId)?.mimeType ?? '';
const toMs = (seconds) => (seconds == null ? null : Math.round(seconds * 10000) / 10);
const sumOf = (stats, key) => stats.reduce((n, s) => n + (s[key] ?? 0), 0);

/** The candidate pair in use, if any. */
function selectedPair(report) {
  for (const transport of statsOfType(report, 'transport')) {
    const pair = report.get(transport.selectedCandidatePairId);
    if (pair) return pair;
  }
  return statsOfType(report, 'candidate-pair').find((p) => p.nominated && p.state === 'succeeded');
}

/** The numbers of a receiving (WHEP) peer connection. */
export function receiverStats(report, rates) {
  const inbound = statsOfType(report, 'inbound-rtp');
  const video = inbound.find((s) => s.kind === 'video') ?? {};
  const audio = inbound.find((s) => s.kind === 'audio') ?? {};
  const remoteOutbound = statsOfType(report, 'remote-outbound-rtp').find((s) => s.roundTripTime != null);
  const pair = selectedPair(report);
  return {
    videoCodec: codecOf(report, video),
    audioCodec: codecOf(report, audio),
    framesReceived: video.framesReceived ?? 0,
    framesDecoded: video.framesDecoded ?? 0,
    framesDropped: video.framesDropped ?? 0,
    keyFramesDecoded: video.keyFramesDecoded ?? 0,
    frameWidth: video.frameWidth ?? 0,
    frameHeight: video.frameHeight ?? 0,
    framesPerSecond: video.framesPerSecond ?? 0,
    freezeCount: video.freezeCount ?? 0,
    nackCount: video.nackCount ?? 0,
    pliCount: video.pliCount ?? 0,
    totalSamplesReceived: audio.totalSamplesReceived ?? 0,
    concealedSamples: audio.concealedSamples ?? 0,
    videoBitrate: rates.bitrate('video', video.bytesReceived, video.timestamp),
    audioBitrate: rates.bitrate('audio', audio.bytesReceived, audio.timestamp),
    bytesReceived: sumOf(inbound, 'bytesReceived'),
    packetsReceived: sumOf(inbound, 'packetsReceived'),
    packetsLost: sumOf(inbound, 'packetsLost'),
    jitter: toMs(video.jitter),
    audioJitter: toMs(audio.jitter),
    roundTripTime: toMs(pair?.currentRoundTripTime ?? remoteOutbound?.roundTripTime),
  };
}

/** The numbers of a sending (WHIP) peer connection; video counts all layers. */
export function senderStats(report, rates) {
  const outbound = statsOfType(report, 'outbound-rtp');
  const layers = outbound
    .filter((s) => s.kind === 'video')
    .sort((a, b) => (b.frameWidth ?? 0) - (a.frameWidth ?? 0));
  const top = layers[0] ?? {};
  const audio = outbound.find((s) => s.kind === 'audio') ?? {};
  const remoteInbound = statsOfType(report, 'remote-inbound-rtp');
  const remoteVideo = remoteInbound.filter((s) => s.kind === 'video');
  const pair = selectedPair(report);

  const layerStats = layers.map((s) => ({
    rid: s.rid ?? '',
    active: s.active ?? true,
    frameWidth: s.frameWidth ?? 0,
    frameHeight: s.frameHeight ?? 0,
    framesPerSecond: s.framesPerSecond ?? 0,
    framesSent: s.framesSent ?? 0,
    bitrate: rates.bitrate(`video-${s.ssrc}`, s.bytesSent, s.timestamp),
  }));
  return {
    videoCodec: codecOf(report, top),
    audioCodec: codecOf(report, audio),
    framesSent: sumOf(layers, 'framesSent'),
    framesEncoded: sumOf(layers, 'framesEncoded'),
    keyFramesEncoded: sumOf(layers, 'keyFramesEncoded'),
    frameWidth: top.frameWidth ?? 0,
    frameHeight: top.frameHeight ?? 0,
    framesPerSecond: top.framesPerSecond ?? 0,
    qualityLimitationReason: top.qualityLimitationReason ?? '',
    nackCount: sumOf(layers, 'nackCount'),
    pliCount: sumOf(layers, 'pliCount'),
    firCount: sumOf(layers, 'firCount'),
    videoBitrate: layerStats.reduce((n, l) => n + l.bitrate, 0),
    audioBitrate: rates.bitrate('audio', audio.bytesSent, audio.timestamp),
    bytesSent: sumOf(outbound, 'bytesSent'),
    packetsSent: sumOf(outbound, 'packetsSent'),
    packetsLost: sumOf(remoteInbound, 'packetsLost'),
    jitter: toMs(remoteVideo[0]?.jitter),
    roundTripTime: toMs(pair?.currentRoundTripTime ?? remoteVideo.find((s) => s.roundTripTime != null)?.roundTripTime),
    layers: layerStats,
  };
}

export const formatBitrate = (bps) => (bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : `${Math.round(bps / 1000)} kbit/s`);
export const formatMs = (value) => (value == null ? '–' : `${value} ms`);
export const formatSize = (width, height) => (width ? `${width}×${height}` : '–');
export const formatCodec = (mimeType) => mimeType.replace(/^(video|audio)\//, '') || '–';

/** Shows rows of [label, value] in a <dl>. */
export function renderStats(list, rows) {
  list.replaceChildren(
    ...rows.flatMap(([label, value]) => {
      const dt = document.createElement('dt');
      const dd = document.createElement('dd');
      dt.textContent = label;
      dd.textContent = String(value);
      return [dt, dd];
    }),
  );
}
