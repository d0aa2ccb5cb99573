// Latency and throughput of the Stellwerk Worker against a pass-through Worker, in one run:
// a local origin serves the ~100 KB landing page (tests/pages/landing.html), both Workers run
// in their own wrangler dev server (Node API, DevTools inspector off: ARCHITECTURE.md), Stellwerk
// with the example snapshot active, and autocannon loads them alternately with the same headers.
// Prints a markdown report. Only 127.0.0.1 is contacted; every phase has a fixed duration.
//
//   node bench/edge.mjs [--rounds 3] [--seconds 10] [--latency-seconds 5] [--connections 8]
//                       [--warmup 3] [--snapshot examples/snapshot.json]
//   node bench/edge.mjs --serve --port 18490 --origin URL [--snapshot FILE]
//       only Stellwerk, in front of URL, with FILE active; prints "ready URL" and runs until
//       SIGTERM/SIGINT (how the peer benchmark measures it: bench/README.md).
//   --no-model: publish the snapshot without the demo model (both modes).
//   --gate: the fraud gate's cost. A third dev server runs the same build and snapshot with the
//       gate off (fraud.mode "off", no fraud routes); both Stellwerk Workers get the shipped fraud
//       model (models/fraud) as fraud.model, and every request carries a full Chrome navigation's
//       headers so the model lets it through. Adds "gate on minus gate off" to the report.
//   --no-consumer: Stellwerk without its queue consumers (exposures stay in the local queue), to
//       tell the page path's own latency from what the consumer's batches, running in the same
//       dev server, add to it. A diagnostic: the figures to quote keep the consumer.
//   --inspector-port N (with --serve): DevTools inspector on N, for bench/profile.mjs; it costs
//       CPU per subrequest, so never for the figures.
//
// The Worker is copied from functions/cloudflare/build/ at start (scripts/build-worker.sh must
// have run), so a rebuild during the run does not change what is measured, and it is started
// from a generated wrangler.toml without [build], so starting it never runs cargo.
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import autocannon from 'autocannon';
import { unstable_startWorker } from 'wrangler';
import { addModel, demoStore } from '../demo/store.mjs';
import { ROOT, publish } from '../scripts/publish.mjs';

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const arg = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : fallback;
};
const positive = (name, fallback) => {
  const value = Number(arg(name, fallback));
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} wants a number >= 0`);
  return value;
};
if (flag('--help') || flag('-h')) {
  console.log(readFileSync(new URL(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).slice(0, 12).join('\n'));
  process.exit(0);
}

const BUILD = path.join(ROOT, 'functions/cloudflare/build');
const SNAPSHOT_FILE = path.resolve(arg('--snapshot', path.join(ROOT, 'examples/snapshot.json')));
// A fixed pseudonymous unit id (the format the Worker issues: 32 hex digits), so every request
// is the same returning visitor: same arms, same mutations, no Set-Cookie.
const UNIT_ID = arg('--unit', '5e11e7c0ffee5e11e7c0ffee5e11e7c0');
const GATE = flag('--gate');
const NO_CONSUMER = flag('--no-consumer');
const HEADERS = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'accept-language': 'de-DE,de;q=0.9,en;q=0.8',
  // identity: the runtime would gzip otherwise, and both Workers' own bytes are what we compare.
  'accept-encoding': 'identity',
  cookie: `stellwerk_id=${UNIT_ID}`,
  // What Chrome 131 on Linux adds to a navigation: with --gate the model scores these.
  ...(GATE ? {
    'sec-ch-ua': '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
    'sec-ch-ua-mobile': '?0',
    'sec-ch-ua-platform': '"Linux"',
    'upgrade-insecure-requests': '1',
    'sec-fetch-site': 'none',
    'sec-fetch-mode': 'navigate',
    'sec-fetch-user': '?1',
    'sec-fetch-dest': 'document',
  } : {}),
};
const FRAUD_MODEL_DIR = path.join(ROOT, 'models/fraud');

const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The generated wrangler.toml: the root one with `main` pointing at a private copy of the build and no [build]. */
async function stellwerkConfig(dir) {
  const build = path.join(dir, 'build');
  await mkdir(build, { recursive: true });
  for (const name of ['index.js', 'index_bg.wasm']) await copyFile(path.join(BUILD, name), path.join(build, name));
  let toml = await readFile(path.join(ROOT, 'wrangler.toml'), 'utf8');
  toml = toml.replace(/^main = .*$/m, `main = ${JSON.stringify(path.join(build, 'index.js'))}`);
  toml = toml.replace(/^\[build\][\s\S]*?(?=^\[)/m, '');
  // A consumer block runs up to the next blank line.
  if (NO_CONSUMER) toml = toml.replace(/^\[\[queues\.consumers\]\]\n(?:.+\n)*/gm, '');
  if (/^\[build\]/m.test(toml) || !toml.includes(build)) throw new Error('could not rewrite wrangler.toml for the bench');
  if (NO_CONSUMER && /^\[\[queues\.consumers\]\]/m.test(toml)) throw new Error('could not remove the queue consumers');
  const config = path.join(dir, 'wrangler.toml');
  await writeFile(config, toml);
  return { config, wasm: path.join(build, 'index_bg.wasm') };
}

/** workerd processes below this node process (each dev server runs its own). */
function workerdPids() {
  const parent = new Map();
  const comm = new Map();
  for (const entry of readdirSyncSafe('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      comm.set(Number(entry), stat.slice(stat.indexOf('(') + 1, close));
      parent.set(Number(entry), Number(stat.slice(close + 2).split(' ')[1]));
    } catch { /* the process ended meanwhile */ }
  }
  const below = (pid) => {
    for (let p = parent.get(pid); p; p = parent.get(p)) if (p === process.pid) return true;
    return false;
  };
  return [...comm].filter(([pid, name]) => name.startsWith('workerd') && below(pid)).map(([pid]) => pid);
}
function readdirSyncSafe(dir) {
  try { return readdirSync(dir); } catch { return []; }
}

/** CPU time (ms) of the given processes, user + system. */
function cpuMs(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch { /* gone */ }
  }
  return ticks * 10; // USER_HZ is 100 on Linux
}

async function startWorker({ config, port, vars = {}, secrets = {}, persistTo, inspectorPort }) {
  const before = new Set(workerdPids());
  const bindings = {};
  for (const [name, value] of Object.entries(vars)) bindings[name] = { type: 'plain_text', value: String(value) };
  for (const [name, value] of Object.entries(secrets)) bindings[name] = { type: 'secret_text', value: String(value) };
  const worker = await unstable_startWorker({
    config,
    bindings,
    sendMetrics: false,
    dev: {
      inspector: inspectorPort ? { hostname: '127.0.0.1', port: inspectorPort } : false,
      server: { hostname: '127.0.0.1', port },
      persist: persistTo ?? false,
      watch: false,
      liveReload: false,
      logLevel: 'warn',
    },
  });
  await worker.ready;
  const url = (await worker.url).origin;
  await (await fetch(url, { headers: HEADERS })).arrayBuffer(); // the runtime may start lazily
  await sleep(1000);
  const pids = workerdPids().filter((pid) => !before.has(pid));
  process.stderr.write(`workerd processes of ${config}: ${pids.join(' ')}\n`);
  return { url, worker, pids };
}

/** The snapshot to measure: the file's, with --gate the shipped fraud model as fraud.model and the gate `on` or off. */
function benchSnapshot(gate = 'on') {
  const snapshot = JSON.parse(readFileSync(SNAPSHOT_FILE, 'utf8'));
  if (!GATE) return snapshot;
  const { name } = JSON.parse(readFileSync(path.join(FRAUD_MODEL_DIR, 'fraud-gate.manifest.json'), 'utf8'));
  const fraud = { ...snapshot.fraud, model: name };
  if (gate === 'off') Object.assign(fraud, { mode: 'off', routes: [] });
  return { ...snapshot, fraud, models: [...(snapshot.models ?? []), { name }] };
}


/** Seeds R2 with `snapshot` (+ the demo model), starts Stellwerk and activates it through the admin sync. */
// One pair of keys per run: every Stellwerk Worker of the run sees the fixed visitor as the
// same pseudonymous unit, so hash-based assignments (fixed arms, traffic shares) agree.
const RUN_KEYS = { HMAC_KEY: randomBytes(32).toString('hex'), UNIT_ID_KEY: randomBytes(32).toString('hex') };

async function startStellwerk({ dir, originUrl, port = 0, snapshot = benchSnapshot(), inspectorPort }) {
  const { config, wasm } = await stellwerkConfig(dir);
  const persistTo = path.join(dir, 'state');
  const store = demoStore({ snapshot: JSON.stringify(snapshot) });
  if (GATE) addModel(store, FRAUD_MODEL_DIR, 'fraud-gate');
  if (flag('--no-model')) {
    // Publish the snapshot alone: no model pointer, so no page runs a model.
    for (const key of Object.keys(store)) if (key.startsWith('models/')) delete store[key];
    const manifest = JSON.parse(store['manifest.json']);
    store['manifest.json'] = Buffer.from(JSON.stringify({ ...manifest, models: [] }, null, 2));
  }
  const adminToken = randomBytes(16).toString('hex');
  const started = await startWorker({
    config,
    port,
    persistTo,
    inspectorPort,
    // A snapshot read per isolate for the whole run: the bench measures the page path, not KV.
    vars: { ORIGIN_URL: originUrl, SNAPSHOT_TTL_MS: 24 * 3600 * 1000 },
    secrets: { ADMIN_TOKEN: adminToken, ...RUN_KEYS },
  });
  const synced = await publish({ url: started.url, adminToken, objects: store });
  const want = snapshot.version;
  if (synced.snapshot?.version !== want || synced.refusals?.length) {
    await started.worker.dispose();
    throw new Error(`sync did not activate ${want}: ${JSON.stringify(synced)}`);
  }
  return { ...started, wasm, version: want };
}

function startOrigin(page) {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': page.length, 'cache-control': 'public, max-age=60' });
    res.end(page);
  });
  server.keepAliveTimeout = 60_000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
  })));
}

async function get(url) {
  const response = await fetch(url, { headers: HEADERS });
  return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
}

/** One fixed-duration load phase; latency percentiles from every response's own duration. */
async function load(url, { connections, seconds, pids }) {
  const durations = [];
  let bad = 0;
  const cpuBefore = cpuMs(pids);
  const allPids = workerdPids();
  const allBefore = cpuMs(allPids) + process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000;
  const result = await new Promise((resolve, reject) => {
    const instance = autocannon({ url, connections, duration: seconds, headers: HEADERS, timeout: 10 }, (err, res) => (err ? reject(err) : resolve(res)));
    instance.on('response', (client, status, bytes, ms) => {
      if (status === 200) durations.push(ms); else bad += 1;
    });
  });
  const cpu = cpuMs(pids) - cpuBefore;
  const allCpu = cpuMs(allPids) + process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000 - allBefore;
  durations.sort((a, b) => a - b);
  const pct = (p) => (durations.length ? durations[Math.min(durations.length - 1, Math.ceil(p * durations.length) - 1)] : NaN);
  return {
    rps: durations.length / seconds,
    p50: pct(0.5),
    p99: pct(0.99),
    n: durations.length,
    bad: bad + result.errors + result.timeouts,
    cpuPerReq: durations.length ? cpu / durations.length : NaN,
    // Everything this run started (node: load generator, origin, wrangler; every workerd).
    allCpuPerReq: durations.length ? allCpu / durations.length : NaN,
  };
}

const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const f = (x, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');

async function serve() {
  const port = Number(arg('--port', 18490));
  const originUrl = arg('--origin', process.env.ORIGIN_URL);
  if (!originUrl || !/^http:\/\/(127\.0\.0\.1|localhost):\d+\/?$/.test(originUrl)) throw new Error('--serve needs --origin http://127.0.0.1:PORT');
  const dir = await mkdtemp(path.join(tmpdir(), 'stellwerk-bench-'));
  const inspectorPort = arg('--inspector-port') ? Number(arg('--inspector-port')) : undefined;
  const stellwerk = await startStellwerk({ dir, originUrl: originUrl.replace(/\/$/, ''), port, inspectorPort });
  console.log(`ready ${stellwerk.url}/ snapshot ${stellwerk.version} pid ${process.pid}`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try { await stellwerk.worker.dispose(); } finally {
      await rm(dir, { recursive: true, force: true });
      process.exit(0);
    }
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function bench() {
  const rounds = positive('--rounds', 3);
  const seconds = positive('--seconds', 10);
  const latencySeconds = positive('--latency-seconds', 5);
  const connections = positive('--connections', 8);
  const warmup = positive('--warmup', 3);
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const page = readFileSync(path.join(ROOT, 'tests/pages/landing.html'));
  const dir = await mkdtemp(path.join(tmpdir(), 'stellwerk-bench-'));
  const stopList = [];
  const stopAll = async () => {
    for (const stop of stopList.reverse()) await stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => stopAll().then(() => process.exit(130)));
  process.on('SIGTERM', () => stopAll().then(() => process.exit(143)));

  try {
    const origin = await startOrigin(page);
    stopList.push(origin.close);
    const pass = await startWorker({ config: path.join(ROOT, 'bench/passthrough/wrangler.toml'), port: 0, vars: { ORIGIN_URL: origin.url } });
    stopList.push(() => pass.worker.dispose());
    const stellwerk = await startStellwerk({ dir, originUrl: origin.url });
    stopList.push(() => stellwerk.worker.dispose());
    // Only these dev servers run below this process so far: every workerd not the pass-through's
    // is Stellwerk's (one of its processes can appear before its start resolves).
    stellwerk.pids = workerdPids().filter((pid) => !pass.pids.includes(pid));
    process.stderr.write(`workerd processes of stellwerk: ${stellwerk.pids.join(' ')}\n`);
    let gateOff = null;
    if (GATE) {
      const offDir = path.join(dir, 'gate-off');
      await mkdir(offDir, { recursive: true });
      gateOff = await startStellwerk({ dir: offDir, originUrl: origin.url, snapshot: benchSnapshot('off') });
      stopList.push(() => gateOff.worker.dispose());
      gateOff.pids = workerdPids().filter((pid) => !pass.pids.includes(pid) && !stellwerk.pids.includes(pid));
      process.stderr.write(`workerd processes of stellwerk-gate-off: ${gateOff.pids.join(' ')}\n`);
    }

    const wasmBytes = readFileSync(stellwerk.wasm);
    const gz = gzipSync(wasmBytes, { level: 9 }).length;

    // ---------- verification before load ----------
    const checks = [];
    const direct = await get(`${origin.url}/`);
    const viaPass = await get(`${pass.url}/`);
    const passOk = viaPass.status === 200 && viaPass.body.equals(direct.body);
    checks.push(`${passOk ? 'PASS' : 'FAIL'}  pass-through: ${viaPass.status}, ${viaPass.body.length} bytes, sha256 ${sha(viaPass.body).slice(0, 16)} (origin ${direct.body.length} bytes, sha256 ${sha(direct.body).slice(0, 16)})${passOk ? ', byte-identical' : ''}`);
    const viaStellwerk = await get(`${stellwerk.url}/`);
    const again = await get(`${stellwerk.url}/`);
    const decision = viaStellwerk.headers.get('x-stellwerk') ?? '';
    const arms = decision.split(', ').filter((part) => part.includes('=') && !part.startsWith('model:'));
    const rewritten = viaStellwerk.status === 200 && !viaStellwerk.body.equals(direct.body);
    const snapshot = JSON.parse(readFileSync(SNAPSHOT_FILE, 'utf8'));
    const applied = [];
    for (const part of arms) {
      const [experiment, armKey] = part.split('=');
      const arm = snapshot.experiments.find((e) => e.key === experiment)?.arms.find((a) => a.key === armKey);
      for (const m of arm?.mutations ?? []) {
        if (m.action === 'set_text') applied.push(`${m.selector} -> ${JSON.stringify(m.value)}: ${viaStellwerk.body.includes(m.value) ? 'seen' : 'MISSING'}`);
      }
    }
    const stellwerkOk = rewritten && arms.length > 0 && !applied.some((a) => a.endsWith('MISSING'));
    checks.push(`${stellwerkOk ? 'PASS' : 'FAIL'}  stellwerk: ${viaStellwerk.status}, ${viaStellwerk.body.length} bytes, x-stellwerk: ${decision || '(absent)'}, set-cookie: ${viaStellwerk.headers.get('set-cookie') ? 'yes' : 'no'}, content-type: ${viaStellwerk.headers.get('content-type')}`);
    for (const a of applied) checks.push(`      ${a}`);
    checks.push(`${again.headers.get('x-stellwerk') === decision ? 'PASS' : 'NOTE'}  second request, same cookie: x-stellwerk: ${again.headers.get('x-stellwerk')}`);
    let gateOk = true;
    if (gateOff) {
      // The measured request passes both; the same request from headless Chrome 127 with its user
      // agent set to Chrome 131 (the client hints give it away, no rule matches it) is blocked by
      // the model only where the gate is on.
      const viaOff = await get(`${gateOff.url}/`);
      const offArms = (viaOff.headers.get('x-stellwerk') ?? '').split(', ').filter((part) => part.includes('=') && !part.startsWith('model:'));
      const headless = { ...HEADERS, 'sec-ch-ua': '"HeadlessChrome";v="127", "Chromium";v="127", "Not)A;Brand";v="99"' };
      const probe = async (url) => (await fetch(url, { headers: headless })).status;
      const [onStatus, offStatus] = [await probe(`${stellwerk.url}/`), await probe(`${gateOff.url}/`)];
      // A bandit's first draw for the visitor is each Worker's own (request randomness), so its
      // arm may differ; the experiments the visitor is in may not.
      const experiments = (list) => list.map((part) => part.split('=')[0]).join();
      gateOk = viaOff.status === 200 && experiments(offArms) === experiments(arms) && onStatus === 403 && offStatus === 200;
      checks.push(`${gateOk ? 'PASS' : 'FAIL'}  gate off: ${viaOff.status}, same experiments (${offArms.join(', ')}); headless Chrome: gate on ${onStatus}, gate off ${offStatus}`);
    }
    if (!passOk || !stellwerkOk || !gateOk) {
      console.log(checks.join('\n'));
      throw new Error('verification failed; not loading');
    }

    // ---------- load ----------
    const targets = [
      { name: 'passthrough', url: `${pass.url}/`, pids: pass.pids },
      { name: 'stellwerk', url: `${stellwerk.url}/`, pids: stellwerk.pids },
      ...(gateOff ? [{ name: 'stellwerk-gate-off', url: `${gateOff.url}/`, pids: gateOff.pids }] : []),
    ];
    for (const t of targets) if (warmup > 0) await load(t.url, { connections, seconds: warmup, pids: t.pids });
    const results = []; // results[round][name] = { hi, lo }
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 ? [...targets].reverse() : targets;
      const round = {};
      for (const t of order) {
        const hi = await load(t.url, { connections, seconds, pids: t.pids });
        const lo = latencySeconds > 0 ? await load(t.url, { connections: 1, seconds: latencySeconds, pids: t.pids }) : null;
        round[t.name] = { hi, lo, order: order.map((o) => o.name).join(' → ') };
        process.stderr.write(`round ${r + 1}/${rounds} ${t.name}: ${f(hi.rps, 0)} req/s p50 ${f(hi.p50)} p99 ${f(hi.p99)} | c=1 p50 ${f(lo?.p50)} p99 ${f(lo?.p99)}\n`);
      }
      results.push(round);
    }
    const loadAfter = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

    // ---------- report ----------
    const col = (name, phase, key) => median(results.map((round) => round[name][phase]?.[key]));
    const ratio = (phase, key) => median(results.map((round) => round.stellwerk[phase]?.[key] / round.passthrough[phase]?.[key]));
    const added = (key) => results.map((round) => round.stellwerk.lo?.[key] - round.passthrough.lo?.[key]);
    const addedP50 = median(added('p50'));
    const addedP99 = median(added('p99'));
    const out = [];
    out.push(`## Stellwerk vs pass-through (bench/edge.mjs)`);
    out.push('');
    out.push(`- date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`);
    out.push(`- machine: ${cpuInfo()}; load average before: ${loadBefore}, after: ${loadAfter}`);
    out.push(`- command: \`${['node bench/edge.mjs', ...argv].join(' ')}\``);
    out.push(`- runs: ${rounds} round(s) × per target [${seconds} s at ${connections} connections + ${latencySeconds} s at 1 connection], order alternating per round, after ${warmup} s warm-up each; every Worker in its own wrangler dev server (unstable_startWorker, inspector off, live reload off), load generator (autocannon) and origin in the same node process`);
    if (NO_CONSUMER) out.push('- **diagnostic run without the queue consumers** (--no-consumer): the page path alone');
    out.push(`- page: tests/pages/landing.html, ${page.length} bytes, from a node:http origin (text/html; charset=utf-8); request headers: browser user agent, accept-language, accept-encoding: identity, cookie stellwerk_id=${UNIT_ID}`);
    out.push(`- Stellwerk: snapshot ${stellwerk.version} (${path.relative(ROOT, SNAPSHOT_FILE)}) activated by the admin sync, SNAPSHOT_TTL_MS 24 h; the visitor gets \`x-stellwerk: ${decision}\`, ${viaStellwerk.body.length} bytes (origin ${direct.body.length})`);
    out.push(`- Worker wasm (functions/cloudflare/build/index_bg.wasm, modified ${statSync(path.join(BUILD, 'index_bg.wasm')).mtime.toISOString()}): ${wasmBytes.length} bytes raw (${f(wasmBytes.length / 1048576)} MiB), ${gz} bytes gzip -9 (${f(gz / 1048576)} MiB)`);
    out.push('');
    out.push('Verification before load:');
    out.push('');
    out.push('```');
    out.push(...checks);
    out.push('```');
    out.push('');
    out.push(`| target | req/s (c=${connections}) | p50 ms (c=${connections}) | p99 ms (c=${connections}) | c=1 p50 ms | c=1 p99 ms | workerd cpu ms/req (c=${connections}) | all cpu ms/req (c=${connections}) | non-200/errors |`);
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const t of targets) {
      const badTotal = results.reduce((sum, round) => sum + round[t.name].hi.bad + (round[t.name].lo?.bad ?? 0), 0);
      out.push(`| ${t.name} | ${f(col(t.name, 'hi', 'rps'), 0)} | ${f(col(t.name, 'hi', 'p50'))} | ${f(col(t.name, 'hi', 'p99'))} | ${f(col(t.name, 'lo', 'p50'))} | ${f(col(t.name, 'lo', 'p99'))} | ${f(col(t.name, 'hi', 'cpuPerReq'))} | ${f(col(t.name, 'hi', 'allCpuPerReq'))} | ${badTotal} |`);
    }
    out.push(`| stellwerk / passthrough | ${f(ratio('hi', 'rps'))}× | ${f(ratio('hi', 'p50'))}× | ${f(ratio('hi', 'p99'))}× | ${f(ratio('lo', 'p50'))}× | ${f(ratio('lo', 'p99'))}× | ${f(ratio('hi', 'cpuPerReq'))}× | ${f(ratio('hi', 'allCpuPerReq'))}× | |`);
    out.push('');
    out.push(`Added latency at c=1 (Stellwerk minus pass-through, per round, median over ${rounds}): **p50 ${f(addedP50)} ms** (target ≤ 1 ms: ${addedP50 <= 1 ? 'met' : 'NOT met'}), **p99 ${f(addedP99)} ms** (target ≤ 3 ms: ${addedP99 <= 3 ? 'met' : 'NOT met'}). Per round: p50 ${added('p50').map((x) => f(x)).join(', ')}; p99 ${added('p99').map((x) => f(x)).join(', ')}.`);
    out.push('');
    if (gateOff) {
      const gateAdded = (phase, key) => results.map((round) => round.stellwerk[phase]?.[key] - round['stellwerk-gate-off'][phase]?.[key]);
      out.push(`**Fraud gate** (stellwerk with the gate on and the fraud model scoring every page, minus the same build and snapshot with \`fraud.mode: off\`; median over ${rounds} round(s)): c=1 p50 **${f(median(gateAdded('lo', 'p50')))} ms**, c=1 p99 ${f(median(gateAdded('lo', 'p99')))} ms, workerd CPU **${f(median(gateAdded('hi', 'cpuPerReq')))} ms/req** at c=${connections}; throughput ratio on/off ${f(median(results.map((round) => round.stellwerk.hi.rps / round['stellwerk-gate-off'].hi.rps)))}×. Per round c=1 p50: ${gateAdded('lo', 'p50').map((x) => f(x)).join(', ')}.`);
      out.push('');
    }
    out.push('Per round (c=8 req/s, p50, p99 | c=1 p50, p99):');
    out.push('');
    out.push(`| round | order | ${targets.map((t) => t.name).join(' | ')} |`);
    out.push(`|---|---|${targets.map(() => '---').join('|')}|`);
    results.forEach((round, i) => {
      const cell = (x) => `${f(x.hi.rps, 0)}, ${f(x.hi.p50)}, ${f(x.hi.p99)} \\| ${f(x.lo?.p50)}, ${f(x.lo?.p99)}`;
      out.push(`| ${i + 1} | ${round.passthrough.order} | ${targets.map((t) => cell(round[t.name])).join(' | ')} |`);
    });
    out.push('');
    out.push('`workerd cpu ms/req`: user+system CPU of the workerd processes of that dev server (its ProxyWorker and the Worker) over the c=8 phase, divided by 200 responses (\`/proc\` ticks of 10 ms); `all cpu ms/req`: the same for every workerd this run started plus the node process (load generator, origin, wrangler).');
    console.log(out.join('\n'));
  } finally {
    await stopAll();
  }
}

function cpuInfo() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? 'unknown CPU';
  const cores = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
  return `${cores} cores (${model}), node ${process.version}`;
}

if (flag('--serve')) await serve();
else {
  await bench();
  process.exit(0);
}
