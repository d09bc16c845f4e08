// Compiled binaries per profile: disabled modules are absent, and the binaries report and enforce their features.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBinary, PROFILES, type BuiltBinary } from "../scripts/build.ts";
import { FEATURE_NAMES } from "../src/modules/index.ts";

/** A message only the schema-routing module has (it is in the "all" profile alone). */
const SCHEMA_ROUTING_CODE = "is a built-in group (primary, standby, any); choose another name";
/** A message only the transaction-replay module has (profiles "ha" and "all"). */
const REPLAY_CODE = "expected a function name of letters, digits and _";
/**
 * Strings of each part of ha-tr: the files under src/cluster/ha/ and the module's session tap and
 * recovery. A binary built without ha-tr has none of them (the request path carries no journal code).
 */
const HA_TR_CODE = [
  "whose value differs on a second run", // cluster/ha/journal.ts
  "several requests in flight may have committed", // cluster/ha/recovery-plan.ts
  "the rows before its position differ on the new server", // cluster/ha/restore.ts
  "the session holds temporary tables", // cluster/ha/session-migration.ts
  "rolled_back", // cluster/ha/replay-registry.ts
  "pg_current_xact_id_if_assigned", // the session tap's transaction-id reads
  "the session could not be recovered", // the session recovery
];
/** A message only the query-cache module has (the "all" profile alone). */
const QUERY_CACHE_CODE = "its Parse was answered from the query cache";
const VERSION = (require("../package.json") as { version: string }).version;

const out = mkdtempSync(join(tmpdir(), "helios-build-"));
const built: Record<string, BuiltBinary> = {};
const bytes: Record<string, Buffer> = {};

beforeAll(async () => {
  for (const profile of ["default", "ha", "all"]) {
    built[profile] = await buildBinary(profile, out);
    bytes[profile] = readFileSync(built[profile]!.path);
    console.log(`built ${profile}: ${(built[profile]!.bytes / 1048576).toFixed(1)} MiB in ${built[profile]!.ms} ms`);
  }
}, 120_000);

afterAll(() => rmSync(out, { recursive: true, force: true }));

function exec(profile: string, args: string[], cwd = out) {
  const p = Bun.spawnSync([built[profile]!.path, ...args], { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

function config(name: string, text: string): string {
  const path = join(out, name);
  writeFileSync(path, text);
  return path;
}

const NODE = '[[nodes]]\nhost = "127.0.0.1"\n';

describe("build", () => {
  test("profiles", () => {
    expect(PROFILES.default).toEqual(["pool-modes", "routing-hints", "query-analytics", "observability", "postgres-topology"]);
    expect(PROFILES.ha).toEqual(["pool-modes", "ha-tr", "routing-hints", "lag-routing", "query-analytics", "observability", "postgres-topology", "heliosdb-topology"]);
    expect(PROFILES.all).toEqual(FEATURE_NAMES);
  });

  test("a disabled module is absent from the binary", () => {
    for (const p of ["default", "ha"]) expect(bytes[p]!.includes(SCHEMA_ROUTING_CODE)).toBe(false);
    expect(bytes.all!.includes(SCHEMA_ROUTING_CODE)).toBe(true);
    expect(bytes.default!.includes(REPLAY_CODE)).toBe(false);
    for (const p of ["default", "ha"]) expect(bytes[p]!.includes(QUERY_CACHE_CODE)).toBe(false);
    expect(bytes.all!.includes(QUERY_CACHE_CODE)).toBe(true);
    for (const p of ["ha", "all"]) expect(bytes[p]!.includes(REPLAY_CODE)).toBe(true);
  });

  test("built without ha-tr, no part of cluster/ha is in the binary", () => {
    for (const code of HA_TR_CODE) {
      expect({ code, present: bytes.default!.includes(code) }).toEqual({ code, present: false });
      for (const p of ["ha", "all"]) expect({ code, present: bytes[p]!.includes(code) }).toEqual({ code, present: true });
    }
  });

  test("features", () => {
    const d = exec("default", ["features"]);
    expect(d.code).toBe(0);
    const lines = d.out.trim().split("\n");
    expect(lines[0]).toBe("profile: default");
    const on = lines.slice(1).filter((l) => l.endsWith(" on")).map((l) => l.split(" ")[0]);
    expect(on.sort()).toEqual([...PROFILES.default!].sort());
    expect(exec("ha", ["features"]).out).toContain(`${"ha-tr".padEnd(20)}on`);
    expect(exec("all", ["features"]).out).not.toContain("off");
  });

  test("version", () => {
    for (const p of ["default", "all"]) {
      const r = exec(p, ["version"]);
      expect(r.code).toBe(0);
      expect(r.out).toBe(`heliosproxy ${VERSION} (profile: ${p}, bun ${Bun.version})\n`);
    }
  });

  test("a config for a module missing from the build fails at load; one not implemented fails everywhere", () => {
    const path = config("sr.toml", `${NODE}\n[schema_routing]\ncache_size = 50\n`);
    const d = exec("default", ["check-config", "--config", path]);
    expect(d.code).toBe(1);
    expect(d.err).toBe(`${path}:4: [schema_routing]: schema-routing is not in this build (profile: default)\n`);
    const all = exec("all", ["check-config", "--config", path]);
    expect(all.code).toBe(0);
    expect(all.out).toContain("modules: schema_routing");
    const off = config("sr-off.toml", `${NODE}[schema_routing]\nenabled = false\n`);
    expect(exec("default", ["check-config", "--config", off]).code).toBe(0);
    const gql = config("gql.toml", `${NODE}[graphql_gateway]\nmax_depth = 5\n`);
    for (const p of ["default", "all"])
      expect(exec(p, ["check-config", "--config", gql]).err).toBe(`${gql}:3: [graphql_gateway]: graphql-gateway is not implemented in this version (\`heliosproxy features\` lists what is)\n`);
    const heliosdb = config("topo.toml", `${NODE}[topology]\nprovider = "heliosdb"\n`);
    expect(exec("default", ["check-config", "--config", heliosdb]).err).toContain(
      ":4: topology.provider: heliosdb-topology is not in this build (profile: default)",
    );
    expect(exec("ha", ["check-config", "--config", heliosdb]).code).toBe(0);
  });

  test("a bunfig.toml in the working directory does not change the binary", () => {
    const cwd = join(out, "hostile");
    mkdirSync(cwd, { recursive: true });
    writeFileSync(join(cwd, "bunfig.toml"), 'preload = ["./evil.ts"]\n[define]\nBUILD_PROFILE = "\\"evil\\""\n');
    writeFileSync(join(cwd, "evil.ts"), 'console.log("EVIL");\n');
    const r = exec("default", ["version"], cwd);
    expect(r.out).toBe(`heliosproxy ${VERSION} (profile: default, bun ${Bun.version})\n`);
  });
});
