// End-to-end: a contextual experiment in wrangler dev (workerd, local KV, R2 and Queues). The
// reward model (models/reward, trained on simulated logs where mobile visitors click arm a and
// desktop visitors arm b) serves different arms to different devices; exposures and clicks are
// joined by the queue consumer into training rows that land in local R2; a model trained from
// those rows by models/reward/train.py is published, synced back and used, while the snapshot
// that requires it falls back to the plain bandit until it arrives.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startStack, waitFor } from './stack.mjs';
import { sha256 } from '../../demo/store.mjs';
import { ROOT } from '../../scripts/publish.mjs';

const DEVICES = {
  mobile: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1',
  desktop: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
  tablet: 'Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1',
};
const PYTHON = path.join(ROOT, 'models/.venv/bin/python');

const snapshot = (version, minVersion) => ({
  schema: 1,
  version,
  models: [{ name: 'reward', ...(minVersion ? { minVersion } : {}) }],
  experiments: [{
    key: 'offer',
    policy: { type: 'thompson' },
    contextual: { type: 'reward_model', model: 'reward', exploration: { type: 'squarecb', gamma: 1000 } },
    arms: [
      { key: 'a', mutations: [{ selector: '.hero h1', action: 'set_text', value: 'Offer A' }] },
      { key: 'b', mutations: [{ selector: '.hero h1', action: 'set_text', value: 'Offer B' }] },
      { key: 'c', mutations: [{ selector: '.hero h1', action: 'set_text', value: 'Offer C' }] },
    ],
  }],
  // The test clicks at machine speed; a human-speed floor would (rightly) quarantine every click.
  fraud: { mode: 'monitor', minClickSeconds: 0 },
  feedback: { attributionWindowSeconds: 3600, routes: [{ destinations: ['bandit'] }] },
});

function store(snapshotDoc, modelDir, version) {
  const manifest = readFileSync(path.join(modelDir, 'reward.manifest.json'));
  const objects = {
    [`snapshots/${snapshotDoc.version}.json`]: Buffer.from(JSON.stringify(snapshotDoc)),
    [`models/reward/${version}.manifest.json`]: manifest,
    [`models/reward/${version}.onnx`]: readFileSync(path.join(modelDir, 'reward.onnx')),
  };
  objects['manifest.json'] = Buffer.from(JSON.stringify({
    snapshot: { key: `snapshots/${snapshotDoc.version}.json`, sha256: sha256(objects[`snapshots/${snapshotDoc.version}.json`]) },
    models: [{ name: 'reward', stable: { manifestKey: `models/reward/${version}.manifest.json`, modelKey: `models/reward/${version}.onnx` } }],
  }));
  return objects;
}

/** Every training row in wrangler's local R2 (the blobs under the persistence directory). */
function rowsInLocalR2(dir) {
  const rows = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const file = path.join(d, name);
      if (statSync(file).isDirectory()) walk(file);
      else if (!file.endsWith('.sqlite') && statSync(file).size < 10_000_000) {
        const text = readFileSync(file, 'utf8');
        if (text.startsWith('{"decision":')) rows.push(...text.trim().split('\n').map((line) => JSON.parse(line)));
      }
    }
  };
  walk(dir);
  return rows;
}

