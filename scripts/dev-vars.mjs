// Creates .dev.vars (local secrets, gitignored) from .dev.vars.example when it is missing.
import { copyFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Path of .dev.vars, created from the example when absent. */
export function ensureDevVars() {
  const target = path.join(ROOT, '.dev.vars');
  if (!existsSync(target)) {
    copyFileSync(path.join(ROOT, '.dev.vars.example'), target);
    console.error('created .dev.vars from .dev.vars.example (local secrets; never deploy them)');
  }
  return target;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  ensureDevVars();
}
