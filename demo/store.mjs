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
  const modelManifest = readFileSync(path.join(ROOT, 'models/demo/ctr-mlp.manifest.json'));
  const model = readFileSync(path.join(ROOT, 'models/demo/ctr-mlp.onnx'));
  const version = JSON.parse(modelManifest).version;
  const objects = {
    'snapshots/demo.json': Buffer.from(snapshot),
    [`models/ctr-mlp/${version}.manifest.json`]: modelManifest,
    [`models/ctr-mlp/${version}.onnx`]: model,
  };
  objects['manifest.json'] = Buffer.from(JSON.stringify({
    snapshot: { key: 'snapshots/demo.json', sha256: sha256(objects['snapshots/demo.json']) },
    models: [{
      name: 'ctr-mlp',
      stable: { manifestKey: `models/ctr-mlp/${version}.manifest.json`, modelKey: `models/ctr-mlp/${version}.onnx` },
    }],
  }, null, 2));
  return objects;
}

export { sha256 };
