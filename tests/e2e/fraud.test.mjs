// End-to-end tests of the fraud gate in wrangler's dev server, with the trained ONNX model
// (models/fraud) published to local R2 and activated by the verified sync: a headless-automation
// request is blocked in block mode and only tagged in monitor mode, its beacons are quarantined,
// a real browser's request and beacon go through untouched, a too-fast click is quarantined, and a
// client over the short-window rate limit (the Workers Rate Limiting binding) is blocked.
//
// Requests are sent with node:http so the headers are exactly the ones listed (fetch would add
// its own accept-language and sec-fetch-mode).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStack } from './stack.mjs';
import { addModel, demoStore } from '../../demo/store.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MODEL_DIR = path.join(ROOT, 'models/fraud');
const modelManifest = readFileSync(path.join(MODEL_DIR, 'fraud-gate.manifest.json'));
const { version, name } = JSON.parse(modelManifest);
const { threshold } = JSON.parse(readFileSync(path.join(MODEL_DIR, 'threshold.json')));
// The binding applies its own limit and period (wrangler.toml); the snapshot names the same.
const [, RATE_LIMIT, RATE_PERIOD] = readFileSync(path.join(ROOT, 'wrangler.toml'), 'utf8')
  .match(/name = "STELLWERK_RATE"[^[]*simple = \{ limit = (\d+), period = (\d+) \}/).map(Number);

const CHROME_UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
// Chrome 131 on Windows, a first navigation, as the browser sends it.
const BROWSER = {
  'sec-ch-ua': '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
  'sec-ch-ua-mobile': '?0',
  'sec-ch-ua-platform': '"Windows"',
  'upgrade-insecure-requests': '1',
  'user-agent': CHROME_UA,
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7',
  'sec-fetch-site': 'none',
  'sec-fetch-mode': 'navigate',
  'sec-fetch-user': '?1',
  'sec-fetch-dest': 'document',
  'accept-language': 'de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7',
};
// The same browser's beacon (sendBeacon).
const BROWSER_BEACON = {
  'sec-ch-ua': BROWSER['sec-ch-ua'],
  'sec-ch-ua-mobile': '?0',
  'sec-ch-ua-platform': '"Windows"',
  'user-agent': CHROME_UA,
  accept: '*/*',
  'accept-language': BROWSER['accept-language'],
  'content-type': 'text/plain;charset=UTF-8',
  'sec-fetch-site': 'same-origin',
  'sec-fetch-mode': 'no-cors',
  'sec-fetch-dest': 'empty',
};
// Puppeteer driving headless Chrome 127 on a Linux server after page.setUserAgent(CHROME_UA):
// the client hints still describe the real browser, and Puppeteer sends no Accept-Language.
const HEADLESS = {
  'sec-ch-ua': '"HeadlessChrome";v="127", "Chromium";v="127", "Not)A;Brand";v="99"',
  'sec-ch-ua-mobile': '?0',
  'sec-ch-ua-platform': '"Linux"',
  'upgrade-insecure-requests': '1',
  'user-agent': CHROME_UA,
  accept: BROWSER.accept,
  'sec-fetch-site': 'none',
  'sec-fetch-mode': 'navigate',
  'sec-fetch-user': '?1',
  'sec-fetch-dest': 'document',
};
const HEADLESS_BEACON = {
  'sec-ch-ua': HEADLESS['sec-ch-ua'],
  'sec-ch-ua-mobile': '?0',
  'sec-ch-ua-platform': '"Linux"',
  'user-agent': CHROME_UA,
  accept: '*/*',
  'content-type': 'text/plain;charset=UTF-8',
  'sec-fetch-site': 'same-origin',
  'sec-fetch-mode': 'no-cors',
  'sec-fetch-dest': 'empty',
};

const SNAPSHOT = {
  schema: 1,
  version: 'fraud-e2e-1',
  experiments: [{
    key: 'hero',
    paths: ['/', '/slow'],
    goals: ['click'],
    arms: [
      { key: 'control', weight: 1 },
      { key: 'bold', weight: 1, mutations: [{ selector: '.hero h1', action: 'set_text', value: 'Bold headline' }] },
    ],
  }],
  fraud: {
    mode: 'block',
    threshold,
    model: name,
    // Tokens carry whole seconds: a click at most 1 s after its page always counts as < 2.
    minClickSeconds: 2,
    routes: [{ path: '/slow', mode: 'monitor' }],
    rateLimit: { limit: RATE_LIMIT, windowSeconds: RATE_PERIOD, paths: ['/index.html'] },
  },
  feedback: { attributionWindowSeconds: 3600, maxBodyBytes: 1024, routes: [{ types: ['click'], destinations: ['bandit'] }] },
  models: [{ name }],
};

/** The demo store plus the fraud model, both named in the sync manifest. */
const store = () => addModel(demoStore({ snapshot: JSON.stringify(SNAPSHOT) }), MODEL_DIR, name);

const unit = () => randomBytes(16).toString('hex');
const tokenOf = (html) => JSON.parse(html.match(/window\.__stellwerk=(.*?);<\/script>/)[1]).experiments[0].token;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

describe('fraud gate with the trained model in wrangler dev', { timeout: 300_000 }, () => {
  let stack;

  /** One request with exactly `headers`; resolves to `{ status, headers, body }`. */
  const send = (pathname, { method = 'GET', headers = {}, body } = {}) => new Promise((resolve, reject) => {
    const req = http.request(new URL(pathname, stack.url), { method, headers: { 'accept-encoding': 'identity', ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
  const beacon = (token, headers) => send('/_stellwerk/feedback', {
    method: 'POST', headers: { ...headers, origin: stack.url }, body: JSON.stringify({ token, type: 'click' }),
  });

  before(async () => {
    stack = await startStack({ r2: store(), vars: { SNAPSHOT_TTL_MS: '200' } });
    assert.deepEqual(stack.pointers.refusals, [], 'the store verifies');
  });

  after(async () => {
    await stack?.stop();
  });

  test('the sync activated the fraud model', async () => {
    const health = await (await stack.fetch('/_stellwerk/health')).json();
    assert.match(JSON.stringify(health), new RegExp(`${name}`));
  });

  test('a real browser is served and scored by the model; its beacon reaches the bandit', async () => {
    const page = await send('/', { headers: { ...BROWSER, cookie: `stellwerk_id=${unit()}` } });
    assert.equal(page.status, 200);
    assert.equal(page.headers['x-stellwerk-gate'], undefined);
    const served = page.headers['x-stellwerk'].split(', ');
    assert.ok(served.some((entry) => /^hero=\w+$/.test(entry)), page.headers['x-stellwerk']);
    assert.ok(served.includes(`model:${name}=${version}`), page.headers['x-stellwerk']);
    await sleep(2_100); // slower than minClickSeconds, as a person is
    const answer = await beacon(tokenOf(page.body), BROWSER_BEACON);
    assert.equal(answer.status, 202, answer.body);
    assert.deepEqual(JSON.parse(answer.body).destinations, ['bandit']);
  });

  test('headless automation with a spoofed Chrome UA is blocked in block mode', async () => {
    const blocked = await send('/', { headers: HEADLESS });
    assert.equal(blocked.status, 403);
    // No rule in this snapshot matches it, and the header heuristics (the gate without a model)
    // would let it through (browser-shaped UA, Accept present): only the model blocks it.
    const [, score] = blocked.headers['x-stellwerk-gate'].match(/^block; score=([\d.]+)$/);
    assert.ok(Number(score) >= threshold, `score ${score} under ${threshold}`);
    assert.match(blocked.body, /blocked/);
  });

  test('in monitor mode it is served but tagged, and its beacon is quarantined', async () => {
    const tagged = await send('/slow', { headers: { ...HEADLESS, cookie: `stellwerk_id=${unit()}` } });
    assert.equal(tagged.status, 200);
    await sleep(2_100);
    const answer = await beacon(tokenOf(tagged.body), HEADLESS_BEACON);
    assert.equal(answer.status, 202, answer.body);
    assert.deepEqual(JSON.parse(answer.body).destinations, ['quarantine']);
  });

  test('a click faster than humanly possible is quarantined even from a browser', async () => {
    const page = await send('/', { headers: { ...BROWSER, cookie: `stellwerk_id=${unit()}` } });
    assert.equal(page.status, 200);
    const answer = await beacon(tokenOf(page.body), BROWSER_BEACON);
    assert.equal(answer.status, 202, answer.body);
    assert.deepEqual(JSON.parse(answer.body).destinations, ['quarantine']);
  });

  test('a client over the short-window rate limit is blocked; another client is not', async () => {
    // All requests in one fixed window of the binding: start early in a fresh one.
    const period = RATE_PERIOD * 1000;
    const into = Date.now() % period;
    if (into > period / 4) await sleep(period - into + 50);
    // wrangler's dev server keeps a CF-Connecting-IP the request carries (Cloudflare sets it).
    const from = (address, pathname = '/index.html') => send(pathname, {
      headers: { ...BROWSER, 'cf-connecting-ip': address, cookie: `stellwerk_id=${unit()}` },
    });
    const statuses = [];
    const started = Date.now();
    for (let sent = 0; sent < RATE_LIMIT + 5;) {
      const batch = Math.min(25, RATE_LIMIT + 5 - sent);
      const answers = await Promise.all(Array.from({ length: batch }, () => from('198.51.100.7')));
      statuses.push(...answers.map((a) => a.status));
      for (const blocked of answers.filter((a) => a.status === 403)) {
        assert.match(blocked.headers['x-stellwerk-gate'], /^block; score=1/);
      }
      sent += batch;
    }
    assert.ok(Date.now() - started < period - 1000, 'the burst fit in one window');
    assert.equal(statuses.filter((s) => s === 200).length, RATE_LIMIT, statuses.join(' '));
    assert.equal(statuses.filter((s) => s === 403).length, 5, statuses.join(' '));
    assert.equal((await from('198.51.100.8')).status, 200, 'another client is not limited');
    assert.equal((await from('198.51.100.7', '/')).status, 200, 'the limit covers its paths only');
  });
});
