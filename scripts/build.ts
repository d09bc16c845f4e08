// Builds one standalone heliosproxy executable per feature profile, each shipped as a .tar.gz with its sha256:
// `bun scripts/build.ts [--outdir DIR] [--no-archive] [--bytecode] [profile...]`.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
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

export interface BuildOptions {
  /** Precompile to JavaScriptCore bytecode (faster start, larger file). */
  bytecode?: boolean;
}

/** Compiles `dist/heliosproxy-<profile>` (or into `outdir`). */
export async function buildBinary(profile: string, outdir = join(ROOT, "dist"), opts: BuildOptions = {}): Promise<BuiltBinary> {
  const define = definesFor(profile);
  mkdirSync(outdir, { recursive: true });
  const path = join(outdir, `heliosproxy-${profile}`);
  const started = performance.now();
  const result = await Bun.build({
    entrypoints: [ENTRY],
    target: "bun",
    minify: true,
    ...(opts.bytecode ? { bytecode: true, format: "esm" as const } : {}),
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

export interface Archive {
  path: string;
  bytes: number;
  sha256: string;
  /** `<sha256>  <file name>`, as sha256sum writes and checks it. */
  checksumPath: string;
}

const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

/**
 * Packs a built binary as `heliosproxy-<version>-<profile>-<os>-<arch>.tar.gz` (the binary, named
 * `heliosproxy`, and the LICENSE; owner, group and times zeroed so the same binary packs the same)
 * next to it, with a `.sha256` file.
 */
export async function archiveBinary(b: BuiltBinary): Promise<Archive> {
  const dir = dirname(b.path);
  const stage = join(dir, `.stage-${b.profile}`);
  mkdirSync(stage, { recursive: true });
  writeFileSync(join(stage, "heliosproxy"), readFileSync(b.path), { mode: 0o755 });
  writeFileSync(join(stage, "LICENSE"), readFileSync(join(ROOT, "LICENSE")));
  const tar = Bun.spawnSync(
    ["tar", "-cf", "-", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-C", stage, "heliosproxy", "LICENSE"],
    { stdout: "pipe", stderr: "pipe" },
  );
  Bun.spawnSync(["rm", "-rf", stage]);
  if (tar.exitCode !== 0) throw new Error(`tar failed: ${tar.stderr.toString()}`);
  const gz = Bun.gzipSync(new Uint8Array(tar.stdout), { level: 9 });
  const path = join(dir, `heliosproxy-${VERSION}-${b.profile}-${process.platform}-${process.arch}.tar.gz`);
  writeFileSync(path, gz);
  const sha256 = createHash("sha256").update(gz).digest("hex");
  const checksumPath = `${path}.sha256`;
  writeFileSync(checksumPath, `${sha256}  ${basename(path)}\n`);
  return { path, bytes: gz.byteLength, sha256, checksumPath };
}

function parseArgv(argv: string[]): { outdir?: string; archive: boolean; bytecode: boolean; profiles: string[] } {
  let outdir: string | undefined;
  let archive = true;
  let bytecode = false;
  const profiles: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--outdir") outdir = argv[++i];
    else if (a.startsWith("--outdir=")) outdir = a.slice("--outdir=".length);
    else if (a === "--no-archive") archive = false;
    else if (a === "--bytecode") bytecode = true;
    else profiles.push(a);
  }
  return { outdir, archive, bytecode, profiles: profiles.length > 0 ? profiles : Object.keys(PROFILES) };
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

if (import.meta.main) {
  const { outdir, archive, bytecode, profiles } = parseArgv(process.argv.slice(2));
  for (const p of profiles) definesFor(p); // fail early on an unknown profile
  try {
    for (const p of profiles) {
      const b = await buildBinary(p, outdir && resolve(outdir), { bytecode });
      console.log(`${b.profile.padEnd(8)} ${b.path}  ${mib(b.bytes)}  ${b.ms} ms`);
      if (!archive) continue;
      const a = await archiveBinary(b);
      console.log(`${"".padEnd(8)} ${a.path}  ${mib(a.bytes)}  sha256 ${a.sha256}`);
    }
  } catch (e) {
    console.error((e as Error).message);
    process.exit(1);
  }
}
