// The watch page: plays a stream from a WHEP endpoint.

import {
  Session, StatusLine, endSession, pageParams, sf, updatePageParams,
} from './whip.js';
import {
  Rates, formatBitrate, formatCodec, formatMs, formatSize, receiverStats, renderStats,
} from './stats.js';

const $ = (id) => document.getElementById(id);
const form = $('controls');
const streamInput = $('stream');
const playButton = $('play');
const stopButton = $('stop');
const player = $('player');
const statsList = $('stats');
const status = new StatusLine($('status'));

const params = pageParams();

// After this many seconds without a byte of media, the status line says so.
const STALL_SECONDS = 3;

/** The session being played, or null. */
let session = null;

async function play() {
  if (session) return;
  const stream = streamInput.value.trim() || 'live/test';
  updatePageParams({ stream });

  const rates = new Rates();
  const stall = { bytes: -1, since: performance.now() };
  const s = new Session({
    kind: 'whep',
    stream,
    server: params.server,
    token: params.token,
    status,
    label: `playing ${stream}`,
    onStats: (report) => showStats(s, receiverStats(report, rates), stall),
    onClose: () => {
      player.srcObject = null;
      if (session === s) session = null;
      setRunning(false);
    },
  });
  session = s;
  sf.stats = {};
  // Time to first frame, from the click (or page load with auto=1) to the first decoded frame.
  const started = performance.now();
  sf.firstFrameMs = null;
  const firstFrame = () => {
    if (session === s && sf.firstFrameMs === null) sf.firstFrameMs = Math.round(performance.now() - started);
  };
  sf.connectedMs = null;
  s.pc.addEventListener('connectionstatechange', () => {
    if (s.pc.connectionState === 'connected' && sf.connectedMs === null) sf.connectedMs = Math.round(performance.now() - started);
  });
  if (player.requestVideoFrameCallback) player.requestVideoFrameCallback(firstFrame);
  else player.addEventListener('loadeddata', firstFrame, { once: true });
  setRunning(true);
  status.set('connecting', `requesting ${stream}…`);
  try {
    s.pc.addTransceiver('video', { direction: 'recvonly' });
    s.pc.addTransceiver('audio', { direction: 'recvonly' });
    // The receivers' tracks exist from the start; media flows into them
    // once connected, whatever stream IDs the server signals.
    player.srcObject = new MediaStream(s.pc.getReceivers().map((r) => r.track));
    player.play().catch(() => {}); // muted, so autoplay is allowed; retried by autoplay
    await s.connect();
  } catch (err) {
    s.fail(err);
  }
}

function showStats(s, st, stall) {
  sf.stats = st;

  // Say so when media stops flowing while connected.
  const now = performance.now();
  const stalledFor = now - stall.since;
  if (st.bytesReceived !== stall.bytes) {
    if (stall.bytes >= 0 && sf.state === 'connected' && stalledFor >= STALL_SECONDS * 1000) {
      status.note(s.label); // media is back
    }
    stall.bytes = st.bytesReceived;
    stall.since = now;
  } else if (sf.state === 'connected' && stalledFor >= STALL_SECONDS * 1000) {
    status.note(`${s.label}: no media for ${Math.round(stalledFor / 1000)} s`);
  }

  renderStats(statsList, [
    ['codec', `${formatCodec(st.videoCodec)} / ${formatCodec(st.audioCodec)}`],
    ['video bitrate', formatBitrate(st.videoBitrate)],
    ['audio bitrate', formatBitrate(st.audioBitrate)],
    ['frame size', formatSize(st.frameWidth, st.frameHeight)],
    ['frames per second', st.framesPerSecond],
    ['frames decoded', st.framesDecoded],
    ['frames dropped', st.framesDropped],
    ['freezes', st.freezeCount],
    ['packets lost', st.packetsLost],
    ['jitter', formatMs(st.jitter)],
    ['round-trip time', formatMs(st.roundTripTime)],
    ['audio samples received', st.totalSamplesReceived],
  ]);
}

function setRunning(running) {
  playButton.disabled = running;
  stopButton.disabled = !running;
  streamInput.disabled = running;
}

streamInput.value = params.stream;
status.set('idle', 'idle');

form.addEventListener('submit', (e) => {
  e.preventDefault();
  play();
});
stopButton.addEventListener('click', () => session?.stop());
window.addEventListener('pagehide', () => {
  if (session?.location) endSession(session.location, params.token);
});

if (params.auto) play();
