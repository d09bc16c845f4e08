// pgbench side by side, interleaved rounds: direct PostgreSQL vs PgBouncer vs HeliosProxy (transaction pooling, pool 20); writes docs/benchmarks.md.
//
//   bun bench/pgbench-compare.ts [--quick] [--rounds N] [--duration SECS] [--scale N] [--db NAME]
//                                [--only ID,ID] [--targets direct,pgbouncer,helios] [--helios-bin PATH]
//                                [--reinit] [--no-doc] [--note TEXT]

import {
  PG,
  type MachineInfo,
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
  psql,
  roundsFlags,
  runPgbench,
  sectionTitle,
  settleRounds,
  startHelios,
  startPgbouncer,
  unsetRounds,
  updateDoc,
} from "./lib.ts";

// ---- options ------------------------------------------------------------------------------

interface Options extends RoundsOptions {
  scale: number;
  db: string;
  only: string[] | null;
  targets: Target[];
  heliosBin?: string;
  reinit: boolean;
}

type Target = "direct" | "pgbouncer" | "helios";
const TARGET_LABEL: Record<Target, string> = { direct: "direct", pgbouncer: "PgBouncer", helios: "HeliosProxy" };

function usage(exitCode = 0): never {
  console.log(`usage: bun bench/pgbench-compare.ts [options]
  --quick              3 s runs, 1 round (development; numbers are rough)
  --rounds N           interleaved rounds; the median of each cell is reported (default 3)
  --duration SECS      pgbench -T per run (default 10; also -T SECS)
  --scale N            pgbench scale factor of the bench database (default 10)
  --db NAME            bench database (default helios_bench; created and initialised if needed)
  --reinit             drop and re-initialise the bench database first
  --only ID[,ID...]    run only these workloads (ids: ${SCENARIOS.map((s) => s.id).join(", ")})
  --targets LIST       subset of direct,pgbouncer,helios (default all three)
  --helios-bin PATH    benchmark a compiled binary (e.g. dist/heliosproxy-all) instead of bun src/cli/main.ts
  --no-doc             print only; do not update docs/benchmarks.md
  --note TEXT          a note recorded with the results (e.g. "machine busy")`);
  process.exit(exitCode);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { ...unsetRounds(), scale: 10, db: "helios_bench", only: null, targets: ["direct", "pgbouncer", "helios"], reinit: false };
  const rounds = roundsFlags(o);
  parseFlags(argv, usage, {
    ...rounds,
    "-T": rounds["--duration"],
    "--scale": (v) => (o.scale = Number(v())),
    "--db": (v) => (o.db = v()),
    "--only": (v) => (o.only = v().split(",")),
    "--targets": (v) => (o.targets = v().split(",") as Target[]),
    "--helios-bin": (v) => (o.heliosBin = v()),
    "--reinit": () => (o.reinit = true),
  });
  settleRounds(o, 3, 10);
  for (const t of o.targets) if (!(t in TARGET_LABEL)) throw new Error(`unknown target ${t}`);
  return o;
}

// ---- workloads ----------------------------------------------------------------------------

interface Scenario {
  id: string;
  label: string;
  clients: number;
  args: string[];
}

function selectOnly(clients: number, mode: string): Scenario {
  return { id: `select-c${clients}-${mode}`, label: `-S -c ${clients} -M ${mode}`, clients, args: ["-S", "-M", mode] };
}

const SCENARIOS: Scenario[] = [
  ...[10, 50, 200].flatMap((c) => ["simple", "extended", "prepared"].map((m) => selectOnly(c, m))),
  { id: "connect-c10", label: "-S -C -c 10 (new connection per transaction)", clients: 10, args: ["-S", "-C"] },
  { id: "tpcb-c50", label: "tpcb-like -c 50", clients: 50, args: [] },
  { id: "latency-c1", label: "-S -c 1 (one client)", clients: 1, args: ["-S"] },
];

function pgbenchArgs(s: Scenario, duration: number): string[] {
  return ["-n", ...s.args, "-c", String(s.clients), "-j", String(Math.min(2, s.clients)), "-T", String(duration)];
}

