// Cost of feature modules on the request path: pgbench -S through HeliosProxy with no modules vs [query_analytics] + [routing_hints], same run, interleaved; writes docs/benchmarks.md.
//
//   bun bench/modules-overhead.ts [--quick] [--rounds N] [--duration SECS] [--scale N] [--db NAME]
//                                 [--variants none,modules[,analytics,hints]] [--only ID,...] [--no-lexer] [--no-doc] [--note TEXT]

import { join } from "node:path";
import {
  ROOT,
  type PgbenchResult,
  type Proc,
  type RoundsOptions,
  cpuMicros,
  ensurePgbenchDatabase,
  fmt,
  machineInfo,
  median,
  memKb,
  parseFlags,
  roundsFlags,
  runPgbench,
  sectionHead,
  settleRounds,
  sh,
  startHelios,
  unsetRounds,
  updateDoc,
} from "./lib.ts";

// ---- options ------------------------------------------------------------------------------

interface Options extends RoundsOptions {
  scale: number;
  db: string;
  lexer: boolean;
  variants: Variant["id"][];
  only: string[] | null;
}

function usage(exitCode = 0): never {
  console.log(`usage: bun bench/modules-overhead.ts [options]
  --quick            2 s runs, 1 round (development; numbers are rough)
  --rounds N         interleaved rounds; the median of each cell is reported (default 3)
  --duration SECS    pgbench -T per run (default 5; also -T SECS)
  --scale N          pgbench scale of the bench database (default 10)
  --db NAME          bench database (default helios_modules_bench; created and initialised if needed)
  --variants LIST    proxies to compare (default none,modules; also analytics, hints: one module each)
  --only ID[,ID...]  run only these workloads (c10-simple, c10-prepared, c50-simple, c50-prepared)
  --no-lexer         skip the bench/lexer.ts cost table
  --no-doc           print only; do not update docs/benchmarks.md
  --note TEXT        a note recorded with the results`);
  process.exit(exitCode);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { ...unsetRounds(), scale: 10, db: "helios_modules_bench", lexer: true, variants: ["none", "modules"], only: null };
  const rounds = roundsFlags(o);
  parseFlags(argv, usage, {
    ...rounds,
    "-T": rounds["--duration"],
    "--scale": (v) => (o.scale = Number(v())),
    "--db": (v) => (o.db = v()),
    "--no-lexer": () => (o.lexer = false),
    "--variants": (v) => (o.variants = v().split(",") as Variant["id"][]),
    "--only": (v) => (o.only = v().split(",")),
  });
  settleRounds(o, 2, 5);
  for (const v of o.variants) if (!ALL_VARIANTS.some((x) => x.id === v)) throw new Error(`unknown variant ${v} (none, modules, analytics, hints)`);
  if (!o.variants.includes("none") || !o.variants.includes("modules")) throw new Error("--variants must include none and modules");
  return o;
}

// ---- what is compared -----------------------------------------------------------------------

interface Variant {
  id: "none" | "modules" | "analytics" | "hints";
  label: string;
  toml: string;
}

// Module defaults: slow log at 1000 ms, N+1 detection on (pgbench -S trips it once per connection).
const ANALYTICS = "[query_analytics]\nenabled = true\n";
const HINTS = "[routing_hints]\nenabled = true\n";
const ALL_VARIANTS: Variant[] = [
  { id: "none", label: "no modules", toml: "" },
  { id: "modules", label: "query_analytics + routing_hints", toml: ANALYTICS + HINTS },
  { id: "analytics", label: "query_analytics only", toml: ANALYTICS },
  { id: "hints", label: "routing_hints only", toml: HINTS },
];

interface Scenario {
  id: string;
  label: string;
  clients: number;
  mode: "simple" | "prepared";
}

const ALL_SCENARIOS: Scenario[] = [10, 50].flatMap((c) =>
  (["simple", "prepared"] as const).map((mode) => ({ id: `c${c}-${mode}`, label: `-S -c ${c} -M ${mode}`, clients: c, mode })),
);

const pgbenchArgs = (s: Scenario, secs: number) => ["-n", "-S", "-M", s.mode, "-c", String(s.clients), "-j", "2", "-T", String(secs)];

// ---- the proxies ----------------------------------------------------------------------------

interface Proxy extends Proc {
  variant: Variant;
  adminPort: number;
}

/** HeliosProxy as bench/lib.ts starts it (transaction mode, pool 20, log_level warn), plus the variant's module sections. */
async function startProxy(v: Variant): Promise<Proxy> {
  return Object.assign(await startHelios({ mode: "transaction", maxConnections: 20, toml: v.toml }), { variant: v });
}

