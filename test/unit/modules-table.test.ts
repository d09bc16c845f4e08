// The feature table is the one list: bunfig.toml, the build's defines and every module agree with its rows.

import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import { definesFor, defineName, PROFILES } from "../../scripts/build.ts";
import { HOOKS_API_VERSION } from "../../src/core/hooks.ts";
import { FEATURES, moduleFor, moduleSpec, UNBUILT_SECTIONS } from "../../src/modules/index.ts";

const ROOT = resolve(import.meta.dir, "../..");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

test("bunfig.toml defines no feature constant: development and tests have every row compiled in", () => {
  const bunfig = parseToml(readFileSync(join(ROOT, "bunfig.toml"), "utf8")) as { define?: Record<string, string> };
  expect(Object.keys(bunfig.define ?? {}).filter((k) => k.startsWith("FEATURE_"))).toEqual([]);
  expect(FEATURES.every((r) => r.compiled && (r.section === undefined || r.load !== undefined))).toBe(true);
});

test("the build defines one constant per row for every profile; profiles come from the rows", () => {
  for (const profile of Object.keys(PROFILES)) {
    const d = definesFor(profile);
    expect(Object.keys(d).sort()).toEqual(["BUILD_PROFILE", ...FEATURES.map((r) => defineName(r.feature))].sort());
    for (const r of FEATURES) expect(d[defineName(r.feature)]).toBe(String(profile === "all" || (r.profiles as string[]).includes(profile)));
  }
  expect(PROFILES.default).toEqual(["pool-modes", "routing-hints", "query-analytics", "observability", "postgres-topology"]);
  expect(PROFILES.ha).toEqual(["pool-modes", "ha-tr", "routing-hints", "lag-routing", "query-analytics", "observability", "postgres-topology", "heliosdb-topology"]);
});

test("modules/index.ts declares exactly the rows' constants, and nothing else reads FEATURE_*", () => {
  const index = readFileSync(join(ROOT, "src/modules/index.ts"), "utf8");
  const declared = [...index.matchAll(/^declare const (FEATURE_[A-Z_]+): boolean;$/gm)].map((m) => m[1]);
  expect(declared.sort()).toEqual(FEATURES.map((r) => defineName(r.feature)).sort());
  const readers = sourceFiles(join(ROOT, "src")).filter((f) => /\bFEATURE_[A-Z]/.test(readFileSync(f, "utf8")));
  expect(readers.map((f) => f.slice(ROOT.length + 1))).toEqual(["src/modules/index.ts"]);
});

test("each module row loads a module that names its section and feature and declares every key with a doc", () => {
  const rows = FEATURES.filter((r) => r.section !== undefined);
  const sections = rows.map((r) => r.section!);
  expect(new Set(sections).size).toBe(sections.length);
  for (const s of sections) expect(s).toMatch(/^[a-z][a-z_]*$/);
  for (const r of rows) {
    const mod = moduleFor(r.section!)!;
    expect([mod.name, mod.feature, mod.apiVersion]).toEqual([r.section!, r.feature, HOOKS_API_VERSION]);
    const spec = moduleSpec(r.section!)!;
    expect(spec.fields.enabled).toMatchObject({ kind: "bool", default: true });
    for (const [key, f] of Object.entries(spec.fields)) {
      expect(`${r.section}.${key}: ${f.doc.length > 0}`).toBe(`${r.section}.${key}: true`);
      expect(f.required === true || f.default !== undefined || ["table", "tables", "map"].includes(f.kind)).toBe(true);
    }
  }
  // A module folder without a row would be dead code; a section cannot be both built and unbuilt.
  const folders = readdirSync(join(ROOT, "src/modules"), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  const index = readFileSync(join(ROOT, "src/modules/index.ts"), "utf8");
  const loaded = [...index.matchAll(/require\("\.\/([a-z-]+)\/index\.ts"\)/g)].map((m) => m[1]);
  expect(loaded).toHaveLength(rows.length);
  expect(folders.sort()).toEqual([...loaded].sort());
  for (const r of rows) expect(Object.hasOwn(UNBUILT_SECTIONS, r.section!)).toBe(false);
});