// ---- measurement ----------------------------------------------------------------------------

interface Run extends PgbenchResult {
  round: number;
  skipped?: string;
  /** Proxy CPU (user+system) per processed transaction, microseconds. */
  cpuPerTx: number;
  rssKb: number;
}

type Results = Map<string, Map<Target, Run[]>>;

function record(results: Results, id: string, t: Target, r: Run): void {
  let byTarget = results.get(id);
  if (!byTarget) results.set(id, (byTarget = new Map()));
  let runs = byTarget.get(t);
  if (!runs) byTarget.set(t, (runs = []));
  runs.push(r);
}

function clientBackends(): number {
  return Number(psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"));
}

async function measure(s: Scenario, t: Target, o: Options, procs: Partial<Record<Target, Proc>>, maxConn: number, round: number): Promise<Run> {
  const proc = procs[t];
  if (t === "direct") {
    // The server has no pool in front of it: more clients than slots cannot even connect.
    const busy = clientBackends();
    if (busy + s.clients > maxConn) {
      return { ...emptyRun(round), skipped: `needs ${s.clients} server connections; ${busy} of max_connections ${maxConn} in use` };
    }
  }
  const port = proc ? proc.port : PG.port;
  const cpu0 = proc ? cpuMicros(proc.pid) : 0;
  const r = await runPgbench(pgbenchArgs(s, o.duration), port, o.db);
  const cpu1 = proc ? cpuMicros(proc.pid) : 0;
  return {
    ...r,
    round,
    cpuPerTx: proc && r.transactions > 0 ? (cpu1 - cpu0) / r.transactions : NaN,
    rssKb: proc ? memKb(proc.pid).rss : NaN,
  };
}

function emptyRun(round: number): Run {
  return { tps: NaN, transactions: 0, failed: 0, abortedClients: 0, latencyMs: NaN, exitCode: 0, firstError: "", round, cpuPerTx: NaN, rssKb: NaN };
}

// ---- report -------------------------------------------------------------------------------

interface Cell {
  runs: Run[];
  tps: number;
  latency: number;
  cpuPerTx: number;
  rssMb: number;
  failed: number;
  aborted: number;
  badExit: number;
  skipped: string;
  firstError: string;
}

function cell(results: Results, id: string, t: Target): Cell | null {
  const runs = results.get(id)?.get(t);
  if (!runs || runs.length === 0) return null;
  const done = runs.filter((r) => !r.skipped);
  return {
    runs,
    tps: median(done.map((r) => r.tps)),
    latency: median(done.map((r) => r.latencyMs)),
    cpuPerTx: median(done.map((r) => r.cpuPerTx)),
    rssMb: median(done.map((r) => r.rssKb / 1024)),
    failed: done.reduce((a, r) => a + r.failed, 0),
    aborted: done.reduce((a, r) => a + r.abortedClients, 0),
    badExit: done.filter((r) => r.exitCode !== 0).length,
    skipped: done.length === 0 ? runs[0]!.skipped ?? "" : "",
    firstError: done.find((r) => r.firstError)?.firstError ?? "",
  };
}

/** A cell whose runs all succeeded; TPS of a run with aborted clients means nothing. */
function clean(c: Cell | null): boolean {
  return c !== null && c.skipped === "" && c.aborted === 0 && c.badExit === 0 && Number.isFinite(c.tps);
}

function tpsText(c: Cell | null): string {
  if (c === null) return "—";
  if (c.skipped) return "n/a¹";
  if (!clean(c)) return `✗ ${c.aborted} clients aborted`;
  return fmt(c.tps);
}

function errorsText(c: Cell | null): string {
  if (c === null) return "—";
  if (c.skipped) return "—";
  const parts: string[] = [];
  if (c.failed) parts.push(`${c.failed} failed tx`);
  if (c.aborted) parts.push(`${c.aborted} clients aborted`);
  if (c.badExit && !c.aborted) parts.push(`exit≠0 ×${c.badExit}`);
  return parts.length ? parts.join(", ") : "0";
}

function ratio(a: Cell | null, b: Cell | null): number {
  return a !== null && b !== null && clean(a) && clean(b) ? a.tps / b.tps : NaN;
}

function ratioText(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}x` : "n/a";
}

interface Target_ {
  name: string;
  measured: string;
  met: boolean | null;
}

function evaluateTargets(results: Results): Target_[] {
  const out: Target_[] = [];
  const c = (id: string, t: Target) => cell(results, id, t);
  const verdict = (ok: boolean | null) => ok;

  for (const m of ["simple", "extended"]) {
    const h = c(`select-c50-${m}`, "helios");
    const p = c(`select-c50-${m}`, "pgbouncer");
    if (h && p) {
      const r = ratio(h, p);
      out.push({ name: `-S -c 50 -M ${m}: HeliosProxy >= 1.0x PgBouncer`, measured: ratioText(r), met: verdict(Number.isFinite(r) ? r >= 1.0 : false) });
    }
  }
  for (const n of [10, 50, 200]) {
    const h = c(`select-c${n}-prepared`, "helios");
    const p = c(`select-c${n}-simple`, "pgbouncer");
    if (h && p) {
      const zero = h.failed === 0 && h.aborted === 0 && h.badExit === 0;
      const r = ratio(h, p);
      out.push({
        name: `-S -c ${n} -M prepared: 0 errors and >= 1.0x PgBouncer's -M simple`,
        measured: `${errorsText(h)} errors; ${ratioText(r)}`,
        met: zero && Number.isFinite(r) && r >= 1.0,
      });
    }
  }
  {
    const h = c("connect-c10", "helios");
    const p = c("connect-c10", "pgbouncer");
    if (h && p) {
      const r = ratio(h, p);
      out.push({ name: "-C -c 10: HeliosProxy >= 1.0x PgBouncer", measured: ratioText(r), met: Number.isFinite(r) && r >= 1.0 });
    }
  }
  {
    const h = c("latency-c1", "helios");
    const p = c("latency-c1", "pgbouncer");
    const d = c("latency-c1", "direct");
    if (h && p && d && clean(h) && clean(p) && clean(d)) {
      const addH = h.latency - d.latency;
      const addP = p.latency - d.latency;
      const r = addH / addP;
      out.push({
        name: "one client: added latency <= 1.2x PgBouncer's",
        measured: `+${(addH * 1000).toFixed(0)} µs vs +${(addP * 1000).toFixed(0)} µs (${ratioText(r)})`,
        met: addP > 0 ? r <= 1.2 : addH <= addP,
      });
    }
  }
  return out;
}

