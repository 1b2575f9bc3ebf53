/*
 * miwidothttp security dashboard: polls /api/state every few seconds and
 * draws it. Every value from the server goes into the page as text
 * (textContent, text nodes, SVG <title>): nothing it sends is ever parsed
 * as markup, so a Host or path holding <script> shows as those characters.
 * Class names come from fixed tables, never from the data.
 */
/** How often the page asks for the state. */
const REFRESH_MS = 3000;
const SVG = 'http://www.w3.org/2000/svg';
const LIGHT_CLASS = { green: 'light-green', amber: 'light-amber', red: 'light-red' };
const CLASS_NAMES = ['c1', 'c2', 'c3', 'c4', 'c5'];
/** Stacking order of the chart, bottom up. */
const STACK = [1, 2, 3, 4, 0];

const byId = (id) => document.getElementById(id);

/** An element with fixed classes and text children (strings become text nodes). */
function node(tag, className, ...children) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  for (const child of children) element.append(child instanceof Node ? child : document.createTextNode(String(child ?? '')));
  return element;
}

const text = (value) => (value === null || value === undefined || value === '' ? '—' : String(value));

function bytes(value) {
  if (typeof value !== 'number') return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${size >= 10 || unit === 0 ? Math.round(size) : size.toFixed(1)} ${units[unit]}`;
}

function clock(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? text(iso) : date.toLocaleTimeString([], { hour12: false });
}

function inTime(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  if (Number.isNaN(ms)) return text(iso);
  if (ms <= 0) return 'now';
  const minutes = Math.round(ms / 60000);
  if (minutes < 1) return `in ${Math.round(ms / 1000)} s`;
  if (minutes < 120) return `in ${minutes} min`;
  return `in ${Math.round(minutes / 60)} h`;
}

/** Replaces a table's rows; each row is a list of cells (a string, or a node). */
function fillTable(id, rows, empty) {
  const body = byId(id).tBodies[0];
  const columns = byId(id).tHead.rows[0].cells.length;
  if (rows.length === 0) {
    const cell = node('td', 'quiet', empty);
    cell.colSpan = columns;
    body.replaceChildren(node('tr', '', cell));
    return;
  }
  body.replaceChildren(
    ...rows.map((cells) => node('tr', '', ...cells.map((cell) => node('td', '', cell instanceof Node ? cell : text(cell))))),
  );
}

function light(status) {
  return node('span', `light ${LIGHT_CLASS[status] ?? 'light-unknown'}`, text(status));
}

function renderChecklist(items) {
  const counts = { green: 0, amber: 0, red: 0 };
  for (const item of items) counts[item.status] = (counts[item.status] ?? 0) + 1;
  byId('checklist-summary').textContent = `${counts.red} red, ${counts.amber} amber, ${counts.green} green`;
  byId('checklist').replaceChildren(
    ...items.map((item) => {
      const key = item.key ? node('code', '', item.key) : node('span', 'quiet', 'set by the server itself');
      return node(
        'li',
        `check ${LIGHT_CLASS[item.status] ?? 'light-unknown'}`,
        light(item.status),
        node('strong', '', item.title),
        node('span', 'why', item.why),
        node('span', 'key', key),
      );
    }),
  );
}

function limits(cgroup) {
  if (!cgroup) return 'none';
  const parts = [`v${cgroup.version}`, `mem ${cgroup.memoryMaxBytes === null ? '∞' : bytes(cgroup.memoryMaxBytes)}`];
  if (cgroup.cpuMaxPercent !== null) parts.push(`cpu ${cgroup.cpuMaxPercent}%`);
  parts.push(`pids ${cgroup.pidsMax === null ? '∞' : cgroup.pidsMax}`);
  return parts.join(' · ');
}

function renderWorkers(workers) {
  fillTable(
    'workers',
    workers.map((worker) => [
      worker.pid,
      worker.uid,
      worker.generation,
      worker.state,
      bytes(worker.rssBytes),
      worker.cpuPercent === null ? '—' : `${worker.cpuPercent}%`,
      worker.restarts,
      worker.seccomp,
      worker.noNewPrivs === null ? '—' : worker.noNewPrivs ? 'yes' : 'NO',
      worker.root,
      limits(worker.cgroup),
    ]),
    'no worker',
  );
}

function svg(tag, attributes, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children) element.append(child);
  return element;
}

/** Stacked bars of requests per second by status class, one per sample, over the window. */
function renderChart(traffic) {
  const width = 600;
  const height = 150;
  const buckets = traffic.buckets;
  const rates = buckets.map((bucket) => bucket.classes.map((count) => count / bucket.seconds));
  const peak = Math.max(1, ...rates.map((classes) => classes.reduce((sum, rate) => sum + rate, 0)));
  const end = buckets.length > 0 ? new Date(buckets[buckets.length - 1].at).getTime() : Date.now();
  const start = end - traffic.windowSeconds * 1000;
  const bars = [];
  buckets.forEach((bucket, i) => {
    const right = ((bucket.at - start) / (end - start)) * width;
    const barWidth = Math.max(1, ((bucket.seconds * 1000) / (end - start)) * width - 0.5);
    let top = height;
    for (const index of STACK) {
      const h = (rates[i][index] / peak) * (height - 12);
      if (h <= 0) continue;
      top -= h;
      const total = bucket.classes[index];
      bars.push(
        svg(
          'rect',
          {
            x: (right - barWidth).toFixed(2),
            y: top.toFixed(2),
            width: barWidth.toFixed(2),
            height: h.toFixed(2),
            class: CLASS_NAMES[index],
          },
          svg('title', {}, `${clock(new Date(bucket.at).toISOString())}: ${total} × ${index + 1}xx`),
        ),
      );
    }
  });
  const label = (x, y, anchor, content) => svg('text', { x, y, 'text-anchor': anchor, class: 'axis' }, content);
  const chart = svg(
    'svg',
    { viewBox: `0 0 ${width} ${height + 14}`, role: 'img', 'aria-label': 'requests per second by status class, last 15 minutes' },
    svg('line', { x1: 0, y1: height, x2: width, y2: height, class: 'base' }),
    ...bars,
    label(2, 10, 'start', `${peak < 10 ? peak.toFixed(1) : Math.round(peak)}/s`),
    label(0, height + 12, 'start', '15 min ago'),
    label(width, height + 12, 'end', 'now'),
  );
  byId('chart').replaceChildren(chart);
  const last = rates[rates.length - 1];
  const now = last ? last.reduce((sum, rate) => sum + rate, 0) : 0;
  const total = buckets.reduce((sum, bucket) => sum + bucket.classes.reduce((a, b) => a + b, 0), 0);
  byId('traffic-summary').textContent = `${now.toFixed(1)} requests/s now, ${total} in the window`;
  return now;
}

function renderEvents(id, events, columns, empty) {
  fillTable(
    id,
    events.map((event) => columns.map((column) => (column === 'time' ? clock(event.time) : event[column]))),
    empty,
  );
}

function renderCertificates(state) {
  const error = byId('certificate-error');
  error.hidden = !state.certificateError;
  error.textContent = state.certificateError ?? '';
  fillTable(
    'certificates',
    state.certificates.map((certificate) => [
      certificate.name,
      certificate.source,
      certificate.daysLeft,
      certificate.notAfter ? certificate.notAfter.slice(0, 10) : 'not yet obtained',
      certificate.lastError,
    ]),
    'no certificate: the server speaks HTTP only',
  );
}

function renderReload(state) {
  const reload = state.lastReload;
  if (!reload) {
    byId('reload').textContent =
      `None since the master started (${clock(state.master.startedAt)}); generation ${state.master.generation} serves.`;
    return;
  }
  const outcome = reload.ok ? `succeeded: generation ${text(reload.generation)} serves` : `was refused: ${text(reload.detail)}`;
  byId('reload').replaceChildren(light(reload.ok ? 'green' : 'red'), ` ${clock(reload.at)}: the reload ${outcome}`);
}

function render(state) {
  renderChecklist(state.checklist);
  renderWorkers(state.workers);
  const rate = renderChart(state.traffic);
  fillTable(
    'bans',
    state.bans.map((ban) => [ban.ip, `${inTime(ban.until)} (${clock(ban.until)})`, ban.source, ban.reason]),
    'no client is banned',
  );
  byId('bans-summary').textContent = state.bansTotal > state.bans.length ? `${state.bans.length} of ${state.bansTotal} shown` : '';
  fillTable(
    'refused',
    state.refusedClients.map((client) => [client.ip, client.count, client.lastEvent, clock(client.lastAt)]),
    'no client refused in the last 15 minutes',
  );
  byId('refused-summary').textContent =
    state.refusedUntracked > 0 ? `${state.refusedUntracked} refusals of clients past the tracking cap` : '';
  renderEvents('ids', state.idsAlerts, ['time', 'event', 'clientIp', 'host', 'path', 'detail'], 'no IDS event since the master started');
  renderCertificates(state);
  renderReload(state);
  renderEvents(
    'audit',
    state.auditEvents,
    ['time', 'event', 'clientIp', 'status', 'host', 'path', 'detail'],
    'no audit event since the master started',
  );
  const red = state.checklist.filter((item) => item.status === 'red').length;
  byId('summary').textContent =
    `generation ${state.master.generation} · ${state.workers.length} workers · ${rate.toFixed(1)} req/s · ` +
    `${state.connections} open connections · ${state.bansTotal} bans · ${red} red checks`;
  byId('updated').textContent =
    `Updated ${clock(state.generatedAt)} from master ${state.master.pid}; refreshes every ${REFRESH_MS / 1000} s.`;
}

/** A slow answer is waited for, not asked for again on top. */
let asking = false;

async function refresh() {
  if (document.visibilityState === 'hidden' || asking) return;
  asking = true;
  try {
    const response = await fetch('/api/state', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
    if (response.status === 401) {
      // The login ended (12 hours, or a new token): the page itself shows the form.
      window.location.assign('/');
      return;
    }
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const state = await response.json();
    if (state.error) throw new Error(state.error);
    render(state);
    document.body.classList.remove('stale');
  } catch (error) {
    document.body.classList.add('stale');
    byId('updated').textContent = `Not updated: ${error.message}. Trying again every ${REFRESH_MS / 1000} s.`;
  } finally {
    asking = false;
  }
}

void refresh();
setInterval(() => void refresh(), REFRESH_MS);
document.addEventListener('visibilitychange', () => void refresh());
