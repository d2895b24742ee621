// The manager's dashboard: polls the JSON API every second and redraws the tables.
// window.dashboard holds the last data, for tests.

const dashboard = { nodes: [], streams: [], cluster: null, updated: 0, error: '' };
window.dashboard = dashboard;

function bitrate(bps) {
  if (!bps) return '0';
  if (bps >= 1e6) return (bps / 1e6).toFixed(1) + ' Mb/s';
  return (bps / 1e3).toFixed(0) + ' kb/s';
}

function cell(row, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function fill(id, items, render) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...items.map((item) => {
    const tr = document.createElement('tr');
    tr.dataset.id = item.id || item.name;
    render(tr, item);
    return tr;
  }));
}

function age(ts) {
  if (!ts) return '—';
  const s = (Date.now() - Date.parse(ts)) / 1000;
  return s < 0 ? 'now' : `${s.toFixed(1)} s ago`;
}

async function getJSON(path) {
  const resp = await fetch(path, { cache: 'no-store' });
  if (!resp.ok) throw new Error(`${path}: ${resp.status}`);
  return resp.json();
}

async function refresh() {
  try {
    const [nodes, streams, cluster] = await Promise.all([
      getJSON('/api/v1/nodes'), getJSON('/api/v1/streams'), getJSON('/api/v1/cluster'),
    ]);
    Object.assign(dashboard, { nodes: nodes.nodes, streams: streams.streams, cluster, updated: Date.now(), error: '' });
    document.getElementById('cluster').textContent =
      `manager ${cluster.manager} · leader ${cluster.leader || 'none'} · ${cluster.managers.length} manager(s) · NATS ${cluster.nats.connected ? 'connected' : 'DISCONNECTED'}`;
    fill('nodes', nodes.nodes, (tr, n) => {
      cell(tr, n.id); cell(tr, n.role); cell(tr, n.region || '—');
      cell(tr, n.state.replace('_', ' '), `state-${n.state}`);
      cell(tr, String(n.load.sessions + n.load.pending_sessions));
      cell(tr, n.capacity.sessions ? String(n.capacity.sessions) : '∞');
      cell(tr, bitrate(n.load.bitrate_in)); cell(tr, bitrate(n.load.bitrate_out));
      cell(tr, `${(n.load.cpu * 100).toFixed(0)} %`); cell(tr, String(n.load.streams));
      cell(tr, age(n.last_heartbeat));
    });
    fill('streams', streams.streams, (tr, s) => {
      cell(tr, s.name); cell(tr, s.origin || '—'); cell(tr, s.relays.join(', ') || '—');
      cell(tr, s.edges.join(', ') || '—'); cell(tr, String(s.viewers)); cell(tr, bitrate(s.bitrate_in));
      cell(tr, s.live ? 'yes' : 'no');
    });
    document.getElementById('error').textContent = '';
  } catch (err) {
    dashboard.error = String(err);
    document.getElementById('error').textContent = `refresh failed: ${err.message}`;
  }
}

refresh();
setInterval(refresh, 1000);
