#!/usr/bin/env bash
# Rough throughput of the Spin component in the test host (Wasmtime 44, one instance per request
# as Spin does) against the demo origin's ~100 KB landing page: N requests, C at a time; then the
# same with the demo model active (each request fetches it from the object store and loads it).
# Run scripts/spin-test.sh first (it builds the component, the host and the CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-400} C=${C:-8} node --input-type=module -e '
import { readFileSync } from "node:fs";
import { startSpinStack } from "./tests/spin/stack.mjs";
import { demoStore } from "./demo/store.mjs";
import { publish } from "./scripts/publish.mjs";
const n = Number(process.env.N), c = Number(process.env.C);
const stack = await startSpinStack({ variables: { cache_ttl_ms: "5000" } });
stack.cli("SET", "snapshot:active", readFileSync("examples/snapshot.json", "utf8"));
const ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const get = async (url, i) => { const r = await fetch(url, { headers: { "user-agent": ua, cookie: `stellwerk_id=${i.toString(16).padStart(32, "0")}` } }); await r.arrayBuffer(); };
async function run(url) {
  let next = 0; const t = performance.now();
  await Promise.all(Array.from({ length: c }, async () => { while (next < n) await get(url, ++next); }));
  return n / ((performance.now() - t) / 1000);
}
await run(stack.url + "/"); // warm-up
const direct = await run(stack.origin.url + "/");
const edge = await run(stack.url + "/");
await publish({ url: stack.url, adminToken: stack.adminToken, objects: demoStore() });
const withModel = await run(stack.url + "/");
console.log(JSON.stringify({ requests: n, concurrency: c, originRps: Math.round(direct), spinRps: Math.round(edge),
  spinWithModelRps: Math.round(withModel) }));
await stack.stop();
'
