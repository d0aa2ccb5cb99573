// Starts what a Spin end-to-end test needs, each on its own port: a redis-server in a fresh
// directory (the event stream and, as Spin's Redis key-value backend lays it out, the store),
// the demo origin, a plain HTTP object store, and the test host running the Spin component
// (tests/spin-host).
import { spawn, execFileSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
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

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
const hmac = (key, text) => createHmac('sha256', key).update(text).digest();

/**
 * Whether a request carries a valid AWS SigV4 header signature for `credentials`, recomputed
 * here from what arrived on the wire (method, path, signed headers, body hash), independently
 * of the core's signer; S3 also refuses a clock more than 15 minutes off.
 */
function signedByS3Rules(req, body, { accessKeyId, secretAccessKey, region }) {
  const auth = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request,SignedHeaders=([a-z0-9;-]+),Signature=([0-9a-f]{64})$/
    .exec(req.headers.authorization ?? '');
  const amzDate = req.headers['x-amz-date'] ?? '';
  if (!auth || auth[1] !== accessKeyId || auth[3] !== region || !amzDate.startsWith(auth[2])) return false;
  const at = Date.parse(amzDate.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z'));
  if (!(Math.abs(Date.now() - at) < 15 * 60_000)) return false;
  if (req.headers['x-amz-content-sha256'] !== sha256(body)) return false;
  const names = auth[4].split(';');
  if (!names.includes('host') || !names.includes('x-amz-date')) return false;
  const [path, query = ''] = req.url.split('?');
  const canonical = [req.method, path, query, ...names.map((n) => `${n}:${String(req.headers[n] ?? '').trim()}`), '', auth[4],
    req.headers['x-amz-content-sha256']].join('\n');
  const scope = `${auth[2]}/${region}/s3/aws4_request`;
  let key = hmac(`AWS4${secretAccessKey}`, auth[2]);
  for (const part of [region, 's3', 'aws4_request']) key = hmac(key, part);
  const expected = hmac(key, ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n')).toString('hex');
  return expected === auth[5];
}

/**
 * An object store over HTTP: objects in memory, every request recorded so tests can see what
 * the component asked for. Without `credentials` it is a plain web server (GET, and PUT); with
 * them it refuses (403) any request not signed for them with AWS SigV4, as S3 does.
 */
export async function startObjectStore({ credentials } = {}) {
  const objects = new Map();
  const requests = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const key = decodeURIComponent(new URL(req.url, 'http://store').pathname.slice(1));
    const signed = credentials ? signedByS3Rules(req, body, credentials) : null;
    requests.push({ method: req.method, key, headers: req.headers, signed });
    if (signed === false) return res.writeHead(403).end('SignatureDoesNotMatch');
    if (req.method === 'PUT') {
      objects.set(key, body);
      return res.writeHead(200).end();
    }
    const object = objects.get(key);
    res.writeHead(object ? 200 : 404).end(object ?? '');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, objects, requests, close: () => new Promise((r) => server.close(r)) };
}

/** Starts redis + origin + object store + host. Resolves to helpers and a `stop()`. */
export async function startSpinStack({ variables = {} } = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 'stellwerk-spin-'));
  const redisPort = await freePort();
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const cli = (...args) => execFileSync('redis-cli', ['-p', String(redisPort), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trimEnd();
  await until('redis-server', () => cli('PING') === 'PONG');

  const origin = await startOrigin({ port: 0 });
  // An S3-style store: the component signs every object request with these keys.
  const credentials = { accessKeyId: 'AKIDSTELLWERKE2E', secretAccessKey: randomBytes(20).toString('base64'), region: 'eu-central-1' };
  const store = await startObjectStore({ credentials });
  const adminToken = randomBytes(16).toString('hex');
  const port = await freePort();
  const vars = {
    origin_url: origin.url, hmac_key: 'e2e-hmac-key-0123456789', unit_id_key: 'e2e-unit-key-0123456789',
    redis_url: redisUrl, cache_ttl_ms: '0', object_store_url: store.url, object_store_prefix: 'bucket/stellwerk',
    object_store_access_key_id: credentials.accessKeyId, object_store_secret_access_key: credentials.secretAccessKey,
    object_store_region: credentials.region, admin_token: adminToken, ...variables,
  };
  const args = [COMPONENT, '--listen', `127.0.0.1:${port}`, '--kv-redis', redisUrl,
    ...Object.entries(vars).flatMap(([k, v]) => ['--var', `${k}=${v}`])];
  const host = spawn(HOST, args, { stdio: ['ignore', 'ignore', process.env.STELLWERK_E2E_LOG ? 'inherit' : 'ignore'] });
  const url = `http://127.0.0.1:${port}`;
  try {
    await until('spin host', async () => (await fetch(`${url}/_stellwerk/health`)).ok, 180_000);
  } catch (error) {
    // Leave nothing running behind a failed start.
    host.kill();
    redis.kill();
    await origin.close?.();
    await store.close();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  return {
    url, origin, store, credentials, adminToken, redisUrl, redisPort, cli,
    /** A request to an admin route with the bearer token. */
    admin(pathname, init = {}) {
      return fetch(url + pathname, { ...init, headers: { ...(init.headers ?? {}), authorization: `Bearer ${adminToken}` } });
    },
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
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
