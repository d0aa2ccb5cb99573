// End-to-end tests of the Spin component, run in the test host (tests/spin-host) exactly as
// `spin up` would run it, against a real redis-server and the demo origin.
//   node --test tests/spin/   (scripts/spin-test.sh builds everything first)
import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { startSpinStack, CLI } from './stack.mjs';
import { demoStore, sha256 } from '../../demo/store.mjs';
import { publish as publishObjects } from '../../scripts/publish.mjs';
import { assertConformance, runConformance } from '../conformance/driver.mjs';

const SNAPSHOT = JSON.parse(readFileSync(new URL('../../examples/snapshot.json', import.meta.url), 'utf8'));
const UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';
const STREAM = 'stellwerk:events';
const ARM_TEXT = {
  control: 'Gear for the long way up',
  benefit: 'Gear that lasts a lifetime',
  urgency: 'Only this week: our best sellers, restocked',
};

let stack;
const unit = (i) => i.toString(16).padStart(32, '0');
const publish = (doc) => stack.cli('SET', 'snapshot:active', JSON.stringify(doc));
const streamLength = () => Number(stack.cli('XLEN', STREAM));
const posteriors = () => JSON.parse(stack.cli('GET', 'posteriors:active') || 'null');

async function visit(i, path = '/', headers = {}) {
  const res = await fetch(stack.url + path, { headers: { 'user-agent': UA, cookie: `stellwerk_id=${unit(i)}`, ...headers } });
  const body = await res.text();
  const injected = body.match(/window\.__stellwerk=(.*?);<\/script>/);
  return { res, body, page: injected ? JSON.parse(injected[1]) : null };
}

/** `hero-headline=arm` from the decision header. */
const heroArm = (res) => /hero-headline=(\w+)/.exec(res.headers.get('x-stellwerk') ?? '')?.[1];

before(async () => {
  stack = await startSpinStack();
  publish(SNAPSHOT);
});
after(async () => stack?.stop());

test('health reports the snapshot the component reads from the key-value store', async () => {
  const res = await fetch(`${stack.url}/_stellwerk/health`);
  assert.equal(res.status, 200);
  const health = await res.json();
  assert.equal(health.status, 'ok');
  assert.equal(health.platform, 'spin');
  assert.equal(health.snapshot, SNAPSHOT.version);
});

test('each arm gets its own rewritten HTML, with the origin headers kept', async () => {
  const seen = new Map();
  for (let i = 1; i <= 60 && seen.size < 3; i++) {
    const v = await visit(i);
    const arm = heroArm(v.res);
    assert.ok(arm, `visitor ${i} was assigned an arm`);
    if (!seen.has(arm)) seen.set(arm, v);
  }
  assert.deepEqual([...seen.keys()].sort(), ['benefit', 'control', 'urgency']);
  for (const [arm, { res, body, page }] of seen) {
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(res.headers.get('cache-control'), 'private, no-store');
    assert.equal(res.headers.get('x-origin'), 'stellwerk-demo');
    assert.equal(res.headers.get('content-length'), null);
    assert.match(body, new RegExp(`<h1>${ARM_TEXT[arm]}</h1>`));
    for (const other of Object.keys(ARM_TEXT).filter((a) => a !== arm)) {
      assert.doesNotMatch(body, new RegExp(`<h1>${ARM_TEXT[other]}</h1>`));
    }
    assert.match(body, /<script src="\/_stellwerk\/beacon\.js" defer><\/script>/);
    const hero = page.experiments.find((e) => e.experiment === 'hero-headline');
    assert.equal(hero.arm, arm);
  }
  // Same visitor, same arm (sticky).
  const again = await visit(1);
  assert.equal(heroArm(again.res), heroArm((await visit(1)).res));
});

