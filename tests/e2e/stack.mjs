// Starts what an end-to-end test needs and stops it again: the demo origin (in this process),
// seeded local KV and R2 in a fresh directory, and the Worker in wrangler's dev server (workerd)
// with the inspector off (scripts/local-edge.mjs).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startOrigin } from '../../demo/origin/server.mjs';
import { freePort } from '../ports.mjs';
import { publish } from '../../scripts/publish.mjs';
import { startEdge } from '../../scripts/local-edge.mjs';
import { ensureDevVars } from '../../scripts/dev-vars.mjs';

/**
 * Starts origin + Worker in a fresh local storage directory, then publishes `r2` (keys to
 * strings or Buffers) through the Worker's admin route and syncs; `vars` override wrangler.toml's [vars].
 * Resolves to `{ url, origin, adminToken, timings, fetch, admin, stop }`.
 */
export async function startStack({ r2 = {}, vars = {}, secrets = {}, logLevel = process.env.STELLWERK_E2E_LOG ?? 'warn' } = {}) {
  const timings = {};
  let t = performance.now();
  const lap = (name) => { const now = performance.now(); timings[name] = Math.round(now - t); t = now; };

  ensureDevVars();
  const persistTo = await mkdtemp(path.join(tmpdir(), 'stellwerk-e2e-'));
  const origin = await startOrigin({ port: 0 });

  const adminToken = randomBytes(16).toString('hex');
  const port = await freePort();
  const { url, worker } = await startEdge({
    port,
    persistTo,
    vars: { ORIGIN_URL: origin.url, ...vars },
    secrets: { ...secrets, ADMIN_TOKEN: adminToken },
    logLevel,
  });
  lap('worker_start_ms');
  const pointers = await publish({ url, adminToken, objects: r2 });
  lap('publish_ms');

  // The runtime gzips responses for clients that accept it (as Cloudflare's edge does), and its
  // compressor holds back a partial stream; ask for identity to see the Worker's own bytes.
  const fetchWorker = (pathname, init = {}) => fetch(new URL(pathname, url), {
    ...init,
    headers: { 'accept-encoding': 'identity', ...(init.headers ?? {}) },
  });
  const admin = (pathname, init = {}) => fetchWorker(pathname, {
    ...init,
    headers: { ...(init.headers ?? {}), authorization: `Bearer ${adminToken}` },
  });
  await (await fetchWorker('/_stellwerk/health')).arrayBuffer();
  lap('first_request_ms');

  return {
    url,
    origin,
    adminToken,
    pointers,
    timings,
    persistTo,
    fetch: fetchWorker,
    admin,
    async stop() {
      await worker.dispose();
      await origin.close();
      await rm(persistTo, { recursive: true, force: true });
    },
  };
}

/** Calls `probe` until it returns a truthy value or `timeoutMs` passes; returns the value. */
export async function waitFor(probe, { timeoutMs = 30_000, intervalMs = 250, what = 'condition' } = {}) {
  const deadline = performance.now() + timeoutMs;
  let last;
  while (performance.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