// ---- measurement ----------------------------------------------------------------------------

interface Run extends PgbenchResult {
  round: number;
  cpuPerTx: number;
}

async function measure(s: Scenario, p: Proxy, o: Options, round: number): Promise<Run> {
  const cpu0 = cpuMicros(p.pid);
  const r = await runPgbench(pgbenchArgs(s, o.duration), p.port, o.db);
  const cpu1 = cpuMicros(p.pid);
  return { ...r, round, cpuPerTx: r.transactions > 0 ? (cpu1 - cpu0) / r.transactions : NaN };
}

/** What the analytics module recorded for pgbench's statement (a check that it did its work). */
async function analyticsOf(p: Proxy): Promise<{ query: string; calls: number; p50: number; p99: number; nPlusOne: number } | null> {
  const res = await fetch(`http://127.0.0.1:${p.adminPort}/queries?order=calls&limit=1`);
  const top = ((await res.json()) as { queries: { query: string; calls: number; p50_ms: number; p99_ms: number }[] }).queries[0];
  const n1 = (await (await fetch(`http://127.0.0.1:${p.adminPort}/queries/n-plus-one`)).json()) as { detected: number };
  return top ? { query: top.query, calls: top.calls, p50: top.p50_ms, p99: top.p99_ms, nPlusOne: n1.detected } : null;
}

/** bench/lexer.ts's table (ns per query of the lexer, normalise + fingerprint, the shape cache). */
function lexerTable(o: Options): string {
  const r = sh([process.execPath, join(ROOT, "bench", "lexer.ts"), ...(o.quick ? ["--quick"] : [])]);
  if (r.code !== 0) return `bench/lexer.ts failed: ${r.err.trim().slice(0, 300)}`;
  return r.out.trim();
}

// ---- main -----------------------------------------------------------------------------------

const o = parseArgs(process.argv.slice(2));
const VARIANTS = ALL_VARIANTS.filter((v) => o.variants.includes(v.id));
const SCENARIOS = ALL_SCENARIOS.filter((s) => o.only === null || o.only.includes(s.id));
if (SCENARIOS.length === 0) throw new Error(`--only matches no workload (${ALL_SCENARIOS.map((s) => s.id).join(", ")})`);
const startedAt = Date.now();
ensurePgbenchDatabase(o.db, o.scale);
const machine = machineInfo();
console.log(`modules overhead: ${o.rounds} round(s) of ${o.duration} s per cell; ${SCENARIOS.length} workloads x ${VARIANTS.length} proxies`);

const proxies = await Promise.all(VARIANTS.map(startProxy));
const results = new Map<string, Map<Variant["id"], Run[]>>();
/** Transactions pgbench completed through the modules proxy (warm-up included). */
let modulesTx = 0;
let analytics: Awaited<ReturnType<typeof analyticsOf>> = null;
let rss: Record<string, number> = {};
try {
  // Warm-up: JIT, pools and the shape cache, both protocols, on each proxy.
  for (const p of proxies) {
    for (const mode of ["simple", "prepared"] as const) {
      const r = await runPgbench(pgbenchArgs({ id: "", label: "", clients: 50, mode }, o.quick ? 1 : 2), p.port, o.db);
      if (p.variant.id === "modules") modulesTx += r.transactions;
    }
  }
  let turn = 0;
  for (let round = 1; round <= o.rounds; round++) {
    for (const s of SCENARIOS) {
      // Rotate which proxy goes first, so none always follows another's load.
      const k = turn++ % proxies.length;
      const order = [...proxies.slice(k), ...proxies.slice(0, k)];
      for (const p of order) {
        const r = await measure(s, p, o, round);
        if (p.variant.id === "modules") modulesTx += r.transactions;
        let byVariant = results.get(s.id);
        if (!byVariant) results.set(s.id, (byVariant = new Map()));
        (byVariant.get(p.variant.id) ?? byVariant.set(p.variant.id, []).get(p.variant.id)!).push(r);
        const bad = r.abortedClients > 0 || r.exitCode !== 0 ? ` ✗ ${r.firstError}` : "";
        console.log(`round ${round} ${s.label.padEnd(22)} ${p.variant.label.padEnd(32)} ${fmt(r.tps).padStart(8)} tps  ${r.cpuPerTx.toFixed(1).padStart(6)} µs CPU/tx${bad}`);
      }
    }
  }
} finally {
  analytics = await analyticsOf(proxies.find((p) => p.variant.id === "modules")!).catch(() => null);
  rss = Object.fromEntries(proxies.map((p) => [p.variant.id, memKb(p.pid).rss / 1024]));
  await Promise.all(proxies.map((p) => p.stop()));
}

