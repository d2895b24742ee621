// Shared by the publish and watch pages: page parameters, WHIP/WHEP
// signalling (RFC 9725), the status line, and window.sf, the state that
// tests read.

/**
 * The state of the page, for tests and for the curious:
 * state is 'idle' | 'connecting' | 'connected' | 'ended' | 'error',
 * error the last error text, stats the latest numbers (updated every second).
 */
export const sf = { state: 'idle', error: '', stats: {} };
window.sf = sf;

/** Reads the query parameters both pages understand. */
export function pageParams(search = location.search) {
  const q = new URLSearchParams(search);
  return {
    stream: q.get('stream')?.trim() || 'live/test',
    token: q.get('token') || '',
    server: q.get('server') || '',
    auto: q.get('auto') === '1',
    codec: (q.get('codec') || '').trim().toUpperCase(),
    simulcast: q.get('simulcast') === '1',
  };
}

/** Rewrites some query parameters of the page's URL without reloading it. */
export function updatePageParams(changes) {
  const url = new URL(location.href);
  for (const [name, value] of Object.entries(changes)) {
    if (value === '' || value === false || value == null) {
      url.searchParams.delete(name);
    } else {
      url.searchParams.set(name, value === true ? '1' : value);
    }
  }
  history.replaceState(null, '', url);
}

/**
 * The WHIP or WHEP endpoint of a stream: /whip/{stream} or /whep/{stream} on
 * the origin of `server`, or on this page's origin.
 */
export function endpointURL(kind, stream, server = '') {
  const path = stream.split('/').map(encodeURIComponent).join('/');
  return new URL(`/${kind}/${path}`, server || location.origin).href;
}

/** An HTTP error answer of the server: status code and body text. */
export class HTTPError extends Error {
  constructor(status, statusText, body) {
    const text = body.trim().slice(0, 500);
    const head = [status, statusText].filter(Boolean).join(' ');
    super(text ? `${head}: ${text}` : head);
    this.name = 'HTTPError';
    this.status = status;
    this.body = text;
  }
}

/**
 * Resolves when the ICE gathering of pc completes, or after timeoutMs.
 */
export function iceGatheringComplete(pc, timeoutMs = 2000) {
  if (pc.iceGatheringState === 'complete') {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', onChange);
  });
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * The POST URL with the token also as ?token=: a stream manager answers with a
 * 307 to a node on another origin, and the browser drops the Authorization
 * header on a cross-origin redirect, while the query goes along.
 */
export function withToken(url, token) {
  if (!token) return url;
  const u = new URL(url, location.href);
  u.searchParams.set('token', token);
  return u.href;
}

/**
 * Runs one WHIP or WHEP exchange: creates the offer of pc, POSTs it to url,
 * and applies the SDP answer. Returns the URL of the session (the Location
 * header, resolved against the URL that answered, so redirects work).
 * Throws an HTTPError for a non-2xx answer.
 */
export async function negotiate(pc, url, token) {
  // The offer goes out at once, without waiting for ICE gathering (a wait of
  // 100 ms or more): the node is ICE-lite, so it learns this side's address
  // from its connectivity checks, and the candidates gathered meanwhile follow
  // in one trickle PATCH for servers that need them (RFC 9725 §4.3).
  await pc.setLocalDescription(await pc.createOffer());

  const resp = await fetch(withToken(url, token), {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...authHeaders(token) },
    body: pc.localDescription.sdp,
  });
  const body = await resp.text();
  if (!resp.ok) {
    throw new HTTPError(resp.status, resp.statusText, body);
  }
  const location = resp.headers.get('Location');
  if (!location) {
    throw new Error(`${resp.status} answer has no Location header (cross-origin servers must expose it)`);
  }
  const sessionURL = new URL(location, resp.url).href;
  try {
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  } catch (err) {
    endSession(sessionURL, token); // do not leave it on the server
    throw new Error(`the server's answer: ${err.message}`);
  }
  trickleWhenGathered(pc, sessionURL, token);
  return sessionURL;
}

/**
 * Once ICE gathering completes, sends this side's candidates to the session
 * as an SDP fragment (RFC 8840). Best effort: a server without trickle
 * support answers 405, which changes nothing.
 */
function trickleWhenGathered(pc, sessionURL, token) {
  iceGatheringComplete(pc).then(() => {
    const sdp = pc.localDescription?.sdp ?? '';
    const lines = sdp.split('\r\n');
    const first = lines.findIndex((l) => l.startsWith('m='));
    if (first < 0) return;
    const next = lines.findIndex((l, i) => i > first && l.startsWith('m='));
    const media = lines.slice(first, next < 0 ? lines.length : next);
    const pick = (prefix) => media.find((l) => l.startsWith(prefix)) ?? lines.find((l) => l.startsWith(prefix));
    const candidates = media.filter((l) => l.startsWith('a=candidate:'));
    if (candidates.length === 0) return;
    const frag = [pick('a=ice-ufrag:'), pick('a=ice-pwd:'), media[0], pick('a=mid:'), ...candidates, 'a=end-of-candidates']
      .filter(Boolean).join('\r\n') + '\r\n';
    fetch(sessionURL, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', ...authHeaders(token) },
      body: frag,
    }).catch(() => {});
  });
}

