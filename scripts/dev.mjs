// Starts the demo origin and the Worker in front of it (local workerd, KV, R2, Queues) and
// keeps them running until Ctrl-C. scripts/demo.sh builds and seeds first, then runs this.
//
//   node scripts/dev.mjs [--port 8787] [--origin-port 8080] [--persist-to .wrangler/state]
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startOrigin } from '../demo/origin/server.mjs';
import { ROOT } from './seed.mjs';
import { startEdge } from './local-edge.mjs';
import { ensureDevVars } from './dev-vars.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
};
const port = Number(arg('--port', 8787));
const originPort = Number(arg('--origin-port', 8080));
const persistTo = path.resolve(arg('--persist-to', path.join(ROOT, '.wrangler/state')));

const devVars = readFileSync(ensureDevVars(), 'utf8');
const adminToken = /^ADMIN_TOKEN\s*=\s*"?([^"\n]*)"?/m.exec(devVars)?.[1] ?? '(see .dev.vars)';

const origin = await startOrigin({ port: originPort });
const started = performance.now();
const { url, worker } = await startEdge({
  port,
  persistTo,
  vars: { ORIGIN_URL: origin.url },
  logLevel: process.env.STELLWERK_LOG ?? 'log',
});
const startMs = Math.round(performance.now() - started);

// Activate what the seed published in local R2, through the same verified sync the cron runs.
const synced = await (await fetch(`${url}/_stellwerk/admin/sync`, {
  method: 'POST',
  headers: { authorization: `Bearer ${adminToken}` },
})).json();
for (const refusal of synced.refusals ?? []) console.error(`sync refused ${refusal.object}: ${refusal.reason}`);

console.log(`
Stellwerk (local edge, started in ${startMs} ms)
  site through the edge   ${url}/
  origin, direct          ${origin.url}/
  health                  ${url}/_stellwerk/health
  active snapshot         ${synced.snapshot?.version ?? '(none: see the refusals above)'}
  status (admin)          curl -H 'Authorization: Bearer ${adminToken}' ${url}/_stellwerk/status
  run the scheduled sync  curl '${url}/cdn-cgi/handler/scheduled?cron=*/5+*+*+*+*'
  simulate visitors       node scripts/simulate.mjs --url ${url}   (watch the bandit learn)
  local storage           ${path.relative(ROOT, persistTo) || '.'}
Ctrl-C stops both.
`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await worker.dispose();
  await origin.close();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