describe('contextual experiment in wrangler dev', { timeout: 300_000 }, () => {
  let stack;
  const decisions = [];
  const health = async () => (await stack.fetch('/_stellwerk/health')).json();
  const visit = async (device) => {
    const response = await stack.fetch('/', { headers: { 'user-agent': DEVICES[device], accept: 'text/html' } });
    const html = await response.text();
    const arm = response.headers.get('x-stellwerk').match(/offer=(\w+)/)?.[1];
    const token = JSON.parse(html.match(/window\.__stellwerk=(.*?);<\/script>/)[1]).experiments[0]?.token;
    return { device, arm, token, html };
  };
  const click = (token) => stack.fetch('/_stellwerk/feedback', {
    method: 'POST',
    headers: { 'user-agent': DEVICES.desktop, 'content-type': 'application/json' },
    body: JSON.stringify({ token, type: 'click' }),
  });

  before(async () => {
    stack = await startStack({
      r2: store(snapshot('ctx-1'), path.join(ROOT, 'models/reward'), '1.0.0'),
      vars: { SNAPSHOT_TTL_MS: '200', TRAINING_JOIN_SECONDS: '3' },
    });
    assert.deepEqual(stack.pointers.refusals, []);
  });

  after(async () => {
    await stack?.stop();
  });

  test('the reward model serves each device its own best arm', async () => {
    const arms = { mobile: {}, desktop: {}, tablet: {} };
    for (let i = 0; i < 12; i++) {
      for (const device of Object.keys(DEVICES)) {
        const seen = await visit(device);
        arms[device][seen.arm] = (arms[device][seen.arm] ?? 0) + 1;
        // Every other visitor clicks at once (within the join window), so each arm has clicks
        // and non-clicks to learn from.
        seen.clicked = decisions.length % 2 === 0;
        if (seen.clicked) assert.equal((await click(seen.token)).status, 202);
        decisions.push(seen);
      }
    }
    const top = (counts) => Object.entries(counts).sort((x, y) => y[1] - x[1])[0][0];
    assert.deepEqual([top(arms.mobile), top(arms.desktop), top(arms.tablet)], ['a', 'b', 'c'], JSON.stringify(arms));
    assert.match(decisions.find((d) => d.arm === 'b').html, /<h1>Offer B<\/h1>/);
    const fallbacks = (await health()).instance.fallbacks ?? {};
    assert.ok(!Object.keys(fallbacks).some((k) => k.startsWith('contextual_')), JSON.stringify(fallbacks));
  });

  test('exposures and clicks are joined into training rows in local R2', async () => {
    // Rows are written by the first batch after their join window (3 s) closed.
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    const rows = await waitFor(async () => {
      await visit('mobile');
      const found = rowsInLocalR2(stack.persistTo);
      return found.length >= decisions.length && found;
    }, { timeoutMs: 60_000, intervalMs: 2_000, what: 'training rows in local R2' });
    assert.deepEqual([...new Set(rows.map((r) => r.arm))].sort(), ['a', 'b', 'c']);
    for (const row of rows) {
      assert.equal(row.experiment, 'offer');
      assert.deepEqual(row.arms, ['a', 'b', 'c']);
      assert.equal(row.policy, 'squarecb');
      assert.equal(row.model, 'reward@1.0.0');
      assert.equal(row.snapshot, 'ctx-1');
      assert.ok(row.propensity > 0 && row.propensity <= 1);
      assert.ok(['mobile', 'desktop', 'tablet'].includes(row.context.device));
    }
    assert.equal(rows.filter((r) => r.reward === 1).length, decisions.filter((d) => d.clicked).length);
  });

  test('a model trained from those rows is synced back, and the snapshot waits for it', async (t) => {
    if (!existsSync(PYTHON)) {
      t.skip('models/.venv is missing: run scripts/setup.sh');
      return;
    }
    const work = mkdtempSync(path.join(tmpdir(), 'stellwerk-reward-'));
    const logs = path.join(work, 'logs/training/dt=pulled/hour=00');
    mkdirSync(logs, { recursive: true });
    const rows = rowsInLocalR2(stack.persistTo);
    writeFileSync(path.join(logs, 'rows.ndjson'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    execFileSync(PYTHON, [path.join(ROOT, 'models/reward/train.py'), '--logs', path.join(work, 'logs'),
      '--out', path.join(work, 'model'), '--version', '1.1.0'], { stdio: 'pipe' });

    // The snapshot now requires 1.1.0: until it is synced, the plain bandit decides (counted).
    const pushed = await stack.admin('/_stellwerk/admin/snapshot', { method: 'PUT', body: JSON.stringify(snapshot('ctx-2', '1.1.0')) });
    assert.equal(pushed.status, 200, await pushed.text());
    await waitFor(async () => (await health()).snapshot === 'ctx-2', { what: 'snapshot ctx-2' });
    await visit('desktop');
    await waitFor(async () => ((await health()).instance.fallbacks?.contextual_model_outdated ?? 0) >= 1, { what: 'the outdated-model fallback' });

    const objects = store(snapshot('ctx-2', '1.1.0'), path.join(work, 'model'), '1.1.0');
    for (const [key, body] of Object.entries(objects)) {
      const put = await stack.admin(`/_stellwerk/admin/objects/${key}`, { method: 'PUT', body });
      assert.equal(put.status, 201);
    }
    const sync = await (await stack.admin('/_stellwerk/admin/sync', { method: 'POST' })).json();
    assert.deepEqual(sync.refusals, []);
    await waitFor(async () => (await health()).models?.reward?.stable === '1.1.0', { what: 'reward 1.1.0 active' });

    const outdated = (await health()).instance.fallbacks?.contextual_model_outdated ?? 0;
    for (let i = 0; i < 4; i++) await visit('mobile');
    const after = await health();
    assert.equal(after.instance.fallbacks?.contextual_model_outdated ?? 0, outdated, 'no more fallbacks once 1.1.0 serves');
    const used = await waitFor(async () => {
      await visit('tablet');
      const found = rowsInLocalR2(stack.persistTo).filter((r) => r.model === 'reward@1.1.0');
      return found.length > 0 && found;
    }, { timeoutMs: 60_000, intervalMs: 2_000, what: 'rows decided by reward@1.1.0' });
    assert.ok(used.every((r) => r.policy === 'squarecb' && r.snapshot === 'ctx-2'));
    rmSync(work, { recursive: true, force: true });
  });
});
