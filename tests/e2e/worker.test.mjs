// End-to-end tests of the Stellwerk Worker in wrangler's dev server (workerd, local KV, R2 and
// Queues): the verified sync, each arm's HTML, stickiness, the beacon round trip and its
// rejections, the queue consumer moving the posteriors, the fraud gate, the kill switch, a
// corrupted model, the canary split and the conformance vectors against the native core.
//
//   npm run test:e2e        (builds the Worker first when a source changed)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startStack, waitFor } from './stack.mjs';
import { demoStore, sha256 } from '../../demo/store.mjs';
import { stellwerk } from './native.mjs';
import { assertConformance, runConformance } from '../conformance/driver.mjs';

const HMAC_KEY = 'e2e-token-key';
const UNIT_ID_KEY = 'e2e-unit-key';
const BROWSER = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
  accept: 'text/html',
  'accept-language': 'en-US,en;q=0.9',
};
const CURL = { 'user-agent': 'curl/8.5.0', accept: '*/*' };

const SNAPSHOT = {
  schema: 1,
  version: 'e2e-1',
  flags: { flags: {
    banner: {
      state: 'ENABLED', variants: { on: true, off: false }, defaultVariant: 'off',
      targeting: { if: [{ '==': [{ var: 'query.banner' }, '1'] }, 'on', null] },
    },
    // Reads the ctr-mlp score, so pages run the model (a model no rule reads is not run).
    'likely-clicker': {
      state: 'ENABLED', variants: { yes: true, no: false }, defaultVariant: 'no',
      targeting: { if: [{ '>': [{ var: 'model.ctr-mlp' }, 0.5] }, 'yes', null] },
    },
  } },
  flagEffects: [{ flag: 'banner', variants: { on: [{ selector: 'body', action: 'prepend', value: '<div id="banner">Winter sale</div>' }] } }],
  experiments: [{
    key: 'hero',
    paths: ['/', '/slow'],
    goals: ['click'],
    arms: [
      { key: 'control', weight: 1 },
      { key: 'bold', weight: 1, mutations: [
        { selector: '.hero h1', action: 'set_text', value: 'Bold headline' },
        { selector: '#cta', action: 'add_class', value: 'cta--bold' },
      ] },
    ],
  }],
  fraud: { mode: 'block', threshold: 0.8, denyUserAgents: ['curl/'], routes: [{ path: '/slow', mode: 'monitor' }] },
  feedback: { attributionWindowSeconds: 3600, maxBodyBytes: 1024, routes: [{ types: ['click', 'conversion'], destinations: ['bandit'] }] },
};

const unit = () => randomBytes(16).toString('hex');
const cookie = (id) => ({ cookie: `stellwerk_id=${id}` });
const tokenOf = (html) => JSON.parse(html.match(/window\.__stellwerk=(.*?);<\/script>/)[1]).experiments[0].token;

