// Seeds wrangler's local KV and R2 (the directory `wrangler dev --persist-to DIR` uses) through
// the wrangler CLI. Run it before the dev server starts: the CLI writes the same SQLite files
// the server reads.
//
//   node scripts/seed.mjs [--persist-to .wrangler/state]
//
// As a module: `await seed({ persistTo, kv: [{ key, file }], r2: [{ key, file }] })`.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const KV_BINDING = 'STELLWERK_KV';
export const R2_BUCKET = 'stellwerk-models';
const WRANGLER = path.join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');


function wrangler(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRANGLER, ...args], {
      cwd: ROOT,
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0
      ? resolve(output)
      : reject(new Error(`wrangler ${args.join(' ')} exited with ${code}:\n${output}`))));
  });
}

/** Writes every KV entry and R2 object into the local storage under `persistTo`. */
export async function seed({ persistTo, kv = [], r2 = [], config = path.join(ROOT, 'wrangler.toml') }) {
  const common = ['--local', '--persist-to', persistTo, '--config', config];
  // Each CLI call costs a Node start (~2-7 s on a busy machine); they write different files, so
  // run them side by side.
  await Promise.all([
    ...kv.map(({ key, file }) => wrangler(['kv', 'key', 'put', key, '--binding', KV_BINDING, '--path', file, ...common])),
    ...r2.map(({ key, file, contentType = 'application/json' }) => wrangler([
      'r2', 'object', 'put', `${R2_BUCKET}/${key}`, '--file', file, '--content-type', contentType, ...common,
    ])),
  ]);
}

/** Writes `{ key: bytes }` objects to files under `dir` and returns the `[{ key, file }]` list `seed` takes. */
export async function asFiles(dir, objects) {
  await mkdir(dir, { recursive: true });
  return Promise.all(Object.entries(objects).map(async ([key, body], i) => {
    const file = path.join(dir, `${i}-${key.replace(/[^a-z0-9.]+/gi, '_')}`);
    await writeFile(file, body);
    return { key, file };
  }));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--persist-to');
  const persistTo = path.resolve(i > 0 ? process.argv[i + 1] : path.join(ROOT, '.wrangler/state'));
  const { demoStore } = await import('../demo/store.mjs');
  const r2 = await asFiles(path.join(persistTo, 'seed'), demoStore());
  await seed({ persistTo, r2 });
  console.log(`seeded ${r2.length} R2 object(s) into ${persistTo}; the sync activates them`);
}