/**
 * Ends a session with DELETE on its URL. Never throws: the session may be
 * gone already. keepalive lets the request outlive a closing page.
 */
export async function endSession(sessionURL, token, timeoutMs = 2000) {
  try {
    await fetch(sessionURL, {
      method: 'DELETE',
      headers: authHeaders(token),
      keepalive: true,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    console.warn(`DELETE ${sessionURL}: ${err}`);
  }
}

/**
 * Calls onEnd(serverClosed) once when the connection of pc fails or closes.
 * serverClosed is true when the server closed the DTLS transport, which is
 * how a server ends a session: then the session is gone on the server too.
 * Call it after negotiate, when the transport exists.
 */
export function onConnectionEnd(pc, onEnd) {
  let ended = false;
  const end = (serverClosed) => {
    if (!ended) {
      ended = true;
      onEnd(serverClosed);
    }
  };
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') end(false);
  });
  const transports = new Set(
    pc.getTransceivers().flatMap((t) => [t.sender.transport, t.receiver.transport]).filter(Boolean),
  );
  for (const transport of transports) {
    transport.addEventListener('statechange', () => {
      if (transport.state === 'closed') end(true);
      if (transport.state === 'failed') end(false);
    });
  }
}

/**
 * One WHIP or WHEP session: a peer connection, its resource on the server and
 * a stats timer. The page adds transceivers to `pc`, then calls connect().
 * Progress and the end are shown on `status`, as `${label}` once connected.
 * onStats(report) runs every second; onClose() once, however it ends.
 */
export class Session {
  ended = false;
  stopping = false;
  location = '';
  pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  #timer = 0;

  constructor({ kind, stream, server, token, status, label, onStats, onClose }) {
    Object.assign(this, { kind, stream, server, token, status, label, onStats, onClose });
  }

  /** Negotiates with the server and starts the stats timer. */
  async connect() {
    const { pc, status } = this;
    pc.addEventListener('connectionstatechange', () => {
      if (this.ended) return;
      if (pc.connectionState === 'connected') {
        status.set('connected', this.label);
      } else if (pc.connectionState === 'disconnected') {
        status.note(`${this.label}: connection interrupted, waiting…`);
      }
    });
    status.note(`sending the offer for ${this.stream}…`);
    const location = await negotiate(pc, endpointURL(this.kind, this.stream, this.server), this.token);
    if (this.ended) {
      endSession(location, this.token); // stopped while negotiating
      return;
    }
    this.location = location;
    onConnectionEnd(pc, (serverClosed) => {
      if (serverClosed) this.location = ''; // nothing left to DELETE
      this.#release(this.stopping ? 'stopped' : 'stream ended');
    });
    if (pc.connectionState !== 'connected') {
      status.note(`connecting to the server for ${this.stream}…`);
    }
    this.#timer = setInterval(() => this.#sample(), 1000);
  }

  /**
   * Stops on the user's request: ends the session on the server (DELETE),
   * then closes the connection.
   */
  async stop() {
    if (this.ended || this.stopping) return;
    this.stopping = true;
    const { location } = this;
    this.location = '';
    if (location) await endSession(location, this.token);
    this.#release('stopped');
  }

  /** Shows err and releases everything. */
  fail(err) {
    if (this.ended) return;
    this.status.fail(err);
    this.#release();
  }

  /** Releases everything; with text, enters the 'ended' state showing it. */
  #release(text) {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.#timer);
    this.pc.close();
    if (this.location) endSession(this.location, this.token); // the server may hold it still
    this.onClose();
    if (text) this.status.set('ended', text);
  }

  async #sample() {
    let report;
    try {
      report = await this.pc.getStats();
    } catch {
      return; // closed meanwhile
    }
    if (!this.ended) this.onStats(report);
  }
}

/** The status line of a page; every change is mirrored in window.sf. */
export class StatusLine {
  constructor(element) {
    this.element = element;
  }

  /** Sets the state and shows text. The error text is cleared. */
  set(state, text) {
    sf.state = state;
    sf.error = '';
    this.show(state, text);
  }

  /** Changes the text only, keeping the state. */
  note(text) {
    this.show(sf.state, text);
  }

  /** Enters the error state; err may be an HTTPError or any other error. */
  fail(err) {
    const message = err instanceof HTTPError ? `HTTP ${err.message}` : String(err?.message ?? err);
    sf.state = 'error';
    sf.error = message;
    this.show('error', `error: ${message}`);
    console.error(message);
  }

  show(state, text) {
    this.element.dataset.state = state;
    this.element.textContent = text;
  }
}