const lexer = o.lexer ? lexerTable(o) : "";

// ---- report ---------------------------------------------------------------------------------

const cellOf = (id: string, v: Variant["id"]) => results.get(id)?.get(v) ?? [];
const clean = (runs: Run[]) => runs.length > 0 && runs.every((r) => r.abortedClients === 0 && r.exitCode === 0 && r.failed === 0);
const tpsOf = (runs: Run[]) => median(runs.map((r) => r.tps));
/** Median of v's TPS over the no-modules TPS, or NaN when a run failed. */
const ratioOf = (id: string, v: Variant["id"]) => (clean(cellOf(id, v)) && clean(cellOf(id, "none")) ? tpsOf(cellOf(id, v)) / tpsOf(cellOf(id, "none")) : NaN);
const others = VARIANTS.filter((v) => v.id !== "none" && v.id !== "modules");
const L: string[] = [];
L.push(...sectionHead("Feature modules on the request path: no modules vs query analytics + routing hints", "bench/modules-overhead.ts", machine, startedAt, o.note));
L.push("");
L.push(
  `${VARIANTS.length} HeliosProxy processes (\`bun src/cli/main.ts\`, transaction mode, pool 20, \`log_level = "warn"\`) run side by side against the same PostgreSQL: one with no module sections, one with \`[query_analytics]\` and \`[routing_hints]\` at their defaults (slow log at 1000 ms, N+1 detection on)${others.length ? `, and ${others.map((v) => v.label).join(", ")}` : ""}. Each workload runs ${o.duration} s against each proxy in turn (the order rotates), for ${o.rounds} round(s); cells are medians. The ratio is modules ÷ no modules (1.00 = no cost); CPU is the proxy process' user+system time per transaction.`,
);
L.push("");
L.push(`| workload (\`pgbench -n -j 2\`) | no modules, tps | analytics + hints, tps | ratio | per-round ratios | CPU µs/tx, no modules | CPU µs/tx, modules |${others.map((v) => ` ${v.label}: ratio, CPU µs/tx |`).join("")}`);
L.push(`|---|---:|---:|---:|---|---:|---:|${others.map(() => "---:|").join("")}`);
const ratios: number[] = [];
for (const s of SCENARIOS) {
  const a = cellOf(s.id, "none");
  const b = cellOf(s.id, "modules");
  const ratio = ratioOf(s.id, "modules");
  if (Number.isFinite(ratio)) ratios.push(ratio);
  const perRound = a.map((r, i) => (b[i] ? (b[i]!.tps / r.tps).toFixed(2) : "?")).join(", ");
  const cpu = (runs: Run[]) => median(runs.map((r) => r.cpuPerTx)).toFixed(1);
  const extra = others.map((v) => ` ${Number.isFinite(ratioOf(s.id, v.id)) ? ratioOf(s.id, v.id).toFixed(2) : "✗"}, ${cpu(cellOf(s.id, v.id))} |`).join("");
  L.push(`| ${s.label} | ${fmt(tpsOf(a))} | ${fmt(tpsOf(b))} | ${Number.isFinite(ratio) ? ratio.toFixed(2) : "✗ errors"} | ${perRound} | ${cpu(a)} | ${cpu(b)} |${extra}`);
}
L.push("");
const worst = ratios.length ? Math.min(...ratios) : NaN;
L.push(`Target (issue 6): overhead <= 10%, i.e. every ratio >= 0.90 — **${Number.isFinite(worst) && worst >= 0.9 && ratios.length === SCENARIOS.length ? "met" : "not met"}** (lowest ${Number.isFinite(worst) ? worst.toFixed(2) : "n/a"}).`);
L.push("");
if (analytics) {
  L.push(
    `The analytics proxy recorded \`${analytics.query}\` ${fmt(analytics.calls)} times; pgbench reported ${fmt(modulesTx)} transactions through it (warm-up included). p50 ${analytics.p50} ms, p99 ${analytics.p99} ms; ${analytics.nPlusOne} N+1 episodes (one per pgbench connection: -S repeats one statement). Proxy RSS at the end: ${VARIANTS.map((v) => `${fmt(rss[v.id]!)} MiB ${v.label}`).join(", ")} (routing_hints loads the libpg-query parser).`,
  );
  L.push("");
}
if (lexer) {
  L.push("Per-query cost of the sql/ layer the modules use (`bun bench/lexer.ts`, same run):");
  L.push("");
  L.push("```");
  L.push(lexer);
  L.push("```");
}
const md = L.join("\n");
console.log("\n" + md);
if (o.doc) {
  updateDoc("modules-overhead", md);
  console.log("\ndocs/benchmarks.md updated (section modules-overhead)");
}
