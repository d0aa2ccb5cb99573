// The Stellwerk console: flags, experiments, models and the audit log, over the admin JSON API
// (/_stellwerk/admin/api/). Plain DOM and uPlot; the session cookie authenticates every call.
'use strict';

const API = '/_stellwerk/admin/api/';
const view = document.getElementById('view');
const notice = document.getElementById('notice');
let version = null;
let killSwitch = false;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function say(text, error = false) {
  notice.textContent = text;
  notice.className = error ? 'error' : '';
  notice.hidden = false;
}

async function api(path, init = {}) {
  const response = await fetch(API + path, { credentials: 'same-origin', ...init });
  if (response.status === 401) { location.reload(); throw new Error('logged out'); }
  const body = await response.json().catch(() => ({}));
  return { status: response.status, body, etag: response.headers.get('etag') };
}

// Every write sends the version the page was drawn from; a stale one comes back 409.
async function write(path, change, method = 'POST') {
  const { status, body } = await api(path, {
    method,
    headers: { 'content-type': 'application/json', 'if-match': `"${version}"` },
    body: JSON.stringify(change),
  });
  if (status === 200) {
    version = body.version;
    say(`Saved: ${body.audit.what} (now ${body.version})`);
  } else if (status === 409) {
    say(`Someone else changed the snapshot first (now ${body.current}). The page was reloaded: check and try again.`, true);
  } else if (status === 422) {
    say(`Not saved, the change is invalid:\n${body.issues.join('\n')}`, true);
  } else {
    say(`Not saved: ${body.reason ?? status}`, true);
  }
  await route();
  return status;
}

const percent = (x) => `${(100 * x).toFixed(1)} %`;

function showVersion(v, kill) {
  version = v;
  killSwitch = kill;
  document.getElementById('version').textContent = v;
  const button = document.getElementById('kill-switch');
  button.textContent = kill ? 'Kill switch is ON: turn off' : 'Kill switch';
  button.classList.toggle('on', kill);
}

async function home() {
  const [{ body: flags }, { body: experiments }] = await Promise.all([api('flags'), api('experiments')]);
  showVersion(flags.version, flags.killSwitch);
  view.replaceChildren(
    el('section', { id: 'flags' }, el('h2', {}, 'Flags'),
      el('table', {}, el('thead', {}, el('tr', {}, ['Flag', 'On', 'Default', 'Rollout', ''].map((h) => el('th', {}, h)))),
        el('tbody', {}, flags.flags.map(flagRow)))),
    el('section', { id: 'experiments' }, el('h2', {}, 'Experiments'),
      el('table', {}, el('thead', {}, el('tr', {}, ['Experiment', 'Status', 'Policy', 'Traffic', 'Exposures', 'Leader', 'Actions'].map((h) => el('th', {}, h)))),
        el('tbody', {}, experiments.experiments.map(experimentRow)))),
  );
}

function flagRow(flag) {
  const enabled = flag.state === 'ENABLED';
  const toggle = el('input', {
    type: 'checkbox', checked: enabled, 'aria-label': `${flag.key} on`, 'data-flag-toggle': flag.key,
    onchange: () => write(`flags/${encodeURIComponent(flag.key)}`, { state: toggle.checked ? 'ENABLED' : 'DISABLED' }),
  });
  let rollout = null;
  if (flag.rollout) {
    const inputs = Object.entries(flag.rollout).map(([variant, weight]) => [variant, el('input', {
      type: 'number', min: 0, max: 100, value: weight, 'aria-label': `${flag.key} ${variant} percent`,
    })]);
    rollout = el('span', {}, inputs.map(([variant, input]) => el('label', {}, ` ${variant} `, input, '% ')),
      el('button', {
        type: 'button', 'data-rollout-save': flag.key,
        onclick: () => write(`flags/${encodeURIComponent(flag.key)}`, {
          rollout: Object.fromEntries(inputs.map(([variant, input]) => [variant, Number(input.value)])),
        }),
      }, 'Save rollout'));
  }
  return el('tr', { 'data-flag': flag.key },
    el('td', {}, el('strong', {}, flag.key), flag.hasEffects ? el('div', { class: 'hint' }, 'changes pages') : null),
    el('td', {}, toggle),
    el('td', {}, String(flag.defaultVariant)),
    el('td', {}, rollout ?? el('span', { class: 'hint' }, flag.targeting ? 'targeting rule' : 'everyone')),
    el('td', {}, el('details', {}, el('summary', {}, 'rule'), el('pre', {}, JSON.stringify(flag.targeting, null, 1)))),
  );
}

