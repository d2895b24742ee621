// The publish page: camera and microphone to a WHIP endpoint.

import {
  Session, StatusLine, endSession, pageParams, sf, updatePageParams,
} from './whip.js';
import {
  Rates, formatBitrate, formatCodec, formatMs, formatSize, renderStats, senderStats,
} from './stats.js';

const $ = (id) => document.getElementById(id);
const form = $('controls');
const streamInput = $('stream');
const codecSelect = $('codec');
const simulcastBox = $('simulcast');
const startButton = $('start');
const stopButton = $('stop');
const preview = $('preview');
const statsList = $('stats');
const watchLink = $('watch-link');
const status = new StatusLine($('status'));

const params = pageParams();

// Simulcast layers: RIDs h, m, l at full, half and quarter resolution (720p,
// 360p, 180p from a 720p camera).
const SIMULCAST_ENCODINGS = [
  { rid: 'h', scaleResolutionDownBy: 1 },
  { rid: 'm', scaleResolutionDownBy: 2 },
  { rid: 'l', scaleResolutionDownBy: 4 },
];

/** The session being published, or null. */
let session = null;

/**
 * Puts the codecs named `name` (H264, VP8, VP9, AV1) first in the video
 * transceiver's preferences, keeping the others (and RTX, RED, FEC) after.
 */
function preferCodec(transceiver, name) {
  const mimeType = `video/${name}`.toLowerCase();
  const isWanted = (c) => c.mimeType.toLowerCase() === mimeType;
  let lastError = null;
  // Browsers have checked the list against the sender or the receiver
  // capabilities over the years; try both.
  for (const capabilities of [RTCRtpSender.getCapabilities('video'), RTCRtpReceiver.getCapabilities('video')]) {
    const codecs = capabilities?.codecs ?? [];
    const wanted = codecs.filter(isWanted).sort((a, b) => fmtpRank(a) - fmtpRank(b));
    if (wanted.length === 0) continue;
    try {
      transceiver.setCodecPreferences([...wanted, ...codecs.filter((c) => !isWanted(c))]);
      return;
    } catch (err) {
      lastError = err;
    }
  }
  throw new Error(`this browser cannot send ${name}${lastError ? ` (${lastError.message})` : ''}`);
}

/** Orders the variants of a codec: the most widely decodable first. */
function fmtpRank(codec) {
  const fmtp = codec.sdpFmtpLine ?? '';
  let rank = 0;
  if (codec.mimeType.toLowerCase() === 'video/h264') {
    // Constrained Baseline, packetization-mode 1: what every peer decodes.
    if (!fmtp.includes('packetization-mode=1')) rank += 4;
    if (!fmtp.includes('profile-level-id=42e01f')) rank += 1;
  }
  if (/profile(-id)?=[1-9]/.test(fmtp)) rank += 2; // VP9 and AV1 profile 0 first
  return rank;
}

async function start() {
  if (session) return;
  const stream = streamInput.value.trim() || 'live/test';
  const codec = codecSelect.value;
  const simulcast = simulcastBox.checked;
  updatePageParams({ stream, codec, simulcast });
  updateWatchLink(stream);

  let media = null;
  const rates = new Rates();
  const s = new Session({
    kind: 'whip',
    stream,
    server: params.server,
    token: params.token,
    status,
    label: `publishing ${stream}`,
    onStats: (report) => showStats(senderStats(report, rates)),
    onClose: () => {
      media?.getTracks().forEach((t) => t.stop());
      preview.srcObject = null;
      if (session === s) session = null;
      setRunning(false);
    },
  });
  session = s;
  sf.stats = {};
  setRunning(true);
  status.set('connecting', `starting the camera for ${stream}…`);
  try {
    media = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: true,
    });
    if (s.ended) {
      media.getTracks().forEach((t) => t.stop()); // stopped meanwhile
      return;
    }
    preview.srcObject = media;

    const [video] = media.getVideoTracks();
    const [audio] = media.getAudioTracks();
    const videoTransceiver = s.pc.addTransceiver(video, {
      direction: 'sendonly',
      streams: [media],
      ...(simulcast && { sendEncodings: SIMULCAST_ENCODINGS }),
    });
    if (audio) {
      s.pc.addTransceiver(audio, { direction: 'sendonly', streams: [media] });
    }
    if (codec) {
      preferCodec(videoTransceiver, codec);
    }
    await s.connect();
  } catch (err) {
    s.fail(err);
  }
}

function showStats(st) {
  sf.stats = st;
  const rows = [
    ['codec', `${formatCodec(st.videoCodec)} / ${formatCodec(st.audioCodec)}`],
    ['video bitrate', formatBitrate(st.videoBitrate)],
    ['audio bitrate', formatBitrate(st.audioBitrate)],
    ['frame size', formatSize(st.frameWidth, st.frameHeight)],
    ['frames per second', st.framesPerSecond],
    ['frames sent', st.framesSent],
    ['key frames', st.keyFramesEncoded],
    ['PLI / NACK received', `${st.pliCount} / ${st.nackCount}`],
    ['packets lost', st.packetsLost],
    ['jitter', formatMs(st.jitter)],
    ['round-trip time', formatMs(st.roundTripTime)],
    ['quality limited by', st.qualityLimitationReason || '–'],
  ];
  if (st.layers.length > 1) {
    for (const l of st.layers) {
      rows.push([
        `layer ${l.rid}`,
        `${formatSize(l.frameWidth, l.frameHeight)}, ${l.framesPerSecond ?? 0} fps, ${formatBitrate(l.bitrate)}`,
      ]);
    }
  }
  renderStats(statsList, rows);
}

function setRunning(running) {
  startButton.disabled = running;
  stopButton.disabled = !running;
  for (const input of [streamInput, codecSelect, simulcastBox]) input.disabled = running;
}

function updateWatchLink(stream) {
  const q = new URLSearchParams({ stream, auto: '1' });
  if (params.server) q.set('server', params.server);
  watchLink.href = `watch?${q}`;
}

// Set up the controls from the query parameters.
streamInput.value = params.stream;
if (params.codec && ![...codecSelect.options].some((o) => o.value === params.codec)) {
  codecSelect.add(new Option(params.codec, params.codec)); // let the browser say if it has it
}
codecSelect.value = params.codec;
simulcastBox.checked = params.simulcast;
updateWatchLink(params.stream);
status.set('idle', 'idle');

form.addEventListener('submit', (e) => {
  e.preventDefault();
  start();
});
stopButton.addEventListener('click', () => session?.stop());
window.addEventListener('pagehide', () => {
  if (session?.location) endSession(session.location, params.token);
});

if (params.auto) start();