test('a new visitor gets a unit cookie; non-HTML passes through byte for byte', async () => {
  const res = await fetch(`${stack.url}/`, { headers: { 'user-agent': UA } });
  assert.match(res.headers.get('set-cookie') ?? '', /stellwerk_id=[0-9a-f]{32}; Path=\//);
  await res.arrayBuffer();
  const direct = Buffer.from(await (await fetch(`${stack.origin.url}/logo.svg`)).arrayBuffer());
  const edge = await fetch(`${stack.url}/logo.svg`, { headers: { 'user-agent': UA, cookie: `stellwerk_id=${unit(5)}` } });
  assert.equal(edge.headers.get('content-type'), 'image/svg+xml');
  assert.deepEqual(Buffer.from(await edge.arrayBuffer()), direct);
});

test('automated requests get the gate page; reserved routes answer as the core says', async () => {
  const blocked = await fetch(`${stack.url}/`, { headers: { 'user-agent': 'curl/8.5.0' } });
  assert.equal(blocked.status, 403);
  assert.match(blocked.headers.get('x-stellwerk-gate'), /^block; score=/);
  assert.match(await blocked.text(), /Access denied/);

  const script = await fetch(`${stack.url}/_stellwerk/beacon.js`);
  assert.equal(script.status, 200);
  assert.match(script.headers.get('content-type'), /^text\/javascript/);
  assert.match(await script.text(), /\/_stellwerk\/feedback/);

  const wrongMethod = await fetch(`${stack.url}/_stellwerk/feedback`);
  assert.equal(wrongMethod.status, 405);
  assert.equal((await wrongMethod.json()).error, 'method_not_allowed');
  const missing = await fetch(`${stack.url}/_stellwerk/nothing`);
  assert.equal(missing.status, 404);
  await missing.arrayBuffer();
});

test('feedback round trip: accepted once, duplicate refused, forgeries rejected', async () => {
  const { page } = await visit(1000);
  const token = page.experiments.find((e) => e.experiment === 'hero-headline').token;
  const post = (body) => fetch(`${stack.url}/_stellwerk/feedback`, {
    method: 'POST', headers: { 'user-agent': UA, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const before = streamLength();
  // At a person's pace: a click within fraud.minClickSeconds (default 1 s) of its page is quarantined.
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  const first = await post({ token, type: 'click' });
  assert.equal(first.status, 202);
  const accepted = await first.json();
  assert.equal(accepted.accepted, true);
  assert.deepEqual(accepted.destinations, ['bandit', 'analytics']);
  assert.equal(streamLength(), before + 1, 'the click is in the stream');
  const [, field, json] = stack.cli('XREVRANGE', STREAM, '+', '-', 'COUNT', '1').split('\n');
  assert.equal(field, 'event');
  assert.equal(JSON.parse(json).id, accepted.id);

  const duplicate = await post({ token, type: 'click' });
  assert.equal(duplicate.status, 409);
  assert.equal((await duplicate.json()).error, 'duplicate');

  const forged = await post({ token: token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA'), type: 'click' });
  assert.ok(forged.status >= 400 && forged.status < 500, `forged token: ${forged.status}`);
  await forged.arrayBuffer();
  const garbage = await post({ nonsense: true });
  assert.equal(garbage.status, 422);
  assert.ok((await garbage.json()).error, 'the core names the rejection');
  assert.equal(streamLength(), before + 1, 'rejected feedback never reaches the stream');
});

/** Page views of visitors `from..to`; resolves to exposures of hero-headline per arm. */
async function views(from, to) {
  const exposures = {};
  for (let i = from; i < to; i++) {
    const arm = heroArm((await visit(i)).res);
    exposures[arm] = (exposures[arm] ?? 0) + 1;
  }
  return exposures;
}

function heroCounts() {
  const doc = posteriors();
  const arms = doc?.experiments?.['hero-headline']?.arms ?? {};
  return Object.fromEntries(Object.entries(arms).map(([arm, s]) => [arm, s.exposures]));
}

const add = (a, b) => Object.fromEntries([...new Set([...Object.keys(a), ...Object.keys(b)])].map((k) => [k, (a[k] ?? 0) + (b[k] ?? 0)]));

test('the aggregator moves the posteriors and the component picks them up; a crash mid-batch loses and double-counts nothing', async () => {
  // Drain what earlier tests queued, to start from known counts.
  const drained = await stack.aggregate('--once');
  assert.equal(drained.status, 0);
  const start = heroCounts();
  const version0 = posteriors()?.version ?? 0;

  const sent = await views(2000, 2030);
  const pending = Number(stack.cli('XLEN', STREAM));
  assert.ok(pending > 30, 'every view queued its exposures');

  // Crash right after writing the posteriors of the first batch, before acknowledging it.
  const crashed = await stack.aggregate('--once', '--count', '7', '--exit-before-ack', '1');
  assert.equal(crashed.status, 3);
  assert.equal(crashed.lines.length, 1);
  assert.ok(crashed.lines[0].report.applied > 0);
  const pel = stack.cli('XPENDING', STREAM, 'stellwerk-aggregators');
  assert.match(pel, /^7\n/, 'the crashed batch is still pending');

  // Restart: its pending entries come back first and count as duplicates, not twice.
  const restarted = await stack.aggregate('--once', '--count', '7');
  assert.equal(restarted.status, 0);
  assert.equal(restarted.lines[0].entries, 7);
  assert.equal(restarted.lines[0].report.duplicates, crashed.lines[0].report.applied);
  assert.equal(restarted.lines[0].report.applied, 0);
  assert.deepEqual(heroCounts(), add(start, sent), 'every exposure counted exactly once');
  assert.match(stack.cli('XPENDING', STREAM, 'stellwerk-aggregators'), /^0\n?/);

  // The component serves with what the aggregator published.
  const doc = posteriors();
  assert.ok(doc.version > version0);
  // They read the published document; the aggregator keeps the applied ids in its own state.
  assert.equal(doc.applied, undefined, Object.keys(doc).join(', '));
  const state = JSON.parse(stack.cli('GET', 'posteriors:state'));
  assert.equal(state.version, doc.version);
  assert.deepEqual(state.experiments, doc.experiments);
  assert.ok(Object.keys(state.applied).length >= 30, 'the state remembers the applied ids');
  const health = await (await fetch(`${stack.url}/_stellwerk/health`)).json();
  assert.equal(health.posteriors.version, doc.version);
  const probabilities = doc.experiments['hero-headline'].probabilities;
  assert.equal(Object.keys(probabilities).length, 3);
});

test('the aggregator joins training rows and writes them to the object store, signed, as the Worker does to R2', async () => {
  assert.equal((await stack.aggregate('--once')).status, 0);
  const sent = await views(2500, 2520);
  const { accessKeyId, secretAccessKey, region } = stack.credentials;
  const putsBefore = stack.store.requests.filter((r) => r.method === 'PUT').length;
  const joined = await stack.aggregate('--once', '--join-seconds', '0', '--store', `${stack.store.url}/bucket/stellwerk`,
    '--access-key-id', accessKeyId, '--secret-access-key', secretAccessKey, '--region', region);
  assert.equal(joined.status, 0);
  const rowsReported = joined.lines.reduce((sum, line) => sum + line.trainingRows, 0);
  const puts = stack.store.requests.filter((r) => r.method === 'PUT').slice(putsBefore);
  assert.ok(puts.length > 0, 'training batches were written');
  for (const put of puts) {
    assert.match(put.key, /^bucket\/stellwerk\/logs\/training\/dt=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/[0-9a-f]+\.ndjson$/);
    assert.equal(put.signed, true, put.key);
  }
  const rows = puts.flatMap((put) => stack.store.objects.get(put.key).toString().trim().split('\n').map((line) => JSON.parse(line)));
  assert.equal(rows.length, rowsReported);
  const hero = rows.filter((row) => row.experiment === 'hero-headline');
  // Every view of this test became a row (earlier tests' exposures may join them).
  assert.ok(hero.length >= Object.values(sent).reduce((a, b) => a + b, 0), `${hero.length} hero rows`);
  for (const row of hero) {
    assert.ok(row.decision && row.arm && row.propensity > 0 && row.propensity <= 1, JSON.stringify(row));
    assert.ok(row.reward === 0 || row.reward === 1, `a click's reward: ${row.reward}`);
  }
  assert.equal(new Set(rows.map((row) => row.decision)).size, rows.length, 'one row per decision');
});

test('a dead consumer\'s pending entries are claimed by another, after SIGKILL mid-stream', async () => {
  const start = heroCounts();
  const sent = await views(3000, 3040);
  // A consumer that dies holding entries it read but never acknowledged.
  const dead = await stack.aggregate('--once', '--count', '5', '--consumer', 'doomed', '--exit-before-ack', '1');
  assert.equal(dead.status, 3);
  // A second one killed at an arbitrary point while working through small batches.
  const victim = stack.spawnAggregator('--count', '3', '--consumer', 'victim', '--block-ms', '100');
  await new Promise((resolve) => victim.stdout.once('data', resolve));
  victim.kill('SIGKILL');
  await new Promise((resolve) => victim.once('close', resolve));
  // A survivor under another name claims what both left pending and reads the rest.
  const survivor = await stack.aggregate('--once', '--consumer', 'survivor', '--claim-idle-ms', '0');
  assert.equal(survivor.status, 0);
  const redelivered = survivor.lines.reduce((n, l) => n + l.report.duplicates, 0);
  assert.ok(redelivered >= 5, `the doomed consumer's 5 applied entries came back as duplicates (${redelivered})`);
  assert.deepEqual(heroCounts(), add(start, sent), 'nothing lost, nothing counted twice');
  assert.match(stack.cli('XPENDING', STREAM, 'stellwerk-aggregators'), /^0\n?/);
});

test('an invalid snapshot in the store is never served; the kill switch stops every change', async () => {
  stack.cli('SET', 'snapshot:active', '{"schema": 1, "version": "broken", "experiments": [{"key": 5}]}');
  const broken = await visit(1);
  const direct = await (await fetch(stack.origin.url, { headers: { 'user-agent': UA } })).text();
  assert.equal(broken.body, direct, 'without a valid snapshot the page passes through untouched');
  const health = await (await fetch(`${stack.url}/_stellwerk/health`)).json();
  assert.equal(health.snapshot, null);
  assert.ok(health.instance.fallbacks.snapshot_invalid >= 1);

  publish({ ...SNAPSHOT, version: 'demo-kill', killSwitch: true });
  const killed = await visit(1);
  assert.equal(killed.res.headers.get('x-stellwerk'), 'kill-switch');
  assert.equal(killed.body, direct);
  publish(SNAPSHOT);
  assert.ok(heroArm((await visit(1)).res));
});

test('a client over the short-window rate limit is blocked, counted in Redis; another client is not', async () => {
  const windowSeconds = 10;
  const limit = 5;
  publish({ ...SNAPSHOT, version: 'demo-rate', fraud: { ...SNAPSHOT.fraud, rateLimit: { limit, windowSeconds, paths: ['/index.html'] } } });
  // All requests in one fixed window: start early in a fresh one.
  const into = Date.now() % (windowSeconds * 1000);
  if (into > 3000) await new Promise((resolve) => setTimeout(resolve, windowSeconds * 1000 - into + 50));
  const from = (address, path = '/index.html') => visit(7, path, { 'spin-client-addr': address });
  const statuses = [];
  for (let i = 0; i < limit + 2; i++) {
    const { res } = await from('198.51.100.7:40000');
    statuses.push(res.status);
    if (res.status === 403) assert.match(res.headers.get('x-stellwerk-gate'), /^block; score=1/);
  }
  assert.deepEqual(statuses, [...Array(limit).fill(200), 403, 403]);
  // Another client (another address; the port does not make a new client) is not limited.
  assert.equal((await from('198.51.100.8:40000')).res.status, 200);
  // The limit covers /index.html only: the limited client still gets the other pages.
  assert.equal((await from('198.51.100.7:40001', '/')).res.status, 200);
  const keys = stack.cli('KEYS', 'stellwerk:rate:*').split('\n').filter(Boolean).sort();
  assert.equal(keys.length, 2, keys.join(' '));
  assert.ok(keys.every((key) => !key.includes('198.51.100')), 'the counter keys hold no raw address');
  const counts = keys.map((key) => Number(stack.cli('GET', key))).sort((a, b) => a - b);
  assert.deepEqual(counts, [1, limit + 2]);
  for (const key of keys) {
    const ttl = Number(stack.cli('TTL', key));
    assert.ok(ttl > 0 && ttl <= 2 * windowSeconds, `TTL ${ttl}`);
  }
  publish(SNAPSHOT);
});

test('admin routes need the bearer token; with it, snapshots are validated before they are stored', async () => {
  const routes = [['GET', '/_stellwerk/status'], ['POST', '/_stellwerk/conformance'], ['PUT', '/_stellwerk/admin/snapshot'],
    ['PUT', '/_stellwerk/admin/objects/x.json'], ['POST', '/_stellwerk/admin/sync']];
  const storeRequestsBefore = stack.store.requests.length;
  for (const [method, path] of routes) {
    for (const authorization of [undefined, 'Bearer wrong-token', stack.adminToken]) {
      const response = await fetch(stack.url + path, { method, headers: authorization ? { authorization } : {}, body: method === 'GET' ? undefined : '{}' });
      assert.equal(response.status, 401, `${method} ${path} with ${authorization}`);
      assert.deepEqual(await response.json(), { error: 'unauthorized', reason: 'this route needs the admin bearer token' });
    }
  }
  assert.equal(stack.store.requests.length, storeRequestsBefore, 'nothing reached the object store');

  const broken = await stack.admin('/_stellwerk/admin/snapshot', { method: 'PUT', body: JSON.stringify({ ...SNAPSHOT, version: 'bad', experiments: [{ key: 5 }] }) });
  assert.equal(broken.status, 422);
  assert.equal((await broken.json()).error, 'invalid_snapshot');
  assert.equal(JSON.parse(stack.cli('GET', 'snapshot:active')).version, SNAPSHOT.version, 'the refused snapshot never reached the store');
  const pushed = await stack.admin('/_stellwerk/admin/snapshot', { method: 'PUT', body: JSON.stringify({ ...SNAPSHOT, version: 'pushed-1' }) });
  assert.equal(pushed.status, 200);
  assert.deepEqual(await pushed.json(), { activated: 'pushed-1' });
  assert.equal((await (await fetch(`${stack.url}/_stellwerk/health`)).json()).snapshot, 'pushed-1');

  const status = await stack.admin('/_stellwerk/status');
  assert.equal(status.status, 200);
  const body = await status.json();
  assert.equal(body.events.stream, STREAM);
  assert.equal(body.events.length, streamLength());
  assert.equal(body.objectStore.signed, true);
});

test('the demo snapshot\'s model serves at the Spin edge; a corrupted model is refused and the old one keeps serving', async () => {
  const objects = demoStore({ snapshot: JSON.stringify(SNAPSHOT) });
  const pointers = await publishObjects({ url: stack.url, adminToken: stack.adminToken, objects });
  assert.deepEqual(pointers.refusals, []);
  const modelKey = 'models/ctr-mlp/1.0.0.onnx';
  assert.deepEqual(stack.store.objects.get(`bucket/stellwerk/${modelKey}`), objects[modelKey], 'published under the prefix');
  // Every object request (the PUTs, the sync's GETs) went out signed with SigV4 for the store's keys.
  assert.ok(stack.store.requests.length > Object.keys(objects).length);
  for (const request of stack.store.requests) assert.equal(request.signed, true, `${request.method} ${request.key}`);
  // The store does check: unsigned, or signed for another object, is refused.
  const signedGet = stack.store.requests.find((r) => r.method === 'GET' && r.key.endsWith(modelKey));
  const replay = (path, headers) => fetch(stack.store.url + path, { headers });
  assert.equal((await replay(`/bucket/stellwerk/${modelKey}`, {})).status, 403);
  const { authorization, 'x-amz-date': amzDate, 'x-amz-content-sha256': payload } = signedGet.headers;
  const signed = { authorization, 'x-amz-date': amzDate, 'x-amz-content-sha256': payload };
  assert.equal((await replay(`/bucket/stellwerk/${modelKey}`, signed)).status, 200);
  assert.equal((await replay('/bucket/stellwerk/manifest.json', signed)).status, 403);
  assert.equal(pointers.models['ctr-mlp'].stable.modelKey, modelKey);
  assert.equal(JSON.parse(stack.cli('GET', 'models:active')).models['ctr-mlp'].stable.manifest.version, '1.0.0');
  let health = await (await fetch(`${stack.url}/_stellwerk/health`)).json();
  assert.equal(health.snapshot, SNAPSHOT.version);
  assert.equal(health.models['ctr-mlp'].stable, '1.0.0');

  const fetchedBefore = stack.store.requests.filter((r) => r.method === 'GET' && r.key.endsWith(modelKey)).length;
  const page = await visit(4000);
  assert.match(page.res.headers.get('x-stellwerk'), /model:ctr-mlp=1\.0\.0/);
  assert.ok(heroArm(page.res), 'the page is still personalised');
  assert.ok(stack.store.requests.filter((r) => r.method === 'GET' && r.key.endsWith(modelKey)).length > fetchedBefore,
    'the component fetched the model bytes from the object store');

  // Version 2.0.0: bytes damaged in the store, with a manifest naming the damaged bytes' sha256.
  const manifest = JSON.parse(objects['models/ctr-mlp/1.0.0.manifest.json']);
  const corrupted = Buffer.from(objects[modelKey]);
  corrupted[200] ^= 0xff;
  const syncManifest = JSON.parse(objects['manifest.json']);
  syncManifest.models[0].stable = { manifestKey: 'models/ctr-mlp/2.0.0.manifest.json', modelKey: 'models/ctr-mlp/2.0.0.onnx' };
  const refused = await publishObjects({
    url: stack.url,
    adminToken: stack.adminToken,
    objects: {
      'models/ctr-mlp/2.0.0.manifest.json': JSON.stringify({ ...manifest, version: '2.0.0', sha256: sha256(corrupted) }),
      'models/ctr-mlp/2.0.0.onnx': corrupted,
      'manifest.json': JSON.stringify(syncManifest),
    },
  });
  assert.equal(refused.refusals.length, 1, JSON.stringify(refused.refusals));
  assert.equal(refused.refusals[0].object, 'models/ctr-mlp/2.0.0.onnx');
  assert.match(refused.refusals[0].reason, /onnx|golden|parse/i);
  health = await (await fetch(`${stack.url}/_stellwerk/health`)).json();
  assert.equal(health.models['ctr-mlp'].stable, '1.0.0');
  assert.equal(health.refusals.length, 1);
  assert.match((await visit(4001)).res.headers.get('x-stellwerk'), /model:ctr-mlp=1\.0\.0/);
});

test('every conformance vector gives the Spin component the same bytes as the native core', async (t) => {
  const { results, digest } = await runConformance({ url: stack.url, adminToken: stack.adminToken });
  assertConformance(results);
  t.diagnostic(`${results.length} vectors byte-identical; sha256 of all answers ${digest}`);
});

test('stellwerk sync verifies what the store publishes; a corrupted model is refused, the last good kept', async () => {
  const http = await import('node:http');
  const objects = new Map();
  const store = http.createServer((req, res) => {
    const body = objects.get(req.url.slice(1));
    res.writeHead(body ? 200 : 404).end(body ?? '');
  });
  await new Promise((r) => store.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${store.address().port}`;
  const sync = () => new Promise((resolve) => {
    const child = spawn(CLI, ['sync', '--store', base, '--redis', stack.redisUrl], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('close', (status) => resolve({ status, report: out ? JSON.parse(out) : null }));
  });
  try {
    const model = readFileSync(new URL('../../models/demo/ctr-mlp.onnx', import.meta.url));
    const modelManifest = readFileSync(new URL('../../models/demo/ctr-mlp.manifest.json', import.meta.url));
    const snapshot = Buffer.from(JSON.stringify({ ...SNAPSHOT, version: 'synced-1' }));
    objects.set('snapshots/1.json', snapshot);
    objects.set('models/ctr-mlp/1.onnx', model);
    objects.set('models/ctr-mlp/1.manifest.json', modelManifest);
    const stable = { manifestKey: 'models/ctr-mlp/1.manifest.json', modelKey: 'models/ctr-mlp/1.onnx' };
    objects.set('manifest.json', JSON.stringify({
      snapshot: { key: 'snapshots/1.json', sha256: sha256(snapshot) },
      models: [{ name: 'ctr-mlp', stable }],
    }));
    const first = await sync();
    assert.equal(first.status, 0);
    assert.deepEqual(first.report.refusals, []);
    assert.equal(stack.cli('GET', 'snapshot:active'), snapshot.toString());
    let health = await (await fetch(`${stack.url}/_stellwerk/health`)).json();
    assert.equal(health.snapshot, 'synced-1');
    const goodVersion = JSON.parse(modelManifest).version;
    assert.equal(health.models['ctr-mlp'].stable, goodVersion);
    assert.equal(JSON.parse(stack.cli('GET', 'models:active')).models['ctr-mlp'].stable.manifest.sha256, JSON.parse(modelManifest).sha256);

    // A candidate whose bytes do not match its manifest, a candidate that matches a forged
    // manifest but is not a model tract can load, and a snapshot that does not match its sha256.
    const corrupted = Buffer.from(model);
    corrupted[corrupted.length >> 1] ^= 0xff;
    corrupted[100] ^= 0xff;
    objects.set('models/ctr-mlp/2.onnx', corrupted);
    objects.set('models/ctr-mlp/2.manifest.json', modelManifest);
    const garbage = Buffer.from('not an onnx model at all');
    objects.set('models/ctr-mlp/3.onnx', garbage);
    objects.set('models/ctr-mlp/3.manifest.json', JSON.stringify({ ...JSON.parse(modelManifest), sha256: sha256(garbage) }));
    objects.set('snapshots/2.json', Buffer.from(JSON.stringify({ ...SNAPSHOT, version: 'synced-2' })));
    objects.set('manifest.json', JSON.stringify({
      snapshot: { key: 'snapshots/2.json', sha256: sha256(Buffer.from('not the bytes published')) },
      models: [
        { name: 'ctr-mlp', stable, candidate: { manifestKey: 'models/ctr-mlp/2.manifest.json', modelKey: 'models/ctr-mlp/2.onnx' } },
        { name: 'ctr-mlp-next', stable: { manifestKey: 'models/ctr-mlp/3.manifest.json', modelKey: 'models/ctr-mlp/3.onnx' } },
      ],
    }));
    const second = await sync();
    assert.equal(second.status, 1);
    const refused = Object.fromEntries(second.report.refusals.map((r) => [r.object, r.reason]));
    assert.match(refused['snapshots/2.json'], /sha256 mismatch/);
    assert.match(refused['models/ctr-mlp/2.onnx'], /sha256/i);
    assert.ok(refused['models/ctr-mlp/3.onnx'], 'an unloadable model is refused');
    assert.equal(stack.cli('GET', 'snapshot:active'), snapshot.toString(), 'the last good snapshot keeps serving');
    health = await (await fetch(`${stack.url}/_stellwerk/health`)).json();
    assert.equal(health.snapshot, 'synced-1');
    assert.equal(health.models['ctr-mlp'].stable, goodVersion);
    assert.equal(health.models['ctr-mlp'].candidate, null);
    assert.equal(health.models['ctr-mlp-next'], undefined);
    assert.equal(health.refusals.length, 3);
  } finally {
    store.close();
  }
});
