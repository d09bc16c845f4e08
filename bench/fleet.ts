// What coordination through etcd costs at a failover: kill -9 of the primary under write load, three proxies coordinated through etcd vs one proxy alone; first write after the kill; writes docs/benchmarks.md.
//
//   bun bench/fleet.ts [--quick] [--runs N] [--interval SECS] [--json PATH] [--no-doc] [--note TEXT]

import { writeFileSync } from "node:fs";
import { startEtcd, type EtcdServer } from "../test/support/etcd.ts";
import { LEDGER_DDL, checkLedger } from "../test/support/ledger.ts";
import { adminApi, promoteRequests, startClusterProxy, startPgCluster, SYNC_LAYOUT, type PgCluster } from "../test/support/pg-cluster.ts";
import type { RunningProxy } from "../test/support/proxy.ts";
import { codeVersion, commandLine, fmt, loadavg, median, parseFlags, pct, sh, updateDoc } from "./lib.ts";
import { WriteLoad } from "./write-load.ts";

type Setup = "alone" | "fleet";

interface Options {
  runs: number;
  interval: number;
  json: string;
  doc: boolean;
  note: string;
  quick: boolean;
}

function usage(exitCode = 0): never {
  console.log(`usage: bun bench/fleet.ts [options]
  --quick           2 runs per setup (development; numbers are rough)
  --runs N          runs per setup, alternating, each on a freshly built cluster (default 7)
  --interval SECS   [health] check_interval_secs of every proxy (default 1)
  --json PATH       also write every run's raw measurements to PATH
  --no-doc          print only; do not update docs/benchmarks.md
  --note TEXT       a note recorded with the results`);
  process.exit(exitCode);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { runs: NaN, interval: 1, json: "", doc: true, note: "", quick: false };
  parseFlags(argv, usage, {
    "--quick": () => (o.quick = true),
    "--runs": (v) => (o.runs = Number(v())),
    "--interval": (v) => (o.interval = Number(v())),
    "--json": (v) => (o.json = v()),
    "--no-doc": () => (o.doc = false),
    "--note": (v) => (o.note = v()),
  });
  if (Number.isNaN(o.runs)) o.runs = o.quick ? 2 : 7;
  if (!(o.runs >= 1) || !(o.interval > 0)) usage(2);
  return o;
}

/** Writers per proxy, back to back (autocommit INSERTs of the ledger). */
const CLIENTS_PER_PROXY = 3;
const FLEET_SIZE = 3;

interface Run {
  setup: Setup;
  run: number;
  /** Kill -> first write acknowledged by the new primary, per proxy (ms). */
  firstWriteMs: number[];
  /** Kill -> the controller (the leader's, under coordination) started; kill -> its record said done. */
  detectMs: number;
  doneMs: number;
  /** Steps of the controller that promoted, with their offsets (ms from its start). */
  steps: { at_ms: number; step: string }[];
  to: string;
  /** pg_promote() calls that promoted a node during the run (must be 1). */
  promotions: number;
  acked: number;
  errors: string[];
  missing: number;
  duplicated: number;
}

const etcdPrefix = (run: number) => `/heliosproxy/bench-fleet-${process.pid}-${run}`;

function proxyToml(setup: Setup, etcd: EtcdServer, run: number, i: number): string {
  const lines = ["[failover]", 'policy = "auto"'];
  if (setup === "fleet") lines.push("[coordination]", 'backend = "etcd"', `endpoints = ["${etcd.url}"]`, `key_prefix = "${etcdPrefix(run)}"`, `proxy_name = "p${i + 1}"`);
  return lines.join("\n");
}

async function startProxies(c: PgCluster, setup: Setup, etcd: EtcdServer, run: number, interval: number): Promise<RunningProxy[]> {
  const n = setup === "fleet" ? FLEET_SIZE : 1;
  const proxies: RunningProxy[] = [];
  try {
    for (let i = 0; i < n; i++) {
      proxies.push(await startClusterProxy(c, { split: false, maxConnections: 20, health: { interval, timeout: 1, failureThreshold: 3, recoveryThreshold: 1 }, toml: proxyToml(setup, etcd, run, i) }));
    }
    if (setup === "fleet") await until("a fleet leader every proxy knows", async () => {
      const views = await Promise.all(proxies.map(async (p) => (await adminApi(p, "GET", "/fleet")).body));
      return views.every((v) => v.leader !== null && v.leader === views[0].leader && v.proxies.length === n);
    }, 15_000);
  } catch (e) {
    await Promise.all(proxies.map((p) => p.stop()));
    throw e;
  }
  return proxies;
}