function report(results: Results, o: Options, m: MachineInfo, heliosDesc: string, startedAt: number): string {
  const ids = SCENARIOS.filter((s) => results.has(s.id));
  const L: string[] = [];
  L.push(...sectionTitle("pgbench: direct vs PgBouncer vs HeliosProxy", "bench/pgbench-compare.ts", m));
  L.push(
    `- Setup: database \`${o.db}\` (pgbench scale ${o.scale}); ${o.rounds} interleaved round(s) of ${o.duration} s per run, target order rotated each round; ` +
      `every figure is the median over rounds; pgbench -j ${2} (-j 1 for one client), -n. ` +
      `PgBouncer: transaction mode, default_pool_size 20, trust auth. HeliosProxy (${heliosDesc}): transaction mode, max_connections 20, log_level warn, ` +
      `no users configured (passthrough auth). Wall time ${((Date.now() - startedAt) / 60000).toFixed(1)} min.`,
  );
  if (o.note) L.push(`- Note: ${o.note}`);
  if (o.quick) L.push("- **Quick run** (`--quick`): short runs, one round; indicative only.");
  L.push("");
  L.push("### Throughput (TPS)");
  L.push("");
  L.push("| workload | direct | PgBouncer | HeliosProxy | Helios/PgBouncer | Helios/direct | PgBouncer/direct | errors (direct / PgBouncer / Helios) |");
  L.push("|---|--:|--:|--:|--:|--:|--:|---|");
  let skippedNote = "";
  for (const s of ids) {
    const d = cell(results, s.id, "direct");
    const p = cell(results, s.id, "pgbouncer");
    const h = cell(results, s.id, "helios");
    if (d?.skipped) skippedNote = d.skipped;
    L.push(
      `| ${s.label} | ${tpsText(d)} | ${tpsText(p)} | ${tpsText(h)} | ${ratioText(ratio(h, p))} | ${ratioText(ratio(h, d))} | ${ratioText(ratio(p, d))} | ${errorsText(d)} / ${errorsText(p)} / ${errorsText(h)} |`,
    );
  }
  L.push("");
  if (skippedNote) L.push(`¹ Not run directly: ${skippedNote} (no pooler in front of the server).`);
  const errs = ids.flatMap((s) =>
    (["direct", "pgbouncer", "helios"] as Target[]).flatMap((t) => {
      const c = cell(results, s.id, t);
      return c && c.firstError && !clean(c) ? [`- ${TARGET_LABEL[t]}, ${s.label}: \`${c.firstError.replaceAll("`", "'")}\``] : [];
    }),
  );
  if (errs.length) {
    L.push("");
    L.push("First error reported by pgbench where runs failed:");
    L.push("");
    L.push(...errs);
  }
  L.push("");
  L.push("### Latency, one client (-S -c 1, average ms)");
  L.push("");
  {
    const d = cell(results, "latency-c1", "direct");
    const p = cell(results, "latency-c1", "pgbouncer");
    const h = cell(results, "latency-c1", "helios");
    const lat = (c: Cell | null) => (c && clean(c) ? c.latency.toFixed(3) : "n/a");
    const add = (c: Cell | null) => (c && clean(c) && d && clean(d) ? `+${((c.latency - d.latency) * 1000).toFixed(0)} µs` : "n/a");
    L.push("| | direct | PgBouncer | HeliosProxy |");
    L.push("|---|--:|--:|--:|");
    L.push(`| average latency (ms) | ${lat(d)} | ${lat(p)} | ${lat(h)} |`);
    L.push(`| added by the proxy | — | ${add(p)} | ${add(h)} |`);
  }
  L.push("");
  L.push("### Proxy CPU per transaction and memory");
  L.push("");
  L.push("CPU is user+system time of the proxy process (all threads, from /proc/PID/stat) over the run, divided by the transactions pgbench completed; RSS is VmRSS after the run.");
  L.push("");
  L.push("| workload | PgBouncer µs/tx | HeliosProxy µs/tx | Helios/PgBouncer | PgBouncer RSS (MB) | HeliosProxy RSS (MB) |");
  L.push("|---|--:|--:|--:|--:|--:|");
  for (const s of ids) {
    const p = cell(results, s.id, "pgbouncer");
    const h = cell(results, s.id, "helios");
    const cpu = (c: Cell | null) => (c && clean(c) ? fmt(c.cpuPerTx, 1) : "n/a");
    const r = p && h && clean(p) && clean(h) ? ratioText(h.cpuPerTx / p.cpuPerTx) : "n/a";
    const rss = (c: Cell | null) => (c && Number.isFinite(c.rssMb) ? fmt(c.rssMb, 1) : "n/a");
    L.push(`| ${s.label} | ${cpu(p)} | ${cpu(h)} | ${r} | ${rss(p)} | ${rss(h)} |`);
  }
  L.push("");
  L.push("### Targets (foundation issue)");
  L.push("");
  L.push("| target | measured | met |");
  L.push("|---|---|---|");
  for (const t of evaluateTargets(results)) L.push(`| ${t.name} | ${t.measured} | ${t.met === null ? "?" : t.met ? "yes" : "**no**"} |`);
  L.push("");
  L.push("<details><summary>Every run (TPS; CPU µs/tx for proxies)</summary>");
  L.push("");
  L.push("| workload | target | round | TPS | latency ms | failed | aborted clients | exit | µs/tx | RSS MB |");
  L.push("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
  for (const s of ids) {
    for (const t of ["direct", "pgbouncer", "helios"] as Target[]) {
      for (const r of results.get(s.id)?.get(t) ?? []) {
        if (r.skipped) {
          L.push(`| ${s.id} | ${t} | ${r.round} | skipped | | | | | | |`);
          continue;
        }
        L.push(
          `| ${s.id} | ${t} | ${r.round} | ${fmt(r.tps)} | ${fmt(r.latencyMs, 3)} | ${r.failed} | ${r.abortedClients} | ${r.exitCode} | ${fmt(r.cpuPerTx, 1)} | ${fmt(r.rssKb / 1024, 1)} |`,
        );
      }
    }
  }
  L.push("");
  L.push("</details>");
  return L.join("\n");
}

// ---- main ---------------------------------------------------------------------------------

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const scenarios = SCENARIOS.filter((s) => o.only === null || o.only.includes(s.id));
  if (scenarios.length === 0) throw new Error(`--only matched nothing (ids: ${SCENARIOS.map((s) => s.id).join(", ")})`);
  const startedAt = Date.now();
  const m = machineInfo();
  ensurePgbenchDatabase(o.db, o.scale, o.reinit);

  const procs: Partial<Record<Target, Proc>> = {};
  const stopAll = async () => {
    await Promise.all(Object.values(procs).map((p) => p?.stop()));
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      void stopAll().finally(() => process.exit(130));
    });
  }

  try {
    if (o.targets.includes("pgbouncer")) procs.pgbouncer = await startPgbouncer({ poolSize: 20, maxClientConn: 20000 });
    if (o.targets.includes("helios")) procs.helios = await startHelios({ mode: "transaction", maxConnections: 20, bin: o.heliosBin });
    const heliosDesc = o.heliosBin ? `binary ${o.heliosBin}` : "bun src/cli/main.ts";

    const runs = scenarios.length * o.targets.length * o.rounds;
    console.log(
      `${scenarios.length} workloads x ${o.targets.length} targets x ${o.rounds} rounds of ${o.duration} s ` +
        `(about ${Math.ceil((runs * (o.duration + 1)) / 60)} min); load average ${m.loadavg}`,
    );

    // Warm-up (not recorded): open the pools, let the JIT settle.
    for (const t of o.targets) {
      const port = procs[t]?.port ?? PG.port;
      await runPgbench(["-n", "-S", "-c", "20", "-j", "2", "-T", "2"], port, o.db);
      await runPgbench(["-n", "-S", "-M", "extended", "-c", "20", "-j", "2", "-T", "1"], port, o.db);
    }

    const results: Results = new Map();
    for (let round = 1; round <= o.rounds; round++) {
      for (let i = 0; i < scenarios.length; i++) {
        const s = scenarios[i]!;
        const k = (round - 1 + i) % o.targets.length;
        const order = [...o.targets.slice(k), ...o.targets.slice(0, k)];
        for (const t of order) {
          const r = await measure(s, t, o, procs, m.pgMaxConnections, round);
          record(results, s.id, t, r);
          const what = r.skipped
            ? `skipped (${r.skipped})`
            : `${fmt(r.tps)} tps, ${fmt(r.latencyMs, 3)} ms` +
              (Number.isFinite(r.cpuPerTx) ? `, ${fmt(r.cpuPerTx, 1)} µs/tx, ${fmt(r.rssKb / 1024, 1)} MB` : "") +
              (r.failed || r.abortedClients || r.exitCode ? `, ${r.failed} failed, ${r.abortedClients} aborted, exit ${r.exitCode}` : "");
          console.log(`[round ${round}/${o.rounds}] ${s.id.padEnd(20)} ${t.padEnd(9)} ${what}`);
        }
      }
    }
    for (const [t, p] of Object.entries(procs)) {
      if (p && p.proc.exitCode !== null) console.log(`warning: ${t} exited during the run:\n${p.output().slice(-2000)}`);
    }

    const md = report(results, o, m, heliosDesc, startedAt);
    console.log("\n" + md);
    if (o.doc) {
      updateDoc("pgbench-compare", md);
      console.log("\nwritten to docs/benchmarks.md");
    }
  } finally {
    await stopAll();
  }
}

await main();