function statusBadge(status) {
  return el('span', { class: `status ${status}`, 'data-status': status }, status);
}

function leader(arms) {
  const best = [...arms].sort((a, b) => b.pBest - a.pBest)[0];
  return best ? `${best.key} (${percent(best.pBest)} best)` : '';
}

function experimentActions(experiment) {
  const path = `experiments/${encodeURIComponent(experiment.key)}`;
  const winner = el('select', { 'aria-label': `${experiment.key} winner` },
    experiment.arms.map((arm) => el('option', { value: arm.key }, arm.key)));
  const actions = [];
  if (experiment.status !== 'running') actions.push(el('button', { type: 'button', 'data-action': 'start', onclick: () => write(path, { status: 'running' }) }, 'Start'));
  if (experiment.status === 'running') actions.push(el('button', { type: 'button', 'data-action': 'pause', onclick: () => write(path, { status: 'paused' }) }, 'Pause'));
  actions.push(el('span', {}, ' ', winner, el('button', {
    type: 'button', class: 'danger', 'data-action': 'stop',
    onclick: () => write(path, { status: 'stopped', winner: winner.value }),
  }, 'Stop with winner')));
  return actions;
}

function experimentRow(experiment) {
  const traffic = el('input', { type: 'number', min: 0, max: 100, step: 1, value: Math.round(experiment.trafficShare * 100), 'aria-label': `${experiment.key} traffic percent` });
  const exposures = experiment.arms.reduce((sum, arm) => sum + arm.exposures, 0);
  return el('tr', { 'data-experiment': experiment.key },
    el('td', {}, el('a', { href: `#/experiments/${encodeURIComponent(experiment.key)}` }, experiment.key)),
    el('td', {}, statusBadge(experiment.status), experiment.winner ? ` → ${experiment.winner}` : ''),
    el('td', {}, experiment.policy.type),
    el('td', {}, traffic, '% ', el('button', { type: 'button', onclick: () => write(`experiments/${encodeURIComponent(experiment.key)}`, { traffic: Number(traffic.value) / 100 }) }, 'Set')),
    el('td', { class: 'num' }, String(exposures)),
    el('td', {}, leader(experiment.arms)),
    el('td', {}, experimentActions(experiment)),
  );
}

const COLOURS = ['#0b63ce', '#e8590c', '#2b8a3e', '#862e9c', '#c92a2a', '#5c940d', '#1098ad'];

// A bar per arm (x = arm index), with whiskers for [low, high] when given.
function armChart(container, { title, arms, values, intervals, format }) {
  const n = arms.length;
  const xs = arms.map((_, i) => i);
  const data = [xs, values];
  const whiskers = (u) => {
    if (!intervals) return;
    const { ctx } = u;
    ctx.save();
    ctx.strokeStyle = '#1d2330';
    ctx.lineWidth = 2 * devicePixelRatio;
    intervals.forEach(([low, high], i) => {
      const x = u.valToPos(i, 'x', true);
      const y0 = u.valToPos(low, 'y', true);
      const y1 = u.valToPos(high, 'y', true);
      const w = 8 * devicePixelRatio;
      ctx.beginPath();
      ctx.moveTo(x, y0); ctx.lineTo(x, y1);
      ctx.moveTo(x - w, y0); ctx.lineTo(x + w, y0);
      ctx.moveTo(x - w, y1); ctx.lineTo(x + w, y1);
      ctx.stroke();
    });
    ctx.restore();
  };
  const top = Math.max(...values, ...(intervals ?? []).map(([, high]) => high), 0.01);
  return new uPlot({
    title,
    width: 480,
    height: 260,
    scales: { x: { time: false, range: [-0.5, n - 0.5] }, y: { range: [0, top * 1.1] } },
    axes: [
      { values: (u, splits) => splits.map((v) => (Number.isInteger(v) && arms[v] !== undefined ? arms[v] : '')), splits: () => xs },
      { size: 64, values: (u, splits) => splits.map(format) },
    ],
    series: [
      { label: 'arm', value: (u, v) => (v === null || v === undefined ? '' : arms[v]) },
      { label: title, fill: '#0b63ce55', stroke: '#0b63ce', paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false }, value: (u, v) => (v === null || v === undefined ? '' : format(v)) },
    ],
    hooks: { draw: [whiskers] },
  }, data, container);
}