async function until(what: string, check: () => Promise<boolean>, limitMs: number): Promise<void> {
  const deadline = performance.now() + limitMs;
  while (!(await check().catch(() => false))) {
    if (performance.now() > deadline) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await Bun.sleep(25);
  }
}

/** The finished record of the proxy that promoted (the leader's, under coordination). */
async function promotedRecord(proxies: RunningProxy[], limitMs = 20_000): Promise<{ started_at: string; duration_ms: number; to: string; steps: Run["steps"] }> {
  const deadline = performance.now() + limitMs;
  for (;;) {
    for (const p of proxies) {
      const rec = (await adminApi(p, "GET", "/failovers")).body.failovers.find((r: { trigger: string; result: string }) => r.trigger === "auto" && r.result === "done");
      if (rec) return rec;
    }
    if (performance.now() > deadline) throw new Error(`no finished failover after ${limitMs} ms\n${proxies.map((p) => p.output().slice(-1500)).join("\n---\n")}`);
    await Bun.sleep(50);
  }
}

async function oneRun(setup: Setup, run: number, runs: number, etcd: EtcdServer, interval: number): Promise<Run> {
  const c = await startPgCluster({ databases: ["app"], syncNames: SYNC_LAYOUT });
  try {
    await c.setup(LEDGER_DDL, "app");
    const proxies = await startProxies(c, setup, etcd, run, interval);
    try {
      const oldPort = c.node("node1").port;
      const loads = proxies.map((p, i) => new WriteLoad(p.port, { clients: CLIENTS_PER_PROXY, everyMs: 0, transactions: false, firstWriter: i * CLIENTS_PER_PROXY }));
      const before = promoteRequests(c);
      let event = 0;
      let eventWall = 0;
      const firsts: number[] = [];
      try {
        // 1.5 s of load, then the kill at a point spread over one probe interval across the runs.
        await Bun.sleep(1500 + ((run + 0.5) / runs) * interval * 1000);
        if (loads.some((l) => l.acked.length === 0 || l.errors.length > 0)) throw new Error(`load not clean before the kill: ${JSON.stringify(loads.flatMap((l) => l.errors).slice(0, 3))}`);
        eventWall = Date.now();
        event = performance.now();
        await c.kill9("node1");
        for (const l of loads) firsts.push((await l.waitAckAfter(event, oldPort, 30_000)).ackAt - event);
        await Bun.sleep(500);
      } finally {
        await Promise.all(loads.map((l) => l.stop()));
      }
      const rec = await promotedRecord(proxies);
      const after = promoteRequests(c);
      const ids = (await c.psql(rec.to, "SELECT id FROM ledger", { db: "app" })).split("\n").filter(Boolean).map(Number);
      const { missing, duplicated } = checkLedger(loads.flatMap((l) => l.acked), ids);
      const startedMs = Date.parse(rec.started_at) - eventWall;
      return {
        setup,
        run,
        firstWriteMs: firsts,
        detectMs: startedMs,
        doneMs: startedMs + rec.duration_ms,
        steps: rec.steps,
        to: rec.to,
        promotions: Object.keys(after).reduce((a, k) => a + after[k]! - (before[k] ?? 0), 0),
        acked: loads.reduce((a, l) => a + l.acked.length, 0),
        errors: loads.flatMap((l) => l.errors.map((e) => e.code)),
        missing: missing.length,
        duplicated: duplicated.length,
      };
    } finally {
      await Promise.all(proxies.map((p) => p.stop()));
    }
  } finally {
    await c.destroy();
  }
}

// ---- the report -------------------------------------------------------------------------------

const ms = (x: number) => fmt(x, 0);

function counts(xs: string[]): string {
  if (xs.length === 0) return "—";
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return [...m].map(([k, n]) => `${k} ×${n}`).join(", ");
}

/** Offset (ms from the controller's start) of the first step matching `re`, per run. */
const stepAt = (r: Run, re: RegExp) => r.steps.find((s) => re.test(s.step))?.at_ms ?? NaN;

