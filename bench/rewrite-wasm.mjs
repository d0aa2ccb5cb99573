#!/usr/bin/env node
// What rewriting the bench page costs in WebAssembly, apart from the rest of the Worker: the
// same `PageRewriter` cases (shared/rewrite/examples/page_timing.rs) built natively and for
// wasm32-wasip1 with the release profile and the Worker's `+simd128`, the wasm run by Node's V8
// (the engine workerd embeds), one after the other in this process's machine.
//
//   node bench/rewrite-wasm.mjs [--iterations 200] [--page tests/pages/landing.html]
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { WASI } from 'node:wasi';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

process.removeAllListeners('warning'); // node:wasi's ExperimentalWarning
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const iterations = String(Number(arg('--iterations', 200)));
const page = path.resolve(arg('--page', path.join(ROOT, 'tests/pages/landing.html')));

function build(target) {
  const args = ['build', '--release', '-p', 'stellwerk-rewrite', '--example', 'page_timing'];
  if (target) args.push('--target', target);
  execFileSync('cargo', args, {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS: '-C target-feature=+simd128' },
  });
  const dir = target ? path.join(ROOT, 'target', target, 'release/examples') : path.join(ROOT, 'target/release/examples');
  return path.join(dir, target ? 'page_timing.wasm' : 'page_timing');
}

const parse = (out) => Object.fromEntries(out.trim().split('\n').map((line) => JSON.parse(line)).map((r) => [r.case, r.micros]));

const nativeBin = build();
const wasmFile = build('wasm32-wasip1');
const native = parse(execFileSync(nativeBin, [page, iterations], { encoding: 'utf8' }));

// The example writes its JSON lines to stdout, here a file; WASI sees the page's directory as /page.
const outDir = mkdtempSync(path.join(tmpdir(), 'rewrite-wasm-'));
const outFile = path.join(outDir, 'out.jsonl');
const fd = openSync(outFile, 'w');
const wasi = new WASI({
  version: 'preview1',
  args: ['page_timing', `/page/${path.basename(page)}`, iterations],
  preopens: { '/page': path.dirname(page) },
  stdout: fd,
});
const module = await WebAssembly.compile(readFileSync(wasmFile));
wasi.start(await WebAssembly.instantiate(module, wasi.getImportObject()));
closeSync(fd);
const wasm = parse(readFileSync(outFile, 'utf8'));
rmSync(outDir, { recursive: true, force: true });

const f = (x) => x.toFixed(0);
console.log(`page: ${path.relative(ROOT, page)}, ${readFileSync(page).length} bytes, in 32 KB chunks; ${iterations} iterations per case; node ${process.version}`);
console.log('');
console.log('| case | native µs | wasm µs | wasm / native |');
console.log('|---|---:|---:|---:|');
for (const name of Object.keys(native)) {
  console.log(`| ${name} | ${f(native[name])} | ${f(wasm[name])} | ${(wasm[name] / native[name]).toFixed(2)}× |`);
}
