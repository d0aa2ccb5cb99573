// Starts what a Spin end-to-end test needs, each on its own port: a redis-server in a fresh
// directory (the event stream and, as Spin's Redis key-value backend lays it out, the store),
// the demo origin, and the test host running the Spin component (tests/spin-host).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startOrigin } from '../../demo/origin/server.mjs';
import { freePort } from '../ports.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const COMPONENT = process.env.STELLWERK_SPIN_WASM
  ?? path.join(root, 'target/wasm32-wasip2/release/stellwerk_spin.wasm');
export const HOST = process.env.STELLWERK_SPIN_HOST
  ?? path.join(root, 'tests/spin-host/target/release/stellwerk-spin-host');
export const CLI = process.env.STELLWERK_CLI ?? path.join(root, 'target/debug/stellwerk');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, probe, ms = 20_000) {
  const end = Date.now() + ms;
  for (;;) {
    try { if (await probe()) return; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error(`${what} did not start`);
    await sleep(50);
  }
}

/** Starts redis + origin + host. Resolves to helpers and a `stop()`. */
export async function startSpinStack({ variables = {} } = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 'stellwerk-spin-'));
  const redisPort = await freePort();
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const cli = (...args) => execFileSync('redis-cli', ['-p', String(redisPort), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trimEnd();
  await until('redis-server', () => cli('PING') === 'PONG');

  const origin = await startOrigin({ port: 0 });
  const port = await freePort();
  const vars = {
    origin_url: origin.url, hmac_key: 'e2e-hmac-key-0123456789', unit_id_key: 'e2e-unit-key-0123456789',
    redis_url: redisUrl, cache_ttl_ms: '0', ...variables,
  };
  const args = [COMPONENT, '--listen', `127.0.0.1:${port}`, '--kv-redis', redisUrl,
    ...Object.entries(vars).flatMap(([k, v]) => ['--var', `${k}=${v}`])];
  const host = spawn(HOST, args, { stdio: ['ignore', 'ignore', process.env.STELLWERK_E2E_LOG ? 'inherit' : 'ignore'] });
  const url = `http://127.0.0.1:${port}`;
  await until('spin host', async () => (await fetch(`${url}/_stellwerk/health`)).ok, 180_000);

  return {
    url, origin, redisUrl, redisPort, cli,
    /** Runs `stellwerk aggregate` against this Redis; resolves to { status, lines }. */
    aggregate(...extra) {
      return new Promise((resolve) => {
        const child = spawn(CLI, ['aggregate', '--redis', redisUrl, ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (d) => { out += d; });
        child.on('close', (status) => resolve({ status, lines: out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) }));
      });
    },
    spawnAggregator(...extra) {
      return spawn(CLI, ['aggregate', '--redis', redisUrl, ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
    },
    async stop() {
      host.kill();
      redis.kill();
      await origin.close?.();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
