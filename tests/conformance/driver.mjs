// The conformance driver shared by every edge's end-to-end tests: posts each vector under
// tests/conformance/ to an edge's admin route (`POST /_stellwerk/conformance`) over HTTP and
// compares the answer, byte for byte, with the native core's (`stellwerk conformance`). The
// Worker (tests/e2e/worker.test.mjs) and the Spin component (tests/spin/spin.test.mjs) run it
// against the same native answers, and each prints the sha256 of all its answers: equal digests
// mean byte-identical results on both edges.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { conformanceCases } from '../e2e/native.mjs';

/**
 * Runs every vector against the edge at `url`. Resolves to `{ results, digest }`: per vector its
 * name, the edge's status and body text, and the native output; `digest` is the sha256 over all
 * names and answers, in order.
 */
export async function runConformance({ url, adminToken }) {
  const results = [];
  for (const { name, kind, fileText, native } of conformanceCases()) {
    const response = await fetch(new URL('/_stellwerk/conformance', url), {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      // The vector's own text, so numbers reach the edge exactly as written (0 vs 0.0).
      body: `{"kind":${JSON.stringify(kind)},"vector":${fileText}}`,
    });
    results.push({ name, native, status: response.status, text: await response.text() });
  }
  const hash = createHash('sha256');
  for (const { name, status, text } of results) hash.update(`${name}\n${status}\n${text}\n`);
  return { results, digest: hash.digest('hex') };
}

/** Asserts that every vector ran and answered exactly what the native core answers. */
export function assertConformance(results) {
  assert.ok(results.length >= 90, `${results.length} vectors`);
  for (const { name, native, status, text } of results) {
    assert.equal(status, 200, `${name}: ${text}`);
    assert.equal(text, native, name);
  }
}
