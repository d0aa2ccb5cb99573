// Publishes objects to a running Stellwerk Worker's object store through its admin route
// (`PUT /_stellwerk/admin/objects/{key}`), then runs the verified sync (`POST /_stellwerk/admin/sync`).
// Nothing is served from an object until the sync has verified it. Used by the demo, the
// end-to-end tests and the benchmark; going through the Worker avoids writing wrangler's local
// storage from a second process.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** PUTs every `{ key: bytes }` object, then syncs; resolves to the sync's model pointers. */
export async function publish({ url, adminToken, objects }) {
  const authorization = `Bearer ${adminToken}`;
  for (const [key, body] of Object.entries(objects)) {
    const response = await fetch(`${url}/_stellwerk/admin/objects/${key}`, { method: 'PUT', headers: { authorization }, body });
    if (response.status !== 201) throw new Error(`publishing ${key}: ${response.status} ${await response.text()}`);
  }
  const response = await fetch(`${url}/_stellwerk/admin/sync`, { method: 'POST', headers: { authorization } });
  if (response.status !== 200) throw new Error(`sync: ${response.status} ${await response.text()}`);
  return response.json();
}
