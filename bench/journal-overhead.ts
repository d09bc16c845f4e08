// Cost of the transaction journal: pgbench tpcb-like through HeliosProxy with [transaction_replay] off vs on, beside direct PostgreSQL, same run, interleaved; prints a markdown section.
//
//   bun bench/journal-overhead.ts [--quick] [--rounds N] [--duration SECS] [--clients N] [--scale N] [--db NAME] [--note TEXT]

import {
  PG,
  type PgbenchResult,
  cpuMicros,
  ensurePgbenchDatabase,
  fmt,
  machineInfo,
  median,
  parseFlags,
  runPgbench,
  sectionHead,
  startHelios,
} from "./lib.ts";

interface Options {
  quick: boolean;
  rounds: number;
  duration: number;
  clients: number;
  scale: number;
  db: string;
  note: string;
}

function usage(exitCode = 0): never {
  console.log(`bun bench/journal-overhead.ts [options]
  --quick            5 s runs, 1 round: a rough check
  --rounds N         interleaved rounds; each cell is the median over rounds (default 3)
  --duration SECS    pgbench -T per run (default 20)
  --clients N        pgbench -c (default 16)
  --scale N          pgbench scale of the bench database (default 10)
  --db NAME          bench database (default helios_bench_journal; created and initialised if needed)
  --note TEXT        a note recorded with the results`);
  process.exit(exitCode);
}

