// Imports point down: the layer order of src/, and every import (type-only ones included) from a lower layer to a higher one is an error.

import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../../src");

/**
 * Lowest first. A file belongs to the longest prefix that matches its path under src/. A file may
 * import its own layer and those before it. config/types.ts holds plain data types every layer
 * may use, so it may itself name types from anywhere (it never runs code).
 */
const LAYERS: readonly (readonly string[])[] = [
  ["protocol/"],
  ["util/"],
  ["sql/"],
  ["config/"], // schema, types, key locator, display: no loader
  ["server/"], // connections and pools: know nothing of clients, cluster or modules
  ["cluster/"], // nodes, health, failover, journal and replay
  ["core/hooks.ts", "core/startup-hooks.ts", "core/request-tap.ts"], // the module contract
  ["router/"],
  ["modules/"],
  ["config/load.ts"], // the loader validates module sections
  ["core/"],
  ["client/"],
  ["admin/"],
  ["proxy.ts", "devcluster/", "cli/"],
];

/**
 * Upward imports that exist today, each a known debt: the test fails when one goes away (remove
 * it here) as well as when a new one appears. "from -> to" as paths under src/.
 */
const KNOWN: readonly string[] = [];

function layerOf(file: string): number {
  let best = -1;
  let bestLen = -1;
  LAYERS.forEach((prefixes, i) => {
    for (const p of prefixes) if (file.startsWith(p) && p.length > bestLen) [best, bestLen] = [i, p.length];
  });
  return best;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Relative specifiers a file imports: static imports and re-exports (type-only too), require() and import(). */
function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+"(\.[^"]+)"/gm)) out.push(m[1]!);
  for (const m of text.matchAll(/\b(?:require|import)\(\s*"(\.[^"]+)"\s*\)/g)) out.push(m[1]!);
  return out;
}

function upwardImports(): string[] {
  const found: string[] = [];
  for (const path of sourceFiles(SRC)) {
    const from = relative(SRC, path);
    if (from === "config/types.ts") continue;
    const own = layerOf(from);
    for (const spec of importsOf(readFileSync(path, "utf8"))) {
      const to = relative(SRC, resolve(dirname(path), spec));
      if (to.startsWith("..")) continue; // package.json and the like
      if (to === "config/types.ts") continue;
      if (layerOf(to) > own) found.push(`${from} -> ${to}`);
    }
  }
  return [...new Set(found)].sort();
}

test("every file under src/ is in a layer", () => {
  const unplaced = sourceFiles(SRC).map((p) => relative(SRC, p)).filter((f) => layerOf(f) < 0);
  expect(unplaced).toEqual([]);
});

test("no import from a lower layer to a higher one beyond the known ones", () => {
  expect(upwardImports()).toEqual([...KNOWN].sort());
});

test("the import reader sees every kind of import", () => {
  const text = `import { a } from "./a.ts";\nimport type {\n  B,\n  C,\n} from "../b.ts";\nexport { d } from "./d.ts";\nconst e = require("./e.ts");\nawait import("./f.ts");\nimport x from "node:fs";\n`;
  expect(importsOf(text)).toEqual(["./a.ts", "../b.ts", "./d.ts", "./e.ts", "./f.ts"]);
});
