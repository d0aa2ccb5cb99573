// Runs the Worker in wrangler's local dev server (workerd + local KV, R2, Queues) through
// wrangler's Node API. The DevTools inspector stays off: `wrangler dev` on the command line always
// runs an inspector proxy that copies every subrequest body into a buffer, which costs CPU per
// page and eventually exhausts the heap under load (ARCHITECTURE.md).
import path from 'node:path';
import { unstable_startWorker } from 'wrangler';
import { ROOT } from './seed.mjs';

/**
 * Starts the Worker of wrangler.toml. `vars` and `secrets` override [vars] and .dev.vars;
 * `persistTo` is the local storage directory (what `--persist-to` takes).
 * Resolves to `{ url, worker }`; `worker.dispose()` stops it.
 */
export async function startEdge({ port, persistTo, vars = {}, secrets = {}, logLevel = 'warn' }) {
  const bindings = {};
  for (const [name, value] of Object.entries(vars)) bindings[name] = { type: 'plain_text', value: String(value) };
  for (const [name, value] of Object.entries(secrets)) bindings[name] = { type: 'secret_text', value: String(value) };
  const worker = await unstable_startWorker({
    config: path.join(ROOT, 'wrangler.toml'),
    bindings,
    sendMetrics: false,
    dev: {
      inspector: false,
      server: { hostname: '127.0.0.1', port },
      persist: persistTo,
      watch: false,
      logLevel,
    },
  });
  await worker.ready;
  return { url: (await worker.url).origin, worker };
}
