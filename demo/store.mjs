// The demo's object store: the example snapshot and the demo model, with the sync manifest that
// names them by sha256. scripts/seed.mjs puts these into local R2; the Worker's sync verifies
// and activates them.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** `{ key: Buffer }` for every object, `manifest.json` included. */
export function demoStore({ snapshot = readFileSync(path.join(ROOT, 'examples/snapshot.json')) } = {}) {
  const objects = { 'snapshots/demo.json': Buffer.from(snapshot) };
  objects['manifest.json'] = Buffer.from(JSON.stringify({
    snapshot: { key: 'snapshots/demo.json', sha256: sha256(objects['snapshots/demo.json']) },
    models: [],
  }, null, 2));
  return addModel(objects, path.join(ROOT, 'models/demo'), 'ctr-mlp');
}

/**
 * Adds model `name` from `dir` (`<name>.manifest.json`, `<name>.onnx`) to `objects` as the stable
 * version in their sync manifest; returns `objects`.
 */
export function addModel(objects, dir, name) {
  const manifest = readFileSync(path.join(dir, `${name}.manifest.json`));
  const { version } = JSON.parse(manifest);
  const manifestKey = `models/${name}/${version}.manifest.json`;
  const modelKey = `models/${name}/${version}.onnx`;
  objects[manifestKey] = manifest;
  objects[modelKey] = readFileSync(path.join(dir, `${name}.onnx`));
  const sync = JSON.parse(objects['manifest.json']);
  sync.models.push({ name, stable: { manifestKey, modelKey } });
  // Re-added so it stays the last key: it is published after the objects it names.
  delete objects['manifest.json'];
  objects['manifest.json'] = Buffer.from(JSON.stringify(sync, null, 2));
  return objects;
}

export { sha256 };