function report(o: Options, runs: Run[], meta: { started: string; minutes: number; loadStart: string; pgVersion: string }): string {
  const of = (s: Setup) => runs.filter((r) => r.setup === s);
  const any = (r: Run) => Math.min(...r.firstWriteMs);
  const all = (r: Run) => Math.max(...r.firstWriteMs);
  const row = (label: string, xs: number[]) => `| ${label} | ${ms(median(xs))} | ${ms(pct(xs, 99))} | ${ms(Math.max(...xs))} |`;
  const alone = of("alone");
  const fleet = of("fleet");
  const addP50 = median(fleet.map(all)) - median(alone.map(all));
  const addP99 = pct(fleet.map(all), 99) - pct(alone.map(all), 99);
  const claim = (r: Run) => stepAt(r, /fleet epoch \d+ won/) - stepAt(r, /answers as a standby/);
  const ranked = (r: Run) => stepAt(r, /^candidate /);
  const promoting = (r: Run) => stepAt(r, /promoted$/) - Math.max(stepAt(r, /^old primary/), stepAt(r, /fleet epoch \d+ won/) || 0);
  const publish = (r: Run) => stepAt(r, /failover record written/) - stepAt(r, /promoted$/);
  return [
    "## Fleet: what coordination through etcd adds to a failover",
    "",
    "`bun bench/fleet.ts` (also `npm run bench:fleet`) alternates two setups, each run on a freshly built cluster (src/devcluster: primary node1, sync standby node2, async standby node3; fsync off): **alone**, one HeliosProxy with `[failover] policy = \"auto\"` and no `[coordination]`; **fleet**, three HeliosProxy processes with the same config plus `[coordination] backend = \"etcd\"` (one etcd from Debian's etcd-server on loopback for the whole run, a key prefix per run, default `lease_ttl_secs = 10`, `request_timeout_secs = 1`). Every proxy gets " +
      `${CLIENTS_PER_PROXY} clients sending autocommit \`INSERT INTO ledger ... RETURNING inet_server_port()\` back to back. After 1.5 s of load plus an offset spread over one probe interval across the runs, every process of node1 is SIGKILLed; a run ends when every proxy has had a write acknowledged by the new primary. ` +
      "Then it checks that exactly one `pg_promote()` promoted a node (\"received promote request\" in the server logs) and that every acknowledged write is on the new primary exactly once. Options: `--quick` (2 runs per setup), `--runs N` (default 7), `--interval SECS` (probe interval, default 1), `--json PATH`, `--no-doc`, `--note TEXT`.",
    "",
    "```",
    commandLine("bench/fleet.ts"),
    "```",
    "",
    `- Date: ${meta.started}; HeliosProxy code: commit ${codeVersion()}`,
    `- Machine: ${sh(["nproc"]).out.trim()} CPUs, Linux ${sh(["uname", "-r"]).out.trim()}; load average at start ${meta.loadStart}, at end ${loadavg()}; wall time ${meta.minutes.toFixed(1)} min`,
    `- Versions: Bun ${Bun.version}; PostgreSQL ${meta.pgVersion}; ${sh(["etcd", "--version"]).out.split("\n")[0]!.trim()}`,
    `- Proxy config: \`[health] check_interval_secs = ${o.interval}\`, \`check_timeout_secs = 1\`, \`failure_threshold = 3\`, \`recovery_threshold = 1\`; other keys default. ${o.runs} runs per setup.`,
    ...(o.note ? [`- Note: ${o.note}`] : []),
    ...(o.quick ? ["- **Quick run** (`--quick`): 2 runs per setup; indicative only."] : []),
    "",
    "First write acknowledged by the new primary after the kill, ms (p99 is the largest value below 100 runs):",
    "",
    "| | p50 | p99 | max |",
    "|---|---:|---:|---:|",
    row("alone: the proxy", alone.map(all)),
    row("fleet: the first of the three proxies", fleet.map(any)),
    row("fleet: the last of the three proxies (every proxy writing again)", fleet.map(all)),
    "",
    "Without the detection (which depends on where in the probe cycle the kill lands): from the start of the controller that promoted to the first write, ms:",
    "",
    "| | p50 | p99 | max |",
    "|---|---:|---:|---:|",
    row("alone: the proxy", alone.map((r) => all(r) - r.detectMs)),
    row("fleet: the last of the three proxies", fleet.map((r) => all(r) - r.detectMs)),
    "",
    `**Added by coordination** (last fleet proxy vs the proxy alone, from the kill): ${ms(addP50)} ms at p50, ${ms(addP99)} ms at p99 (target: < 300 ms at p99); from the controller's start: ${ms(median(fleet.map((r) => all(r) - r.detectMs)) - median(alone.map((r) => all(r) - r.detectMs)))} ms at p50, ${ms(pct(fleet.map((r) => all(r) - r.detectMs), 99) - pct(alone.map((r) => all(r) - r.detectMs), 99))} ms at p99.`,
    "",
    "| | alone | fleet |",
    "|---|---|---|",
    `| kill -> controller started (p50 / max, ms) | ${ms(median(alone.map((r) => r.detectMs)))} / ${ms(Math.max(...alone.map((r) => r.detectMs)))} | ${ms(median(fleet.map((r) => r.detectMs)))} / ${ms(Math.max(...fleet.map((r) => r.detectMs)))} |`,
    `| kill -> failover done (p50 / max, ms) | ${ms(median(alone.map((r) => r.doneMs)))} / ${ms(Math.max(...alone.map((r) => r.doneMs)))} | ${ms(median(fleet.map((r) => r.doneMs)))} / ${ms(Math.max(...fleet.map((r) => r.doneMs)))} |`,
    `| controller start -> candidate chosen (fresh probes of the standbys; p50, ms) | ${ms(median(alone.map(ranked)))} | ${ms(median(fleet.map(ranked)))} |`,
    `| pg_promote() until out of recovery (p50, ms) | ${ms(median(alone.map(promoting)))} | ${ms(median(fleet.map(promoting)))} |`,
    `| etcd: winning the epoch / writing the record (p50, ms) | — | ${ms(median(fleet.map(claim)))} / ${ms(median(fleet.map(publish)))} |`,
    `| promotions per run | ${counts(alone.map((r) => String(r.promotions)))} | ${counts(fleet.map((r) => String(r.promotions)))} |`,
    `| acknowledged writes; lost / doubled | ${alone.reduce((a, r) => a + r.acked, 0)}; ${alone.reduce((a, r) => a + r.missing, 0)} / ${alone.reduce((a, r) => a + r.duplicated, 0)} | ${fleet.reduce((a, r) => a + r.acked, 0)}; ${fleet.reduce((a, r) => a + r.missing, 0)} / ${fleet.reduce((a, r) => a + r.duplicated, 0)} |`,
    `| client errors (SQLSTATE, \`client\` = connection broken) | ${counts(alone.flatMap((r) => r.errors))} | ${counts(fleet.flatMap((r) => r.errors))} |`,
    "",
    "The etcd exchanges are the row \"winning the epoch / writing the record\"; followers get the record through their etcd watch. The rest of any difference comes from the same steps running slower with three proxies and nine clients on the same CPUs. Errors are writes in flight at the kill (no `[transaction_replay]` here).",
    "",
  ].join("\n");
}

