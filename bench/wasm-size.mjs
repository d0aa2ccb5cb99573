#!/usr/bin/env node
// What pulls the bytes of a wasm module: code-section bytes per crate (from the name section),
// plus data and the other sections. Needs a build that keeps names (rustc's wasm output before
// wasm-opt, or worker-build's output, which wasm-opt writes with --debuginfo).
//
//   node bench/wasm-size.mjs [file.wasm] [--top N] [--functions N]
import { readFileSync } from "node:fs";

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args.splice(i, 2)[1]) : fallback;
};
const top = flag("--top", 30);
const topFunctions = flag("--functions", 0);
const file = args[0] ?? "functions/cloudflare/build/index_bg.wasm";
const bytes = readFileSync(file);

let pos = 8;
const u32 = () => {
  let result = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[pos++];
    result += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return result;
    shift += 7;
  }
};
const name = () => {
  const len = u32();
  const s = bytes.toString("utf8", pos, pos + len);
  pos += len;
  return s;
};

const sections = new Map();
let importedFunctions = 0;
const bodySizes = [];
const functionNames = new Map();
while (pos < bytes.length) {
  const id = bytes[pos++];
  const size = u32();
  const end = pos + size;
  let label = ["custom", "type", "import", "function", "table", "memory", "global", "export",
    "start", "element", "code", "data", "datacount"][id] ?? `id ${id}`;
  if (id === 0) {
    const custom = name();
    label = `custom ${custom}`;
    if (custom === "name") {
      while (pos < end) {
        const sub = bytes[pos++];
        const subSize = u32();
        const subEnd = pos + subSize;
        if (sub === 1) {
          for (let n = u32(); n > 0; n--) functionNames.set(u32(), name());
        }
        pos = subEnd;
      }
    }
  } else if (id === 2) {
    for (let n = u32(); n > 0; n--) {
      name();
      name();
      const kind = bytes[pos++];
      if (kind === 0) {
        importedFunctions++;
        u32();
      } else break; // only function imports matter for numbering; stop at the first other kind
    }
  } else if (id === 10) {
    for (let n = u32(); n > 0; n--) {
      const len = u32();
      bodySizes.push(len);
      pos += len;
    }
  }
  sections.set(label, (sections.get(label) ?? 0) + size);
  pos = end;
}

// The crate a function belongs to, from its (legacy-mangled or demangled) name: the first path
// segment, looking inside `<T as Trait>` for the implementing type's crate.
const crateOf = (fn) => {
  const mangled = fn.match(/^_ZN\d+(.*)$/);
  let s = mangled ? mangled[1].replace(/\$LT\$|\$u20\$|\$RF\$|\$BP\$|_\$LT\$/g, " ").replace(/\.\./g, "::") : fn;
  s = s.replace(/^[\s_<&*(\[]+/, "").replace(/^(const |mut |dyn )+/, "");
  const m = s.match(/^([A-Za-z_][A-Za-z0-9_]*)::/) ?? s.match(/^([A-Za-z_][A-Za-z0-9_]*?)\d+[A-Za-z_]/);
  return m ? m[1] : "(other)";
};

const byCrate = new Map();
const functions = [];
bodySizes.forEach((size, i) => {
  const fn = functionNames.get(i + importedFunctions) ?? `(unnamed #${i})`;
  const crate = functionNames.size ? crateOf(fn) : "(no name section)";
  byCrate.set(crate, (byCrate.get(crate) ?? 0) + size);
  functions.push([size, fn]);
});

const total = bytes.length;
const pct = (n) => ((100 * n) / total).toFixed(1).padStart(5);
console.log(`${file}: ${total} bytes, ${bodySizes.length} functions, names for ${functionNames.size}`);
console.log("\nsections:");
for (const [label, size] of [...sections].sort((a, b) => b[1] - a[1])) {
  console.log(`  ${String(size).padStart(9)} ${pct(size)}%  ${label}`);
}
console.log(`\ncode by crate (top ${top}):`);
for (const [crate, size] of [...byCrate].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`  ${String(size).padStart(9)} ${pct(size)}%  ${crate}`);
}
if (topFunctions) {
  console.log(`\nlargest functions (top ${topFunctions}):`);
  for (const [size, fn] of functions.sort((a, b) => b[0] - a[0]).slice(0, topFunctions)) {
    console.log(`  ${String(size).padStart(9)}  ${fn.slice(0, 160)}`);
  }
}