function parseArgs(argv: string[]): Options {
  const quick = argv.includes("--quick");
  const o: Options = { quick, rounds: quick ? 1 : 3, duration: quick ? 5 : 20, clients: 16, scale: 10, db: "helios_bench_journal", note: "" };
  const count = (flag: string, v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected a whole number >= 1, got ${JSON.stringify(v)}`);
    return n;
  };
  parseFlags(argv, usage, {
    "--quick": () => {},
    "--rounds": (v) => (o.rounds = count("--rounds", v())),
    "--duration": (v) => (o.duration = count("--duration", v())),
    "--clients": (v) => (o.clients = count("--clients", v())),
    "--scale": (v) => (o.scale = count("--scale", v())),
    "--db": (v) => (o.db = v()),
    "--note": (v) => (o.note = v()),
  });
  return o;
}

// ---- what is compared -----------------------------------------------------------------------

type TargetId = "direct" | "off" | "on";
const TARGETS: { id: TargetId; label: string }[] = [
  { id: "direct", label: "direct" },
  { id: "off", label: "journal off" },
  { id: "on", label: "journal on" },
];
const MODES = ["prepared", "simple"] as const;
type Mode = (typeof MODES)[number];

const pgbenchArgs = (mode: Mode, clients: number, secs: number) => ["-n", "-M", mode, "-c", String(clients), "-j", "2", "-T", String(secs)];

interface Run extends PgbenchResult {
  round: number;
  /** Proxy user+system CPU per transaction (µs); NaN for direct. */
  cpuPerTx: number;
}

const clean = (r: Run) => r.exitCode === 0 && r.abortedClients === 0 && r.failed === 0;

// ---- main -----------------------------------------------------------------------------------

const o = parseArgs(process.argv.slice(2));
const startedAt = Date.now();
ensurePgbenchDatabase(o.db, o.scale);
const machine = machineInfo();
console.log(`journal overhead: tpcb-like -c ${o.clients}, ${o.rounds} round(s) of ${o.duration} s per cell; ${MODES.length} protocols x ${TARGETS.length} targets`);

// Both proxies as bench/lib.ts starts HeliosProxy (transaction mode, pool 20, log_level warn); only the journal differs.
const proxies: Partial<Record<"off" | "on", Awaited<ReturnType<typeof startHelios>>>> = {};
const stopAll = () => Promise.all(Object.values(proxies).map((p) => p.stop()));
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    console.error(`\n${sig}: stopping the proxies`);
    void stopAll().finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
  });
}

const results = new Map<Mode, Map<TargetId, Run[]>>(MODES.map((m) => [m, new Map(TARGETS.map((t) => [t.id, []]))]));
try {
  proxies.off = await startHelios({ mode: "transaction", maxConnections: 20 });
  proxies.on = await startHelios({ mode: "transaction", maxConnections: 20, toml: "[transaction_replay]\nenabled = true\n" });
  // The journal must really be on in one and absent from the other, or the comparison means nothing.
  const journalStatus = async (p: { adminPort: number }) => (await fetch(`http://127.0.0.1:${p.adminPort}/journal`)).status;
  if ((await journalStatus(proxies.on)) !== 200) throw new Error("the journal-on proxy does not serve GET /journal: is the ha-tr feature in this build?");
  if ((await journalStatus(proxies.off)) === 200) throw new Error("the journal-off proxy serves GET /journal");
  const portOf = (t: TargetId) => (t === "direct" ? PG.port : proxies[t]!.port);

  // Warm-up: JIT, pools and prepared statements, both protocols, every target.
  for (const t of TARGETS) for (const mode of MODES) await runPgbench(pgbenchArgs(mode, o.clients, o.quick ? 1 : 3), portOf(t.id), o.db);

  let turn = 0;
  for (let round = 1; round <= o.rounds; round++) {
    for (const mode of MODES) {
      // Rotate which target goes first, so drift and after-load effects hit all of them alike.
      const k = turn++ % TARGETS.length;
      for (const t of [...TARGETS.slice(k), ...TARGETS.slice(0, k)]) {
        const pid = t.id === "direct" ? 0 : proxies[t.id]!.pid;
        const cpu0 = pid ? cpuMicros(pid) : 0;
        const r = await runPgbench(pgbenchArgs(mode, o.clients, o.duration), portOf(t.id), o.db);
        const cpuPerTx = pid && r.transactions > 0 ? (cpuMicros(pid) - cpu0) / r.transactions : NaN;
        const run: Run = { ...r, round, cpuPerTx };
        results.get(mode)!.get(t.id)!.push(run);
        const bad = clean(run) ? "" : `  ✗ ${r.firstError || `exit ${r.exitCode}, ${r.failed} failed, ${r.abortedClients} clients aborted`}`;
        const cpu = pid ? `  ${cpuPerTx.toFixed(1).padStart(6)} µs CPU/tx` : "";
        console.log(`round ${round} -M ${mode.padEnd(8)} ${t.label.padEnd(11)} ${fmt(r.tps).padStart(7)} tps  ${r.latencyMs.toFixed(3).padStart(7)} ms${cpu}${bad}`);
      }
    }
  }
} finally {
  await stopAll();
}

// ---- report ---------------------------------------------------------------------------------

const runsOf = (mode: Mode, t: TargetId) => results.get(mode)!.get(t)!;
/** Median of a field over a cell's runs, or NaN when any run failed. */
const med = (runs: Run[], f: (r: Run) => number) => (runs.length > 0 && runs.every(clean) ? median(runs.map(f)) : NaN);
const tps = (mode: Mode, t: TargetId) => med(runsOf(mode, t), (r) => r.tps);
const cell = (x: number, digits = 0) => (Number.isFinite(x) ? fmt(x, digits) : "✗");

const L: string[] = [];
L.push("<!-- BEGIN journal-overhead -->");
L.push(...sectionHead("Transaction journal: `[transaction_replay]` off vs on, tpcb-like", "bench/journal-overhead.ts", machine, startedAt, o.note));
L.push("");
L.push(
  `Database \`${o.db}\` (pgbench scale ${o.scale}, pgbench_history emptied at start). Two HeliosProxy processes (\`bun src/cli/main.ts\`, transaction mode, pool 20, \`log_level = "warn"\`) run side by side against the same PostgreSQL, identical but for \`[transaction_replay] enabled = true\` on one. pgbench's built-in tpcb-like script, \`-n -c ${o.clients} -j 2 -T ${o.duration}\`, runs against direct, journal off and journal on in turn (the order rotates), for ${o.rounds} round(s); cells are medians. The ratio is on ÷ off (1.00 = no cost); latency is pgbench's average; CPU is the proxy process' user+system time per transaction.`,
);
L.push("");
L.push("| protocol | direct, tps | journal off, tps | journal on, tps | on ÷ off | per-round on ÷ off | latency ms, direct / off / on | CPU µs/tx, off / on |");
L.push("|---|---:|---:|---:|---:|---|---|---|");
const ratios: number[] = [];
for (const mode of MODES) {
  const ratio = tps(mode, "on") / tps(mode, "off");
  ratios.push(ratio);
  const off = runsOf(mode, "off");
  const perRound = runsOf(mode, "on").map((r, i) => (off[i] ? (r.tps / off[i]!.tps).toFixed(2) : "?")).join(", ");
  const lat = TARGETS.map((t) => cell(med(runsOf(mode, t.id), (r) => r.latencyMs), 3)).join(" / ");
  const cpu = (["off", "on"] as const).map((t) => cell(med(runsOf(mode, t), (r) => r.cpuPerTx), 1)).join(" / ");
  L.push(`| -M ${mode} | ${cell(tps(mode, "direct"))} | ${cell(tps(mode, "off"))} | ${cell(tps(mode, "on"))} | ${Number.isFinite(ratio) ? ratio.toFixed(2) : "✗ errors"} | ${perRound} | ${lat} | ${cpu} |`);
}
L.push("");
const worst = Math.min(...ratios);
const met = ratios.every((r) => Number.isFinite(r) && r >= 0.9);
L.push(`Target: journal overhead <= 10%, i.e. on ÷ off >= 0.90 for both protocols — **${met ? "met" : "not met"}** (lowest ${Number.isFinite(worst) ? worst.toFixed(2) : "n/a: a run failed"}).`);
const failures = MODES.flatMap((mode) => TARGETS.flatMap((t) => runsOf(mode, t.id).filter((r) => !clean(r)).map((r) => `- -M ${mode}, ${t.label}, round ${r.round}: \`${r.firstError || `exit ${r.exitCode}`}\` (${r.failed} failed, ${r.abortedClients} clients aborted)`)));
if (failures.length) L.push("", "Failed runs:", "", ...failures);
L.push("<!-- END journal-overhead -->");
console.log("\n" + L.join("\n"));