describe('Stellwerk Worker in wrangler dev', { timeout: 300_000 }, () => {
  let stack;
  const get = (path, headers = {}) => stack.fetch(path, { headers: { ...BROWSER, ...headers } });
  const health = async () => (await stack.fetch('/_stellwerk/health')).json();
  const beacon = (body, headers = BROWSER) => stack.fetch('/_stellwerk/feedback', {
    method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body,
  });
  const originPage = async (path = '/') => Buffer.from(await (await fetch(new URL(path, stack.origin.url))).arrayBuffer());
  const push = (snapshot) => stack.admin('/_stellwerk/admin/snapshot', { method: 'PUT', body: JSON.stringify(snapshot) });
  const publish = (key, body) => stack.admin(`/_stellwerk/admin/objects/${key}`, { method: 'PUT', body });
  const syncNow = async () => (await stack.admin('/_stellwerk/admin/sync', { method: 'POST' })).json();

  before(async () => {
    stack = await startStack({
      r2: demoStore({ snapshot: JSON.stringify(SNAPSHOT) }),
      vars: { SNAPSHOT_TTL_MS: '200' },
      secrets: { HMAC_KEY, UNIT_ID_KEY },
    });
    assert.deepEqual(stack.pointers.refusals, [], 'the demo store verifies');
  });

  after(async () => {
    await stack?.stop();
  });

  test('the sync verified and activated the published snapshot and model', async () => {
    const h = await health();
    assert.equal(h.status, 'ok');
    assert.equal(h.snapshot, 'e2e-1');
    assert.equal(h.models['ctr-mlp'].stable, '1.0.0');
    assert.ok(h.lastSync > 0);
  });

  test('each arm gets its HTML, the same unit always the same arm, as the native core decides', async () => {
    const seen = {};
    for (let i = 0; i < 40 && Object.keys(seen).length < 2; i++) {
      const id = unit();
      const response = await get('/', cookie(id));
      assert.equal(response.status, 200);
      const arm = response.headers.get('x-stellwerk').match(/hero=(\w+)/)[1];
      const html = await response.text();
      seen[arm] = html;
      const again = await get('/', cookie(id));
      assert.match(again.headers.get('x-stellwerk'), new RegExp(`hero=${arm}\\b`), 'sticky');
      const native = JSON.parse(stellwerk(['decide', '-', '--unit', id, '--url', `${stack.url}/`, '--hmac-key', HMAC_KEY, '--unit-key', UNIT_ID_KEY], JSON.stringify(SNAPSHOT)));
      assert.equal(native.assignments[0].arm, arm, 'the Worker and the native core agree');
    }
    assert.deepEqual(Object.keys(seen).sort(), ['bold', 'control']);
    assert.match(seen.bold, /<h1>Bold headline<\/h1>/);
    assert.match(seen.bold, /id="cta" class="button primary cta--bold"/);
    assert.doesNotMatch(seen.control, /Bold headline|cta--bold/);
    for (const html of Object.values(seen)) assert.match(html, /<script src="\/_stellwerk\/beacon.js" defer><\/script>/);
  });

  test('a new visitor gets the unit cookie; personalised pages are private and keep the origin headers', async () => {
    const response = await get('/');
    const origin = await fetch(new URL('/', stack.origin.url));
    const unitCookie = response.headers.getSetCookie().find((c) => c.startsWith('stellwerk_id='));
    assert.match(unitCookie, /^stellwerk_id=[0-9a-f]{32}; Path=\/; Max-Age=31536000; SameSite=Lax; HttpOnly/);
    assert.ok(response.headers.getSetCookie().includes('session=demo; Path=/; HttpOnly'), 'the origin\'s own cookie is kept');
    assert.equal(response.headers.get('cache-control'), 'private, no-store');
    assert.match(response.headers.get('vary'), /Cookie/);
    assert.equal(response.headers.get('content-type'), origin.headers.get('content-type'));
    assert.equal(response.headers.get('content-length'), null);
  });

  test('non-HTML responses pass through untouched, without a cookie', async () => {
    for (const path of ['/logo.svg', '/api/data.json']) {
      const response = await get(path);
      assert.deepEqual(Buffer.from(await response.arrayBuffer()), await originPage(path), path);
      assert.equal(response.headers.get('set-cookie'), null, path);
    }
  });

  test('a flag effect follows the flag', async () => {
    assert.match(await (await get('/?banner=1', cookie(unit()))).text(), /<body[^>]*><div id="banner">Winter sale<\/div>/);
    assert.doesNotMatch(await (await get('/', cookie(unit()))).text(), /id="banner"/);
  });

  test('feedback: a genuine click is accepted once; replayed, forged, expired, malformed and oversize beacons are refused', async () => {
    const id = unit();
    const page = await (await get('/', cookie(id))).text();
    const token = tokenOf(page);
    const click = JSON.stringify({ token, type: 'click' });

    const accepted = await beacon(click);
    assert.equal(accepted.status, 202, await accepted.clone().text());
    assert.equal((await accepted.json()).accepted, true);

    const replay = await beacon(click);
    assert.equal(replay.status, 409);
    assert.equal((await replay.json()).error, 'duplicate');

    const forged = token.slice(0, -2) + (token.endsWith('AA') ? 'BB' : 'AA');
    const refusals = [
      [JSON.stringify({ token: forged, type: 'click' }), 401, 'forged_token'],
      [JSON.stringify({ token: expiredToken(), type: 'click' }), 410, 'expired_token'],
      ['{"token": ', 400, 'malformed_json'],
      [JSON.stringify({ token, type: 'click', extra: 1 }), 422, 'invalid_body'],
      [JSON.stringify({ token, type: 'conversion', pad: 'x'.repeat(2000) }), 413, 'oversize'],
    ];
    for (const [body, status, error] of refusals) {
      const response = await beacon(body);
      assert.equal(response.status, status, `${error}: ${await response.clone().text()}`);
      assert.equal((await response.json()).error, error);
    }
    // Only the one accepted click reaches the consumer.
    const status = await waitFor(async () => {
      const s = await (await stack.admin('/_stellwerk/status')).json();
      return s.events?.by_type?.click >= 1 && s;
    }, { what: 'the click in the consumer' });
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    const later = await (await stack.admin('/_stellwerk/status')).json();
    assert.equal(later.events.by_type.click, 1, JSON.stringify(status.events));
  });

  test('exposures and clicks reach the consumer and move the posteriors in KV', async () => {
    const id = unit();
    const response = await get('/', cookie(id));
    const arm = response.headers.get('x-stellwerk').match(/hero=(\w+)/)[1];
    const before = (await health()).posteriors.experiments.hero?.arms?.[arm] ?? { exposures: 0, rewards: 0 };
    // At a person's pace: a click within fraud.minClickSeconds (default 1 s) of its page is quarantined.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    assert.equal((await beacon(JSON.stringify({ token: tokenOf(await response.text()), type: 'click' }))).status, 202);
    const moved = await waitFor(async () => {
      const stats = (await health()).posteriors.experiments.hero?.arms?.[arm];
      return stats && stats.exposures > before.exposures && stats.rewards > before.rewards && stats;
    }, { what: `posteriors of hero/${arm} to move` });
    assert.ok(moved.exposures >= 1 && moved.rewards >= 1);
  });

  test('a bot is blocked in block mode and only tagged (its exposure quarantined) in monitor mode', async () => {
    const blocked = await stack.fetch('/', { headers: CURL });
    assert.equal(blocked.status, 403);
    assert.match(blocked.headers.get('x-stellwerk-gate'), /^block; score=1\.000/);

    const quarantinedBefore = (await health()).posteriors.experiments.hero?.quarantined ?? 0;
    const tagged = await stack.fetch('/slow', { headers: { ...CURL, cookie: `stellwerk_id=${unit()}` } });
    assert.equal(tagged.status, 200);
    await tagged.arrayBuffer();
    await waitFor(async () => ((await health()).posteriors.experiments.hero?.quarantined ?? 0) > quarantinedBefore,
      { what: 'the tagged exposure to be quarantined' });
  });

  test('an invalid snapshot is refused with every path: reason and the active one keeps serving', async () => {
    const broken = structuredClone(SNAPSHOT);
    broken.experiments[0].arms[1].mutations[0].selector = 'h1[';
    broken.experiments[0].traffic = 2;
    const response = await push(broken);
    assert.equal(response.status, 422);
    const { issues } = await response.json();
    assert.ok(issues.some((i) => i.startsWith('experiments[0].arms[1].mutations[0].selector: invalid CSS selector')), JSON.stringify(issues));
    assert.ok(issues.includes('experiments[0].traffic: must be between 0 and 1'), JSON.stringify(issues));
    assert.equal((await health()).snapshot, 'e2e-1');
  });

  test('the kill switch serves the origin page byte for byte', async () => {
    assert.equal((await push({ ...SNAPSHOT, version: 'e2e-killed', killSwitch: true })).status, 200);
    await waitFor(async () => (await health()).killSwitch === true, { what: 'the kill switch' });
    const response = await get('/', cookie(unit()));
    assert.equal(response.headers.get('x-stellwerk'), 'kill-switch');
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), await originPage('/'));
    assert.equal((await push(SNAPSHOT)).status, 200);
    await waitFor(async () => (await health()).killSwitch === false, { what: 'the kill switch off' });
  });

  test('a corrupted model in R2 is refused and the old version keeps serving', async () => {
    const store = demoStore({ snapshot: JSON.stringify(SNAPSHOT) });
    const manifest = JSON.parse(store['models/ctr-mlp/1.0.0.manifest.json']);
    const corrupted = Buffer.from(store['models/ctr-mlp/1.0.0.onnx']);
    corrupted[200] ^= 0xff;
    const bad = { ...manifest, version: '2.0.0', sha256: sha256(corrupted) };
    await publish('models/ctr-mlp/2.0.0.manifest.json', JSON.stringify(bad));
    await publish('models/ctr-mlp/2.0.0.onnx', corrupted);
    const syncManifest = JSON.parse(store['manifest.json']);
    syncManifest.models[0].stable = { manifestKey: 'models/ctr-mlp/2.0.0.manifest.json', modelKey: 'models/ctr-mlp/2.0.0.onnx' };
    await publish('manifest.json', JSON.stringify(syncManifest));
    const pointers = await syncNow();
    assert.equal(pointers.refusals.length, 1, JSON.stringify(pointers.refusals));
    assert.equal(pointers.refusals[0].object, 'models/ctr-mlp/2.0.0.onnx');
    assert.match(pointers.refusals[0].reason, /onnx|golden|parse/i);
    const h = await health();
    assert.equal(h.models['ctr-mlp'].stable, '1.0.0');
    assert.match((await get('/', cookie(unit()))).headers.get('x-stellwerk'), /model:ctr-mlp=1\.0\.0/);
  });

  test('a canary candidate serves close to its configured share of units', async () => {
    const store = demoStore({ snapshot: JSON.stringify(SNAPSHOT) });
    const manifest = JSON.parse(store['models/ctr-mlp/1.0.0.manifest.json']);
    await publish('models/ctr-mlp/1.1.0.manifest.json', JSON.stringify({ ...manifest, version: '1.1.0', canaryPercent: 30 }));
    await publish('models/ctr-mlp/1.1.0.onnx', store['models/ctr-mlp/1.0.0.onnx']);
    const syncManifest = JSON.parse(store['manifest.json']);
    syncManifest.models[0].candidate = { manifestKey: 'models/ctr-mlp/1.1.0.manifest.json', modelKey: 'models/ctr-mlp/1.1.0.onnx' };
    await publish('manifest.json', JSON.stringify(syncManifest));
    const pointers = await syncNow();
    assert.deepEqual(pointers.refusals, []);
    assert.equal((await health()).models['ctr-mlp'].candidate.canaryPercent, 30);
    let candidate = 0;
    const units = 300;
    for (let i = 0; i < units; i++) {
      const response = await get('/', cookie(unit()));
      await response.arrayBuffer();
      candidate += /model:ctr-mlp=1\.1\.0/.test(response.headers.get('x-stellwerk')) ? 1 : 0;
    }
    // 30% of 300: the binomial standard deviation is ~8; allow ±3 of them.
    assert.ok(candidate > 65 && candidate < 115, `candidate served ${candidate}/${units}`);
  });

  test('every conformance vector gives the Worker the same bytes as the native core', async (t) => {
    const { results, digest } = await runConformance({ url: stack.url, adminToken: stack.adminToken });
    assertConformance(results);
    t.diagnostic(`${results.length} vectors byte-identical; sha256 of all answers ${digest}`);
  });

  test('Stellwerk routes: admin ones need the token, unknown ones are 404', async () => {
    assert.equal((await stack.fetch('/_stellwerk/status')).status, 401);
    assert.equal((await stack.fetch('/_stellwerk/admin/sync', { method: 'POST' })).status, 401);
    assert.equal((await stack.fetch('/_stellwerk/nothing')).status, 404);
    assert.equal((await stack.fetch('/_stellwerk/feedback')).status, 405);
    const script = await stack.fetch('/_stellwerk/beacon.js');
    assert.match(script.headers.get('content-type'), /javascript/);
    assert.match(await script.text(), /sendBeacon/);
  });
});

/** A token signed with the Worker's key two hours ago: past the 1 h attribution window. */
function expiredToken() {
  const issuedAt = Math.floor(Date.now() / 1000) - 7200;
  const fields = { decisionId: 'd-expired', experiment: 'hero', arm: 'bold', propensity: 0.5, policyVersion: 'e2e-1', issuedAt, unit: 'u' };
  return stellwerk(['token', 'sign', JSON.stringify(fields), '--hmac-key', HMAC_KEY]).trim();
}

