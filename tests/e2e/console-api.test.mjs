// The console's JSON admin API over HTTP in wrangler dev (workerd, local KV and R2): no
// credentials → 401 for everything, stale versions → 409, invalid edits → 422 with `path: reason`,
// an audit entry in R2 for every accepted write, session login, Cloudflare Access tokens
// (RS256, keys from the team domain's certs URL), model rollback, and the CLI
// (`stellwerk flags set`, `experiment`, `push`) against the same edge.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createSign, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startStack } from './stack.mjs';
import { demoStore } from '../../demo/store.mjs';
import { ROOT } from '../../scripts/publish.mjs';

const API = '/_stellwerk/admin/api/';
const BROWSER = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
  accept: 'text/html',
  'accept-language': 'en-US,en;q=0.9',
};
const EXAMPLE = JSON.parse(readFileSync(path.join(ROOT, 'examples/snapshot.json'), 'utf8'));
const CLI = path.join(ROOT, 'target', 'debug', 'stellwerk');
const ACCESS_AUD = 'e2e0c0ffee5e11e7a0d1e2e0c0ffee5e11e7a0d1';

// Stands in for the Access team domain, which this machine cannot reach: it serves the JWKS at
// the path Access publishes it, and signs tokens with the matching private key, as Access does.
async function startAccess() {
  const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signer = rsa();
  const jwks = { keys: [{ ...signer.publicKey.export({ format: 'jwk' }), kid: 'e2e-1', alg: 'RS256', use: 'sig' }] };
  let certRequests = 0;
  const server = createServer((req, res) => {
    if (req.url !== '/cdn-cgi/access/certs') return res.writeHead(404).end();
    certRequests += 1;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const token = ({ claims = {}, header = {}, key = signer.privateKey } = {}) => {
    const now = Math.floor(Date.now() / 1000);
    const input = `${b64({ alg: 'RS256', kid: 'e2e-1', typ: 'JWT', ...header })}.${b64({
      aud: [ACCESS_AUD], iss: url, iat: now, nbf: now, exp: now + 600, email: 'ada@example.com', ...claims,
    })}`;
    return `${input}.${createSign('RSA-SHA256').update(input).sign(key).toString('base64url')}`;
  };
  return {
    url, token, otherKey: rsa().privateKey,
    certRequests: () => certRequests,
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}

describe('console admin API in wrangler dev', { timeout: 300_000 }, () => {
  let stack;
  let accepted = 0; // writes the API accepted, each of which must have left an audit entry
  const api = (route, init = {}) => stack.admin(API + route, init);
  const json = (body) => ({ 'content-type': 'application/json', ...body });
  const version = async () => (await api('snapshot')).headers.get('etag').replaceAll('"', '');
  const edit = async (route, change, { ifMatch, method = 'POST' } = {}) => {
    const response = await api(route, {
      method,
      headers: json(ifMatch === undefined ? { 'if-match': `"${await version()}"` } : ifMatch === null ? {} : { 'if-match': `"${ifMatch}"` }),
      body: JSON.stringify(change),
    });
    if (response.status === 200) accepted += 1;
    return { status: response.status, body: await response.json() };
  };
  const health = async () => (await stack.fetch('/_stellwerk/health')).json();
  const cli = (args) => spawnSync(CLI, args, {
    cwd: ROOT, encoding: 'utf8', env: { ...process.env, STELLWERK_EDGE: stack.url, STELLWERK_ADMIN_TOKEN: stack.adminToken },
  });

  let access;

  before(async () => {
    execFileSync('cargo', ['build', '-q', '-p', 'stellwerk-cli'], { cwd: ROOT, stdio: 'inherit' });
    access = await startAccess();
    stack = await startStack({
      r2: demoStore(),
      vars: { SNAPSHOT_TTL_MS: '200', ACCESS_TEAM_DOMAIN: access.url, ACCESS_AUD },
    });
    assert.deepEqual(stack.pointers.refusals, []);
  });

  after(async () => {
    await stack?.stop();
    await access?.stop();
  });

  test('without credentials everything answers 401 and shows nothing', async () => {
    for (const [route, init] of [
      [`${API}flags`, {}],
      [`${API}snapshot`, {}],
      [`${API}audit`, {}],
      [`${API}experiments/hero-headline`, {}],
      [`${API}flags/holiday-banner`, { method: 'POST', headers: json({ 'if-match': '"demo-1"' }), body: '{"state":"DISABLED"}' }],
      [`${API}kill-switch`, { method: 'POST', headers: json({ authorization: 'Bearer wrong' }), body: '{"on":true}' }],
      ['/_stellwerk/admin/assets/console.js', {}],
      ['/_stellwerk/admin/assets/uplot.js', {}],
    ]) {
      const response = await stack.fetch(route, init);
      assert.equal(response.status, 401, route);
      const text = await response.text();
      assert.doesNotMatch(text, /holiday-banner|hero-headline/, route);
    }
    const page = await stack.fetch('/_stellwerk/admin/');
    assert.equal(page.status, 401);
    const html = await page.text();
    assert.match(html, /action="\/_stellwerk\/admin\/login"/);
    assert.doesNotMatch(html, /console\.js/);
    // A forged session cookie is no credential either.
    const forged = await stack.fetch(`${API}flags`, { headers: { cookie: 'stellwerk_admin=QWRh.9999999999.00' } });
    assert.equal(forged.status, 401);
    assert.equal((await health()).snapshot, 'demo-1', 'nothing changed');
  });

  test('a flag toggle makes a new version; a stale or missing version is refused', async () => {
    const ok = await edit('flags/holiday-banner', { state: 'DISABLED' }, { ifMatch: 'demo-1' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.version, 'demo-1.r1');
    assert.equal(ok.body.audit.before.state, 'ENABLED');
    assert.equal(ok.body.audit.after.state, 'DISABLED');
    assert.equal((await health()).snapshot, 'demo-1.r1', 'the edge serves the new version at once');

    const stale = await edit('flags/holiday-banner', { state: 'ENABLED' }, { ifMatch: 'demo-1' });
    assert.equal(stale.status, 409);
    assert.equal(stale.body.error, 'stale_version');
    assert.equal(stale.body.current, 'demo-1.r1');
    const missing = await edit('flags/holiday-banner', { state: 'ENABLED' }, { ifMatch: null });
    assert.equal(missing.status, 428);
    const flags = await (await api('flags')).json();
    assert.equal(flags.flags.find((f) => f.key === 'holiday-banner').state, 'DISABLED', 'refused writes changed nothing');
  });

  test('edits racing on one version: exactly one wins, the rest get 409', async () => {
    const base = await version();
    const racing = await Promise.all([
      edit('flags/holiday-banner', { state: 'ENABLED' }, { ifMatch: base }),
      edit('flags/free-shipping-threshold', { defaultVariant: 'low' }, { ifMatch: base }),
      edit('flags/holiday-banner', { rollout: { on: 40, off: 60 } }, { ifMatch: base }),
      edit('experiments/grid-layout', { traffic: 0.4 }, { ifMatch: base }),
      edit('experiments/grid-layout', { traffic: 0.45 }, { ifMatch: base }),
    ]);
    const won = racing.filter((r) => r.status === 200);
    assert.equal(won.length, 1, JSON.stringify(racing.map((r) => r.status)));
    for (const lost of racing.filter((r) => r.status !== 200)) {
      assert.equal(lost.status, 409, JSON.stringify(lost.body));
      assert.equal(lost.body.current, won[0].body.version);
    }
    assert.equal(await version(), won[0].body.version);

    // The moment inside a race when another edit has claimed its step in R2 but not yet written
    // KV: this edit reads the old version from KV, and only the claim can stop it.
    const current = await version();
    const ledger = (body) => stack.admin('/_stellwerk/admin/objects/admin/snapshot-version', { method: 'PUT', body });
    assert.equal((await ledger(`${current}.other-writer`)).status, 201);
    const overtaken = await edit('flags/holiday-banner', { state: 'DISABLED' }, { ifMatch: current });
    assert.equal(overtaken.status, 409, JSON.stringify(overtaken.body));
    assert.equal(overtaken.body.current, `${current}.other-writer`);
    assert.equal(await version(), current, 'nothing was written');
    // That writer's KV write never lands; its claim stops blocking once KV would have caught up
    // (a minute), which this test does not wait for: it hands the ledger back instead.
    assert.equal((await ledger(current)).status, 201);
    assert.equal((await edit('flags/holiday-banner', { state: 'DISABLED' }, { ifMatch: current })).status, 200);
  });

  test('an invalid edit answers 422 with every path: reason and changes nothing', async () => {
    const before = await version();
    const refused = await edit('experiments/grid-layout', { traffic: 1.5, status: 'stopped' });
    assert.equal(refused.status, 422);
    assert.deepEqual(refused.body.issues, [
      'experiments[1].traffic: must be between 0 and 1',
      'experiments[1].winner: a stopped experiment needs a winner arm',
    ]);
    const rollout = await edit('flags/holiday-banner', { rollout: { on: 30, off: 60 } });
    assert.equal(rollout.status, 422);
    assert.deepEqual(rollout.body.issues, ['flags.holiday-banner.rollout: percentages must add up to 100, not 90']);
    const unknown = await edit('experiments/nope', { status: 'paused' });
    assert.equal(unknown.status, 404);
    assert.equal(await version(), before);
  });

  test('pausing, stopping with a winner and restarting an experiment change the pages', async () => {
    const unit = '0123456789abcdef0123456789abcdef';
    const page = async () => (await stack.fetch('/', { headers: { ...BROWSER, cookie: `stellwerk_id=${unit}` } })).headers.get('x-stellwerk');
    assert.match(await page(), /hero-headline=/);
    assert.equal((await edit('experiments/hero-headline', { status: 'paused' })).status, 200);
    assert.doesNotMatch(await page(), /hero-headline=/);
    const stop = await edit('experiments/hero-headline', { status: 'stopped', winner: 'urgency' });
    assert.equal(stop.status, 200);
    assert.match(await page(), /hero-headline=urgency/);
    assert.equal((await edit('experiments/hero-headline', { status: 'running' })).status, 200);
    assert.match(await page(), /hero-headline=/);
    const rollout = await edit('flags/holiday-banner', { rollout: { on: 20, off: 80 }, state: 'ENABLED' });
    assert.equal(rollout.status, 200);
    assert.deepEqual(rollout.body.audit.after.targeting.if[2].fractional, [['off', 80], ['on', 20]]);
  });

  test('the kill switch serves pages untouched', async () => {
    assert.equal((await edit('kill-switch', { on: true })).status, 200);
    assert.equal((await health()).killSwitch, true);
    const response = await stack.fetch('/', { headers: BROWSER });
    assert.equal(response.headers.get('x-stellwerk'), 'kill-switch');
    assert.equal((await edit('kill-switch', { on: false })).status, 200);
    assert.equal((await health()).killSwitch, false);
  });

  test('a console session logs in with the token, writes as its name and must send JSON', async () => {
    const wrong = await stack.fetch('/_stellwerk/admin/login', {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=Ada&token=guess', redirect: 'manual',
    });
    assert.equal(wrong.status, 401);
    const login = await stack.fetch('/_stellwerk/admin/login', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `name=Ada+Lovelace&token=${stack.adminToken}`,
      redirect: 'manual',
    });
    assert.equal(login.status, 303);
    const setCookie = login.headers.get('set-cookie');
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    const cookie = setCookie.split(';')[0];
    const page = await stack.fetch('/_stellwerk/admin/', { headers: { cookie } });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /console\.js/);
    const current = await version();
    const form = await stack.fetch(`${API}kill-switch`, {
      method: 'POST', headers: { cookie, 'content-type': 'text/plain', 'if-match': `"${current}"` }, body: '{"on":true}',
    });
    assert.equal(form.status, 415, 'a cross-site form cannot write');
    const write = await stack.fetch(`${API}flags/free-shipping-threshold`, {
      method: 'POST', headers: { cookie, 'content-type': 'application/json', 'if-match': `"${current}"` }, body: '{"defaultVariant":"low"}',
    });
    assert.equal(write.status, 200);
    accepted += 1;
    assert.equal((await write.json()).audit.who, 'session:Ada Lovelace');
  });

  test('models list their versions and roll back through the verified sync', async () => {
    // Publish a second version of the demo model (same bytes, new version) and make it stable.
    const store = demoStore();
    const manifestKey = Object.keys(store).find((k) => k.endsWith('.manifest.json'));
    const first = JSON.parse(store[manifestKey]).version;
    const second = { ...JSON.parse(store[manifestKey]), version: '2.0.0' };
    const onnx = store[manifestKey.replace('.manifest.json', '.onnx')];
    const put = (key, body) => stack.admin(`/_stellwerk/admin/objects/${key}`, { method: 'PUT', body });
    assert.equal((await put('models/ctr-mlp/2.0.0.manifest.json', JSON.stringify(second))).status, 201);
    assert.equal((await put('models/ctr-mlp/2.0.0.onnx', onnx)).status, 201);
    const manifest = JSON.parse(store['manifest.json']);
    manifest.models[0].stable = { manifestKey: 'models/ctr-mlp/2.0.0.manifest.json', modelKey: 'models/ctr-mlp/2.0.0.onnx' };
    assert.equal((await put('manifest.json', JSON.stringify(manifest))).status, 201);
    await stack.admin('/_stellwerk/admin/sync', { method: 'POST' });
    assert.equal((await health()).models['ctr-mlp'].stable, '2.0.0');

    const models = await (await api('models')).json();
    const ctr = models.models.find((m) => m.name === 'ctr-mlp');
    assert.deepEqual(ctr.versions, [first, '2.0.0']);
    assert.equal(ctr.stable, '2.0.0');
    const rollback = (version, ifMatch) => api('models/ctr-mlp/rollback', {
      method: 'POST', headers: json({ 'if-match': `"${ifMatch}"` }), body: JSON.stringify({ version }),
    });
    const missing = await rollback('0.9.0', models.manifestVersion);
    assert.equal(missing.status, 422);
    assert.deepEqual((await missing.json()).issues, ['models.ctr-mlp.version: no version "0.9.0" of "ctr-mlp" in the store']);
    const done = await rollback(first, models.manifestVersion);
    assert.equal(done.status, 200);
    accepted += 1;
    const body = await done.json();
    assert.deepEqual(body.refusals, []);
    assert.equal(body.audit.what, `model ctr-mlp: roll back to ${first}`);
    assert.equal((await health()).models['ctr-mlp'].stable, first);
    assert.equal((await rollback('2.0.0', models.manifestVersion)).status, 409, 'the manifest changed since');
  });

  test('a Cloudflare Access token opens the console; forged, expired or foreign ones do not', async () => {
    const withToken = (token, init = {}) => stack.fetch(`${API}flags`, { ...init, headers: { 'cf-access-jwt-assertion': token, ...init.headers } });
    const valid = await withToken(access.token());
    assert.equal(valid.status, 200);
    assert.ok((await valid.json()).flags.length > 0);
    const fetched = access.certRequests();
    assert.ok(fetched >= 1, 'the keys came from the team domain');
    // A key id that is not among keys fetched under 5 s ago is refused without a refetch.
    const rotated = () => withToken(access.token({ header: { kid: 'rotated' } }));
    assert.equal((await rotated()).status, 401);
    assert.equal(access.certRequests(), fetched);
    const page = await stack.fetch('/_stellwerk/admin/', { headers: { 'cf-access-jwt-assertion': access.token() } });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /console\.js/);
    const write = await stack.fetch(`${API}flags/free-shipping-threshold`, {
      method: 'POST',
      headers: { 'cf-access-jwt-assertion': access.token(), 'content-type': 'application/json', 'if-match': `"${await version()}"` },
      body: '{"defaultVariant":"high"}',
    });
    assert.equal(write.status, 200);
    accepted += 1;
    assert.equal((await write.json()).audit.who, 'access:ada@example.com');

    const now = Math.floor(Date.now() / 1000);
    const [header, payload, signature] = access.token().split('.');
    const raised = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url')), email: 'mallory@example.com' })).toString('base64url');
    for (const [why, token] of [
      ['signed by another key', access.token({ key: access.otherKey })],
      ['payload changed after signing', `${header}.${raised}.${signature}`],
      ['expired', access.token({ claims: { exp: now - 3600, nbf: now - 7200 } })],
      ['another application', access.token({ claims: { aud: ['someone-else'] } })],
      ['another issuer', access.token({ claims: { iss: 'https://evil.cloudflareaccess.com' } })],
      ['alg none', `${Buffer.from('{"alg":"none","kid":"e2e-1"}').toString('base64url')}.${payload}.`],
      ['garbage', 'not-a-jwt'],
    ]) {
      const response = await withToken(token);
      assert.equal(response.status, 401, why);
      assert.doesNotMatch(await response.text(), /holiday-banner/, why);
    }
    assert.equal(access.certRequests(), fetched, 'keys are cached in the isolate, not fetched per request');
    // Later, a key id Access has not published yet (a rotation) makes the edge look once more,
    // then refuse; made-up key ids cannot make every request a fetch.
    await new Promise((resolve) => setTimeout(resolve, 5_100));
    assert.equal((await rotated()).status, 401);
    assert.equal(access.certRequests(), fetched + 1);
    assert.equal((await rotated()).status, 401);
    assert.equal(access.certRequests(), fetched + 1);
  });

  test('the CLI toggles flags, steers experiments and pushes snapshots through the API', async () => {
    let run = cli(['flags', 'set', 'holiday-banner', 'off']);
    assert.equal(run.status, 0, run.stderr + run.stdout);
    accepted += 1;
    assert.match(run.stdout, /^ok: flag holiday-banner: state DISABLED \(version /);
    run = cli(['flags', 'list']);
    assert.match(run.stdout, /holiday-banner\tDISABLED/);
    run = cli(['experiment', 'pause', 'hero-headline']);
    assert.equal(run.status, 0, run.stderr + run.stdout);
    accepted += 1;
    run = cli(['experiment', 'stop', 'hero-headline', '--winner', 'nobody']);
    assert.equal(run.status, 1);
    assert.match(run.stdout, /experiments\[0\]\.winner: no arm named "nobody"/);
    run = cli(['experiment', 'start', 'hero-headline']);
    assert.equal(run.status, 0, run.stderr + run.stdout);
    accepted += 1;

    const dir = mkdtempSync(path.join(tmpdir(), 'stellwerk-push-'));
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ ...EXAMPLE, version: 'demo-2', fraud: { ...EXAMPLE.fraud, threshold: 7 } }));
    run = cli(['push', bad]);
    assert.equal(run.status, 1);
    assert.equal(run.stdout.trim(), 'fraud.threshold: must be between 0 and 1');
    const good = path.join(dir, 'good.json');
    writeFileSync(good, JSON.stringify({ ...EXAMPLE, version: 'demo-2' }));
    run = cli(['push', good]);
    assert.equal(run.status, 0, run.stderr + run.stdout);
    accepted += 1;
    assert.equal((await health()).snapshot, 'demo-2');
    const wrongToken = spawnSync(CLI, ['flags', 'list'], { encoding: 'utf8', env: { ...process.env, STELLWERK_EDGE: stack.url, STELLWERK_ADMIN_TOKEN: 'nope' } });
    assert.equal(wrongToken.status, 2);
    assert.match(wrongToken.stderr, /401/);
  });

  test('every accepted write left one audit entry in R2, newest first', async () => {
    const { entries } = await (await api('audit')).json();
    assert.equal(entries.length, accepted);
    const times = entries.map((e) => e.atMs);
    assert.deepEqual(times, [...times].sort((a, b) => b - a));
    for (const entry of entries) {
      assert.ok(['token', 'session:Ada Lovelace', 'access:ada@example.com'].includes(entry.who), entry.who);
      assert.ok(entry.what && entry.target && entry.versionBefore !== undefined && entry.versionAfter, JSON.stringify(entry));
      assert.ok('before' in entry && 'after' in entry);
    }
    const oldest = entries.at(-1);
    assert.equal(oldest.what, 'flag holiday-banner: state DISABLED');
    assert.equal(oldest.versionBefore, 'demo-1');
  });
});
