// Where the Worker's time goes per page: a V8 CPU profile of the Stellwerk Worker in wrangler dev
// (DevTools protocol: Profiler.start/stop) while one connection loads the ~100 KB landing page.
// Not a benchmark (the inspector itself costs CPU per subrequest): it says which functions the
// time is spent in, bench/edge.mjs says how much.
//
//   node bench/profile.mjs [--seconds 10] [--snapshot FILE] [--no-model]
//        [--path /] [--out /tmp/stellwerk.cpuprofile] [--top 40]
//
// Starts a node:http origin serving tests/pages/landing.html, then `bench/edge.mjs --serve` with
// the inspector on, profiles, prints self time by function and by crate, and stops both.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import autocannon from 'autocannon';
// `ws` (installed with wrangler's miniflare): Node 20's WebSocket cannot send the Origin header
// wrangler's inspector proxy requires.
import WebSocket from 'ws';
import { ROOT } from '../scripts/publish.mjs';
import { freePort } from '../tests/ports.mjs';

const argv = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : fallback;
};
const seconds = Number(arg('--seconds', 10));
const top = Number(arg('--top', 40));
const out = arg('--out', '/tmp/stellwerk.cpuprofile');
const pagePath = arg('--path', '/');

const page = readFileSync(path.join(ROOT, 'tests/pages/landing.html'));
const origin = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': page.length });
  res.end(page);
});
await new Promise((resolve) => origin.listen(0, '127.0.0.1', resolve));
const originUrl = `http://127.0.0.1:${origin.address().port}`;

const [port, inspectorPort] = [await freePort(), await freePort()];
const serveArgs = ['bench/edge.mjs', '--serve', '--port', port, '--origin', originUrl, '--inspector-port', inspectorPort];
for (const name of ['--snapshot']) if (arg(name)) serveArgs.push(name, arg(name));
if (argv.includes('--no-model')) serveArgs.push('--no-model');
const server = spawn(process.execPath, serveArgs.map(String), { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
const stopServer = () => { try { process.kill(-server.pid, 'SIGTERM'); } catch { /* gone */ } };
process.on('exit', stopServer);
await new Promise((resolve, reject) => {
  server.stdout.on('data', (chunk) => { if (String(chunk).includes('ready')) resolve(); });
  server.on('exit', (code) => reject(new Error(`edge.mjs --serve exited with ${code}`)));
});
const url = `http://127.0.0.1:${port}${pagePath}`;
const headers = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  accept: 'text/html', 'accept-language': 'de-DE,de;q=0.9', 'accept-encoding': 'identity',
  cookie: 'stellwerk_id=5e11e7c0ffee5e11e7c0ffee5e11e7c0',
};
const first = await fetch(url, { headers });
console.log(`GET ${pagePath}: ${first.status}, x-stellwerk: ${first.headers.get('x-stellwerk')}, ${(await first.arrayBuffer()).byteLength} bytes`);

// The Stellwerk Worker's target (the dev server also lists its proxy worker).
const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
const target = targets.find((t) => !/ProxyWorker|InspectorProxy/i.test(t.title)) ?? targets[0];
console.log(`inspector targets: ${targets.map((t) => t.title).join(', ')}; profiling ${target.title}`);
const socket = new WebSocket(target.webSocketDebuggerUrl, { origin: 'http://localhost' });
await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
let nextId = 1;
const pending = new Map();
socket.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.id && pending.has(message.id)) {
    pending.get(message.id)(message);
    pending.delete(message.id);
  }
};
const send = (method, params = {}) => new Promise((resolve, reject) => {
  const id = nextId++;
  pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
  socket.send(JSON.stringify({ id, method, params }));
});

const load = (duration) => new Promise((resolve, reject) => {
  autocannon({ url, connections: 1, duration, headers }, (err, res) => (err ? reject(err) : resolve(res)));
});
await load(3); // warm: model plans loaded, wasm tiered up
await send('Profiler.enable');
await send('Profiler.setSamplingInterval', { interval: 100 });
await send('Profiler.start');
const result = await load(seconds);
const { profile } = await send('Profiler.stop');
socket.close();
writeFileSync(out, JSON.stringify(profile));
const requests = result.requests.total;
console.log(`${requests} requests in ${seconds} s (p50 ${result.latency.p50} ms); profile: ${out}`);

// Self time per node, from the samples.
const selfUs = new Map();
for (let i = 0; i < profile.samples.length; i++) {
  selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const byFunction = new Map();
const byGroup = new Map();
const groupOf = (fn, url) => {
  if (fn.startsWith('(')) return fn;
  if (/^\$?_ZN|::|^\$?wasm-function/.test(fn) || url.includes('wasm')) {
    const crate = fn.replace(/^\$/, '').replace(/^_ZN\d+/, '').replace(/^[_<$LT&]+/, '').match(/^([A-Za-z_][A-Za-z0-9_]*?)(::|\.\.|\d|$)/);
    return `wasm ${crate ? crate[1] : '?'}`;
  }
  return `js ${path.basename(url) || '(anonymous)'}`;
};
for (const node of profile.nodes) {
  const us = selfUs.get(node.id) ?? 0;
  if (!us) continue;
  const { functionName, url: file } = node.callFrame;
  const key = `${functionName || '(anonymous)'} ${path.basename(file)}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  const group = groupOf(functionName || '(anonymous)', file);
  byGroup.set(group, (byGroup.get(group) ?? 0) + us);
}
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
const perReq = (us) => (us / 1000 / requests).toFixed(3).padStart(8);
const show = (title, map, n) => {
  console.log(`\n${title} (ms per request, % of profiled time):`);
  for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, n)) {
    console.log(`${perReq(us)} ${((100 * us) / total).toFixed(1).padStart(5)}%  ${key.slice(0, 150)}`);
  }
};
console.log(`profiled ${(total / 1000).toFixed(0)} ms, ${perReq(total)} ms per request`);
show('by group', byGroup, 25);
show('by function', byFunction, top);
stopServer();
origin.close();
process.exit(0);