function timeChart(container, { title, at, series, format, span }) {
  if (at.length === 0) {
    container.append(el('p', { class: 'hint' }, 'No history yet: it fills as the aggregator counts events.'));
    return null;
  }
  const keys = Object.keys(series);
  return new uPlot({
    title,
    width: 480,
    height: 260,
    // `span` pins the time axis (a single interval of shares would otherwise span years).
    scales: { x: span ? { time: true, auto: false, range: span } : { time: true } },
    axes: [{}, { size: 64, values: (u, splits) => splits.map(format) }],
    series: [{}, ...keys.map((key, i) => ({ label: key, stroke: COLOURS[i % COLOURS.length], width: 2, value: (u, v) => (v === null || v === undefined ? '' : format(v)) }))],
  }, [at, ...keys.map((key) => series[key])], container);
}

async function experimentPage(key) {
  const [{ status, body: report }, { body: flags }] = await Promise.all([api(`experiments/${encodeURIComponent(key)}`), api('flags')]);
  showVersion(flags.version, flags.killSwitch);
  if (status !== 200) { view.replaceChildren(el('p', {}, `No experiment ${key}.`)); return; }
  const arms = report.arms;
  const level = Math.round(report.credibleLevel * 100);
  const table = el('table', { id: 'arms' },
    el('thead', {}, el('tr', {}, ['Arm', 'Exposures', 'Conversions', 'Conversion rate', `${level} % credible interval`, 'P(best)'].map((h) => el('th', {}, h)))),
    el('tbody', {}, arms.map((arm) => el('tr', { 'data-arm': arm.key },
      el('td', {}, arm.key, report.winner === arm.key ? ' (winner)' : ''),
      el('td', { class: 'num' }, String(arm.exposures)),
      el('td', { class: 'num' }, String(arm.conversions)),
      el('td', { class: 'num' }, percent(arm.rate)),
      el('td', { class: 'num' }, `${percent(arm.interval[0])} – ${percent(arm.interval[1])}`),
      el('td', { class: 'num', 'data-p-best': arm.pBest }, percent(arm.pBest)),
    ))));
  const charts = {
    rate: el('div', { class: 'chart', id: 'chart-rate' }),
    best: el('div', { class: 'chart', id: 'chart-p-best' }),
    share: el('div', { class: 'chart', id: 'chart-share' }),
    exposures: el('div', { class: 'chart', id: 'chart-exposures' }),
  };
  view.replaceChildren(
    el('section', { id: 'experiment', 'data-experiment': report.key },
      el('h2', {}, report.key, ' ', statusBadge(report.status)),
      el('p', { class: 'hint' }, `Policy ${report.policy.type} · ${Math.round(report.trafficShare * 100)} % of eligible visitors enrolled · goals: ${report.goals.join(', ')} · posteriors v${report.posteriorsVersion}`),
      el('p', {}, experimentActions(report)),
      table,
      el('p', { id: 'quarantined' }, `Fraud-quarantined feedback (not counted above): ${report.quarantined}`),
    ),
    el('section', { class: 'charts' }, Object.values(charts)),
  );
  armChart(charts.rate, { title: `Conversion rate with ${level} % interval`, arms: arms.map((a) => a.key), values: arms.map((a) => a.rate), intervals: arms.map((a) => a.interval), format: percent });
  armChart(charts.best, { title: 'Probability of being best', arms: arms.map((a) => a.key), values: arms.map((a) => a.pBest), format: percent });
  // A share covers the interval up to its point: the same time axis as the cumulative counts.
  const history = report.traffic.exposuresAt;
  const span = history.length > 1 ? [history[0], history[history.length - 1]] : undefined;
  timeChart(charts.share, { title: 'Traffic share over time', at: report.traffic.at, series: report.traffic.share, format: percent, span });
  timeChart(charts.exposures, { title: 'Exposures (cumulative)', at: report.traffic.exposuresAt, series: report.traffic.exposures, format: (v) => String(Math.round(v)) });
}