// ---- main ------------------------------------------------------------------------------------

const o = parseArgs(process.argv.slice(2));
const started = new Date().toISOString().replace(/\.\d+Z$/, "Z");
const t0 = performance.now();
const loadStart = loadavg();
const etcd = await startEtcd();
const runs: Run[] = [];
let pgVersion = sh(["psql", "--version"]).out.trim();
try {
  for (let i = 0; i < o.runs; i++) {
    for (const setup of ["alone", "fleet"] as const) {
      let r: Run | null = null;
      for (let attempt = 1; r === null; attempt++) {
        try {
          r = await oneRun(setup, i, o.runs, etcd, o.interval);
        } catch (e) {
          console.error(`${setup} run ${i + 1} attempt ${attempt} failed: ${(e as Error).message.slice(0, 500)}`);
          if (attempt >= 3) throw e;
        }
      }
      runs.push(r);
      console.log(`${setup.padEnd(5)} run ${i + 1}: first write ${r.firstWriteMs.map(ms).join(", ")} ms; controller started ${ms(r.detectMs)} ms, done ${ms(r.doneMs)} ms; ${r.to}; promotions ${r.promotions}; acked ${r.acked}, lost ${r.missing}, doubled ${r.duplicated}; errors ${counts(r.errors)}`);
    }
  }
} finally {
  await etcd.destroy();
}
pgVersion = pgVersion.replace(/^psql \(PostgreSQL\) /, "");
const md = report(o, runs, { started, minutes: (performance.now() - t0) / 60000, loadStart, pgVersion });
console.log("\n" + md);
if (o.json) writeFileSync(o.json, JSON.stringify({ started, command: commandLine("bench/fleet.ts"), commit: codeVersion(), runs }, null, 2));
if (o.doc) updateDoc("fleet", md);
