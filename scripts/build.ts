// Builds one standalone heliosproxy executable per feature profile: `bun scripts/build.ts [--outdir DIR] [profile...]`.

import { mkdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { FEATURE_NAMES, FEATURES } from "../src/modules/index.ts";

const ROOT = resolve(import.meta.dir, "..");
export const ENTRY = join(ROOT, "src/cli/main.ts");

/** Profile name -> features compiled in, from the rows of src/modules/index.ts. */
export const PROFILES: Readonly<Record<string, readonly string[]>> = {
  default: FEATURES.filter((r) => r.profiles.includes("default")).map((r) => r.feature),
  ha: FEATURES.filter((r) => r.profiles.includes("ha")).map((r) => r.feature),
  all: FEATURE_NAMES,
};

/** "lag-routing" -> "FEATURE_LAG_ROUTING" */
export function defineName(feature: string): string {
  return `FEATURE_${feature.toUpperCase().replaceAll("-", "_")}`;
}

/** Every FEATURE_* constant plus BUILD_PROFILE, as bundler defines (values are JS source). */
export function definesFor(profile: string): Record<string, string> {
  const on = PROFILES[profile];
  if (on === undefined) throw new Error(`unknown profile "${profile}" (known: ${Object.keys(PROFILES).join(", ")})`);
  const defines: Record<string, string> = { BUILD_PROFILE: JSON.stringify(profile) };
  for (const f of FEATURE_NAMES) defines[defineName(f)] = on.includes(f) ? "true" : "false";
  return defines;
}

export interface BuiltBinary {
  profile: string;
  path: string;
  bytes: number;
  ms: number;
}

/** Compiles `dist/heliosproxy-<profile>` (or into `outdir`). */
export async function buildBinary(profile: string, outdir = join(ROOT, "dist")): Promise<BuiltBinary> {
  const define = definesFor(profile);
  mkdirSync(outdir, { recursive: true });
  const path = join(outdir, `heliosproxy-${profile}`);
  const started = performance.now();
  const result = await Bun.build({
    entrypoints: [ENTRY],
    target: "bun",
    minify: true,
    define,
    // The demo's embedded PostgreSQL (PGlite, ~10 MB of WebAssembly) ships with the npm package only.
    external: ["@electric-sql/pglite", "@electric-sql/pglite-socket"],
    // The binary must behave the same whatever directory it starts in.
    compile: { outfile: path, autoloadBunfig: false, autoloadDotenv: false },
  });
  if (!result.success) {
    throw new Error(`build of profile ${profile} failed:\n${result.logs.map((l) => String(l)).join("\n")}`);
  }
  return { profile, path, bytes: statSync(path).size, ms: Math.round(performance.now() - started) };
}

function parseArgv(argv: string[]): { outdir?: string; profiles: string[] } {
  let outdir: string | undefined;
  const profiles: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--outdir") outdir = argv[++i];
    else if (a.startsWith("--outdir=")) outdir = a.slice("--outdir=".length);
    else profiles.push(a);
  }
  return { outdir, profiles: profiles.length > 0 ? profiles : Object.keys(PROFILES) };
}

if (import.meta.main) {
  const { outdir, profiles } = parseArgv(process.argv.slice(2));
  for (const p of profiles) definesFor(p); // fail early on an unknown profile
  try {
    for (const p of profiles) {
      const b = await buildBinary(p, outdir && resolve(outdir));
      const mb = (b.bytes / 1024 / 1024).toFixed(1);
      console.log(`${b.profile.padEnd(8)} ${b.path}  ${mb} MiB  ${b.ms} ms`);
    }
  } catch (e) {
    console.error((e as Error).message);
    process.exit(1);
  }
}
