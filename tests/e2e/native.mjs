// The native `stellwerk` CLI as the reference the edges are compared with.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../../scripts/seed.mjs';

const BINARY = path.join(ROOT, 'target', 'debug', 'stellwerk');

/** Runs the CLI (built by `cargo build -p stellwerk-cli`) and returns its stdout. */
export function stellwerk(args, input) {
  if (!existsSync(BINARY)) execFileSync('cargo', ['build', '-q', '-p', 'stellwerk-cli'], { cwd: ROOT, stdio: 'inherit' });
  return execFileSync(BINARY, args, { cwd: ROOT, input, encoding: 'utf8', maxBuffer: 64 << 20 });
}

/**
 * Every conformance vector with the native core's output, as exact text: `stellwerk conformance`
 * prints one `"kind/file.json":output` entry per line.
 */
export function conformanceCases() {
  return stellwerk(['conformance'])
    .split('\n')
    .filter((line) => line.startsWith('"'))
    .map((line) => {
      const name = JSON.parse(line.slice(0, line.indexOf('":') + 1));
      const native = line.slice(line.indexOf('":') + 2).replace(/,$/, '');
      const [kind] = name.split('/');
      const fileText = readFileSync(path.join(ROOT, 'tests', 'conformance', name), 'utf8');
      return { name, kind, fileText, native };
    });
}