async function modelsPage() {
  const { body } = await api('models');
  const { body: flags } = await api('flags');
  showVersion(flags.version, flags.killSwitch);
  const rows = body.models.map((model) => {
    const pick = el('select', { 'aria-label': `${model.name} version` }, model.versions.map((v) => el('option', { value: v, selected: v === model.stable }, v)));
    return el('tr', { 'data-model': model.name },
      el('td', {}, model.name),
      el('td', {}, String(model.stable ?? '–')),
      el('td', {}, model.candidate ? `${model.candidate.version} (${model.candidate.canaryPercent} %)` : '–'),
      el('td', {}, pick, ' ', el('button', {
        type: 'button',
        onclick: async () => {
          const { status, body: answer } = await api(`models/${encodeURIComponent(model.name)}/rollback`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'if-match': `"${body.manifestVersion}"` },
            body: JSON.stringify({ version: pick.value }),
          });
          if (status === 200) say(`Saved: ${answer.audit.what}${answer.refusals?.length ? ` (sync refused: ${answer.refusals.map((r) => r.reason).join('; ')})` : ''}`);
          else say(`Not rolled back: ${answer.reason ?? (answer.issues ?? []).join('; ')}`, true);
          await route();
        },
      }, 'Make stable')),
    );
  });
  view.replaceChildren(el('section', {}, el('h2', {}, 'Models'),
    el('p', { class: 'hint' }, `Last sync: ${body.lastSync ? new Date(body.lastSync * 1000).toLocaleString() : 'never'}`),
    el('table', {}, el('thead', {}, el('tr', {}, ['Model', 'Stable', 'Candidate', 'Roll back to'].map((h) => el('th', {}, h)))), el('tbody', {}, rows))));
}

async function auditPage() {
  const [{ body }, { body: flags }] = await Promise.all([api('audit'), api('flags')]);
  showVersion(flags.version, flags.killSwitch);
  view.replaceChildren(el('section', {}, el('h2', {}, 'Audit log'),
    el('table', { id: 'audit' }, el('thead', {}, el('tr', {}, ['When', 'Who', 'What', 'Version', 'Before → after'].map((h) => el('th', {}, h)))),
      el('tbody', {}, body.entries.map((entry) => el('tr', {},
        el('td', {}, new Date(entry.atMs).toLocaleString()),
        el('td', {}, entry.who),
        el('td', {}, entry.what),
        el('td', {}, `${entry.versionBefore} → ${entry.versionAfter}`),
        el('td', {}, el('details', {}, el('summary', {}, 'diff'), el('pre', {}, JSON.stringify(entry.before, null, 1)), el('pre', {}, JSON.stringify(entry.after, null, 1))))))))));
}

async function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const experiment = hash.match(/^\/experiments\/(.+)$/);
  try {
    if (experiment) await experimentPage(decodeURIComponent(experiment[1]));
    else if (hash === '/models') await modelsPage();
    else if (hash === '/audit') await auditPage();
    else await home();
  } catch (error) {
    say(`Could not load: ${error.message}`, true);
  }
}

document.getElementById('kill-switch').addEventListener('click', () => {
  const on = !killSwitch;
  if (on && !confirm('Turn the kill switch on? Every page is served untouched until it is turned off.')) return;
  write('kill-switch', { on });
});
window.addEventListener('hashchange', () => { notice.hidden = true; route(); });
api('whoami').then(({ body }) => { document.getElementById('who').textContent = body.who; });
route();
