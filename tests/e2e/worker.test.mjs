// End-to-end tests of the Cloudflare Worker's plumbing in wrangler's dev server (workerd):
// origin streaming, header handling, KV, the isolate cache, the queue round trip with retries
// and dead letters, and the scheduled sync from R2.
//
//   npm run test:e2e        (builds the Worker first when a source changed)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startStack, waitFor } from './stack.mjs';
import { SLOW_MS } from '../../demo/origin/server.mjs';

const ACTIVE = JSON.stringify({ placeholder: true, version: 'kv-seeded' });
const PUBLISHED = JSON.stringify({ placeholder: true, version: 'published-in-r2', padding: 'x'.repeat(40) });

describe('Cloudflare Worker in wrangler dev', { timeout: 240_000 }, () => {
  let stack;

  before(async () => {
    stack = await startStack({
      kv: { 'snapshot:active': ACTIVE },
      r2: { 'snapshots/active.json': PUBLISHED },
    });
  });

  after(async () => {
    await stack?.stop();
  });

  const json = async (response) => {
    assert.equal(response.status, 200, `status of ${response.url}`);
    return response.json();
  };
  const status = async () => json(await stack.admin('/_stellwerk/status'));

  test('startup timings', (t) => {
    t.diagnostic(JSON.stringify(stack.timings));
    assert.ok(stack.timings.worker_start_ms > 0);
  });

  test('health answers with JSON and the snapshot read from KV', async () => {
    const response = await stack.fetch('/_stellwerk/health');
    assert.match(response.headers.get('content-type'), /^application\/json/);
    const health = await json(response);
    assert.equal(health.status, 'ok');
    assert.equal(health.service, 'stellwerk');
    assert.equal(health.snapshot.loaded, true);
    assert.equal(health.snapshot.bytes, Buffer.byteLength(ACTIVE));
  });

  test('the snapshot cache survives across requests in one isolate', async () => {
    const first = await json(await stack.fetch('/_stellwerk/health'));
    const second = await json(await stack.fetch('/_stellwerk/health'));
    assert.equal(second.isolate.id, first.isolate.id, 'same isolate');
    assert.ok(second.isolate.requests > first.isolate.requests);
    assert.equal(second.snapshot.from_cache, true);
    assert.ok(second.snapshot.age_ms >= first.snapshot.age_ms);
    const { snapshot_cache: cache } = await status();
    assert.ok(cache.hits >= 1, JSON.stringify(cache));
  });

  test('an HTML page streams through byte-identical, keeping status and headers', async () => {
    const viaOrigin = await fetch(`${stack.origin.url}/`);
    const viaWorker = await stack.fetch('/');
    assert.equal(viaWorker.status, 200);
    const body = Buffer.from(await viaWorker.arrayBuffer());
    assert.ok(body.equals(stack.origin.page), `body differs (${body.length} vs ${stack.origin.page.length} bytes)`);
    for (const name of ['content-type', 'cache-control', 'etag', 'vary', 'x-origin', 'set-cookie']) {
      assert.equal(viaWorker.headers.get(name), viaOrigin.headers.get(name), name);
    }
    assert.equal(viaWorker.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(viaWorker.headers.get('content-length'), null, 'a rewritten body drops content-length');
  });

  test('non-HTML bodies pass through untouched with their headers', async () => {
    for (const [pathname, expected, type] of [
      ['/logo.svg', stack.origin.logo, 'image/svg+xml'],
      ['/api/data.json', stack.origin.data, 'application/json'],
    ]) {
      const response = await stack.fetch(pathname);
      assert.equal(response.status, 200, pathname);
      assert.equal(response.headers.get('content-type'), type);
      assert.equal(response.headers.get('content-length'), String(expected.length));
      assert.ok(Buffer.from(await response.arrayBuffer()).equals(expected), pathname);
    }
  });

  test('origin status codes and redirects reach the visitor unchanged', async () => {
    const missing = await stack.fetch('/no-such-page');
    assert.equal(missing.status, 404);
    assert.match(await missing.text(), /Not found/);
    const moved = await stack.fetch('/moved', { redirect: 'manual' });
    assert.equal(moved.status, 302);
    assert.equal(moved.headers.get('location'), '/');
  });

  test('the origin gets the path, query, body and only the forwarded headers', async () => {
    const response = await stack.fetch('/api/echo?q=alpine%20gloves&page=2', {
      method: 'POST',
      headers: {
        'content-type': 'text/plain',
        cookie: 'stellwerk_id=v1',
        'accept-language': 'de-CH',
        'x-forwarded-for': '203.0.113.9',
        'x-secret-internal': 'nope',
      },
      body: 'hello origin',
    });
    const seen = await json(response);
    assert.equal(seen.method, 'POST');
    assert.equal(seen.path, '/api/echo');
    assert.equal(seen.query, '?q=alpine%20gloves&page=2');
    assert.equal(seen.body, 'hello origin');
    assert.equal(seen.headers.cookie, 'stellwerk_id=v1');
    assert.equal(seen.headers['accept-language'], 'de-CH');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-for'], undefined);
    assert.equal(seen.headers['x-secret-internal'], undefined);
  });

  test('a slow page streams chunk by chunk: first bytes arrive before the origin finishes', async () => {
    const before = (await status()).isolate.streams;
    const start = performance.now();
    const response = await stack.fetch('/slow');
    const reader = response.body.getReader();
    const first = await reader.read();
    const firstByteMs = performance.now() - start;
    const parts = [Buffer.from(first.value)];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(Buffer.from(value));
    }
    const totalMs = performance.now() - start;
    assert.ok(Buffer.concat(parts).equals(stack.origin.page), 'body identical');
    assert.ok(firstByteMs < SLOW_MS - 300, `first byte after ${Math.round(firstByteMs)} ms`);
    assert.ok(totalMs >= SLOW_MS - 50, `whole body after ${Math.round(totalMs)} ms`);
    const after = (await status()).isolate.streams;
    assert.equal(after.responses - before.responses, 1);
    assert.equal(after.bytes_in - before.bytes_in, stack.origin.page.length);
    assert.equal(after.bytes_out - before.bytes_out, stack.origin.page.length);
    assert.ok(after.chunks - before.chunks >= 2, `${after.chunks - before.chunks} chunks`);
  });

  test('control routes refuse requests without the admin token', async () => {
    assert.equal((await stack.fetch('/_stellwerk/status')).status, 401);
    const beacon = await stack.fetch('/_stellwerk/beacon', { method: 'POST', body: '[]' });
    assert.equal(beacon.status, 401);
    const wrong = await stack.fetch('/_stellwerk/status', { headers: { authorization: 'Bearer wrong' } });
    assert.equal(wrong.status, 401);
    assert.equal((await stack.fetch('/_stellwerk/nothing')).status, 404);
  });

  test('a beacon rejects bodies that are not events', async () => {
    for (const body of ['not json', '"text"', '[]', JSON.stringify(Array.from({ length: 101 }, () => ({})))]) {
      const response = await stack.admin('/_stellwerk/beacon', { method: 'POST', body });
      assert.equal(response.status, 400, body.slice(0, 20));
    }
  });

  test('beacon events go through the queue (sent in waitUntil) and the consumer records them in KV', async (t) => {
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const events = ids.map((id, i) => ({ id, type: i === 2 ? 'click' : 'exposure', arm: 'b' }));
    const start = performance.now();
    const response = await stack.admin('/_stellwerk/beacon', { method: 'POST', body: JSON.stringify(events) });
    assert.equal(response.status, 202);
    assert.deepEqual(await response.json(), { queued: 3 });
    const consumed = await waitFor(async () => {
      const { events: record } = await status();
      return record && ids.every((id) => record.recent_ids.includes(id)) && record;
    }, { timeoutMs: 30_000, what: 'the consumer to record the events' });
    t.diagnostic(`queue round trip: ${Math.round(performance.now() - start)} ms`);
    assert.ok(consumed.by_type.exposure >= 2);
    assert.ok(consumed.by_type.click >= 1);
  });

  test('a message that is not an event is retried, then dead-lettered and recorded', async (t) => {
    const marker = randomUUID();
    const start = performance.now();
    const before = (await status()).events?.rejected ?? 0;
    const response = await stack.admin('/_stellwerk/beacon', {
      method: 'POST',
      body: JSON.stringify({ type: 'click', marker }),
    });
    assert.equal(response.status, 202);
    const dead = await waitFor(async () => {
      const { dead_letters: record } = await status();
      return record?.recent?.some((body) => body.marker === marker) && record;
    }, { timeoutMs: 90_000, intervalMs: 500, what: 'the dead letter' });
    t.diagnostic(`dead-lettered after ${Math.round(performance.now() - start)} ms`);
    assert.ok(dead.messages >= 1);
    const { events: record } = await status();
    // One delivery plus max_retries (3) redeliveries, each rejected.
    assert.equal(record.rejected - before, 4);
  });

  test('the scheduled sync copies the published snapshot from R2 into KV', async () => {
    const response = await stack.fetch('/cdn-cgi/handler/scheduled?cron=*/5+*+*+*+*');
    assert.equal(response.status, 200);
    const { sync } = await waitFor(async () => {
      const record = await status();
      return record.sync && record;
    }, { what: 'the sync record' });
    assert.equal(sync.outcome, 'activated');
    assert.equal(sync.cron, '*/5 * * * *');
    assert.equal(sync.object, 'snapshots/active.json');
    assert.equal(sync.bytes, Buffer.byteLength(PUBLISHED));
    assert.ok(sync.etag);
    const health = await json(await stack.fetch('/_stellwerk/health'));
    assert.equal(health.snapshot.bytes, Buffer.byteLength(PUBLISHED), 'the new snapshot is served');
  });
});
