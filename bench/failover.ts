// Failover timing through HeliosProxy: kill -9 of the primary (1 s and 0.25 s probes; busy, sparse and no write load) and planned switchover under load; a fresh cluster per run; writes docs/benchmarks.md.
//
//   bun bench/failover.ts [--quick] [--runs N] [--only ID,...] [--json PATH] [--no-doc] [--note TEXT]

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import type { FailoverRecord } from "../src/cluster/failover.ts";
import { LEDGER_DDL, checkLedger, type LedgerWrite } from "../test/support/ledger.ts";
import { adminApi, startClusterProxy, startPgCluster, SYNC_LAYOUT, type PgCluster } from "../test/support/pg-cluster.ts";
import type { RunningProxy } from "../test/support/proxy.ts";
import { codeVersion, commandLine, cpuBusy, fmt, loadavg, median, parseFlags, pct, sh, updateDoc } from "./lib.ts";
import { WriteLoad } from "./write-load.ts";

// ---- options ------------------------------------------------------------------------------

interface Scenario {
  id: string;
  kind: "crash" | "switchover";
  /** [health] check_interval_secs. */
  interval: number;
  load: "busy" | "sparse" | "idle";
  label: string;
}

const SCENARIOS: Scenario[] = [
  { id: "crash-1s-busy", kind: "crash", interval: 1, load: "busy", label: "kill -9, 1 s probes, busy load" },
  { id: "crash-1s-sparse", kind: "crash", interval: 1, load: "sparse", label: "kill -9, 1 s probes, sparse load" },
  { id: "crash-250ms-busy", kind: "crash", interval: 0.25, load: "busy", label: "kill -9, 0.25 s probes, busy load" },
  { id: "crash-250ms-sparse", kind: "crash", interval: 0.25, load: "sparse", label: "kill -9, 0.25 s probes, sparse load" },
  { id: "crash-1s-idle", kind: "crash", interval: 1, load: "idle", label: "kill -9, 1 s probes, no traffic during the failover" },
  { id: "crash-250ms-idle", kind: "crash", interval: 0.25, load: "idle", label: "kill -9, 0.25 s probes, no traffic during the failover" },
  { id: "switchover", kind: "switchover", interval: 1, load: "busy", label: "POST /switchover, 1 s probes, busy load + transactions" },
];

interface Options {
  runs: number;
  only: string[] | null;
  json: string;
  doc: boolean;
  note: string;
  quick: boolean;
}

function usage(exitCode = 0): never {
  console.log(`usage: bun bench/failover.ts [options]
  --quick              2 runs per scenario (development; numbers are rough)
  --runs N             runs per scenario, each on a freshly built cluster (default 7)
  --only ID[,ID...]    run only these scenarios (${SCENARIOS.map((s) => s.id).join(", ")})
  --json PATH          also write every run's raw measurements to PATH
  --no-doc             print only; do not update docs/benchmarks.md
  --note TEXT          a note recorded with the results`);
  process.exit(exitCode);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { runs: NaN, only: null, json: "", doc: true, note: "", quick: false };
  parseFlags(argv, usage, {
    "--quick": () => (o.quick = true),
    "--runs": (v) => (o.runs = Number(v())),
    "--only": (v) => (o.only = v().split(",")),
    "--json": (v) => (o.json = v()),
    "--no-doc": () => (o.doc = false),
    "--note": (v) => (o.note = v()),
  });
  if (Number.isNaN(o.runs)) o.runs = o.quick ? 2 : 7;
  if (!(o.runs >= 1)) usage();
  for (const id of o.only ?? []) if (!SCENARIOS.some((s) => s.id === id)) usage();
  return o;
}

// ---- load -----------------------------------------------------------------------------------

/**
 * Busy: 8 writers back to back. Sparse: 2 writers, each one write every 200 ms, 100 ms apart.
 * Idle: the sparse writers, paused from just before the kill until the failover is over, so
 * nothing but the health probes can notice the crash.
 */
const LOAD = {
  busy: { clients: 8, everyMs: 0 },
  sparse: { clients: 2, everyMs: 200 },
  idle: { clients: 2, everyMs: 200 },
} as const;

// ---- CPU used by other work ---------------------------------------------------------------------

/** utime + stime (clock ticks) and parent of every process now. */
function procTable(pids?: number[]): Map<number, { ppid: number; cpu: number }> {
  const m = new Map<number, { ppid: number; cpu: number }>();
  for (const d of pids ?? readdirSync("/proc").filter((x) => /^\d+$/.test(x)).map(Number)) {
    try {
      const st = readFileSync(`/proc/${d}/stat`, "utf8");
      const rest = st.slice(st.lastIndexOf(")") + 2).split(" ");
      m.set(d, { ppid: Number(rest[1]), cpu: Number(rest[11]) + Number(rest[12]) });
    } catch {
      // gone
    }
  }
  return m;
}

/**
 * Process (user + nice + system) and total clock ticks of all CPUs (/proc/stat). Interrupt and
 * softirq time (loopback traffic) and steal belong to no process, so they are left out of "busy".
 */
function cpuTicks(): { busy: number; total: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: f[0]! + f[1]! + f[2]!, total };
}

/**
 * Share of the machine's CPU used during a run by processes that are not this bench's (this
 * process, the proxy it started, the cluster's servers): other work sharing the machine.
 */
class OtherCpu {
  private readonly t0 = cpuTicks();
  private readonly p0 = procTable();
  /** CPU of processes that die during the run, sampled just before they do. */
  private dying = 0;

  constructor(private readonly c: PgCluster) {}

  /** Call just before killing `node`: its processes' CPU so far counts as ours. */
  beforeKill(node: string): void {
    for (const [pid, v] of procTable(this.c.dev.node(node).processes())) this.dying += v.cpu - (this.p0.get(pid)?.cpu ?? 0);
  }

  /** Share (0..1) of all CPU time since construction used by other processes. */
  share(): number {
    const t1 = cpuTicks();
    const p1 = procTable();
    const roots = new Set<number>([process.pid]);
    for (const n of this.c.dev.nodes) {
      const pm = n.pid();
      if (pm !== null) roots.add(pm);
    }
    const children = new Map<number, number[]>();
    for (const [pid, v] of p1) children.set(v.ppid, [...(children.get(v.ppid) ?? []), pid]);
    let mine = this.dying;
    const stack = [...roots];
    const seen = new Set<number>();
    while (stack.length > 0) {
      const pid = stack.pop()!;
      if (seen.has(pid)) continue;
      seen.add(pid);
      const v = p1.get(pid);
      if (v) mine += v.cpu - (this.p0.get(pid)?.cpu ?? 0);
      stack.push(...(children.get(pid) ?? []));
    }
    const total = t1.total - this.t0.total;
    return total > 0 ? Math.max(0, t1.busy - this.t0.busy - mine) / total : NaN;
  }
}

// ---- runs -----------------------------------------------------------------------------------

/** An error relative to the event (kill or POST /switchover), in ms. */
interface RunError {
  sentMs: number;
  atMs: number;
  code: string;
  message: string;
  source: "write" | "tx";
  /** in flight: sent before the event; before-failover: after the kill but before the controller started; held: after it started. */
  phase: "in flight" | "before failover" | "during failover";
}

/** A run that threw (cluster, proxy or failover) and was repeated. */
interface FailedRun {
  scenario: string;
  run: number;
  message: string;
}

interface Run {
  scenario: string;
  run: number;
  /** Event (kill or POST /switchover) -> first write acknowledged by the new primary, ms (NaN for idle runs: nothing was sent). */
  firstWriteMs: number;
  /** Crash: event -> the controller started (record.started_at, wall clock), ms. */
  detectMs: number | null;
  /** Event -> the new primary took requests (started_at + duration_ms), ms. */
  writableMs: number | null;
  /** The record's own numbers. */
  durationMs: number | null;
  holdMs: number | null;
  repointMs: (number | null)[];
  repointOk: boolean;
  from: string;
  to: string | null;
  result: string;
  reason: string;
  candidates: FailoverRecord["candidates"];
  steps: { at_ms: number; step: string }[];
  /** Requests the switchover buffer released / refused. */
  bufferReleased: number;
  bufferRefused: number;
  /** Switchover: longest gap between consecutive acknowledged writes or commits around it, ms; slowest write across it, ms. */
  gapMs: number | null;
  slowestWriteMs: number | null;
  /** POST /switchover round trip, ms. */
  apiMs: number | null;
  acked: number;
  txCommitted: number;
  errors: RunError[];
  missing: number[];
  duplicated: number[];
  /** Writes sent between the event and the first acknowledgement on the new primary, and how many of them were acknowledged. */
  sentDuring: number;
  ackedDuring: number;
  /** Share of the machine's CPU used by other processes (not this bench, its proxy or its cluster) during the run. */
  otherCpu: number;
}

const PROXY_TOML = `[failover]\npolicy = "auto"\n`;
/** server_version of the clusters (read from the first one built). */
let pgVersion = "";

async function withCluster<T>(fn: (c: PgCluster) => Promise<T>): Promise<T> {
  const c = await startPgCluster({ databases: ["app"], syncNames: SYNC_LAYOUT });
  try {
    await c.setup(LEDGER_DDL, "app");
    pgVersion ||= await c.psql("node1", "SHOW server_version");
    return await fn(c);
  } finally {
    await c.destroy();
  }
}

async function startProxyFor(c: PgCluster, s: Scenario): Promise<RunningProxy> {
  return startClusterProxy(c, {
    split: false,
    maxConnections: 20,
    health: { interval: s.interval, timeout: 1, failureThreshold: 3, recoveryThreshold: 1 },
    toml: PROXY_TOML,
  });
}

async function failoverView(proxy: RunningProxy): Promise<{ rec: FailoverRecord | undefined; buffer: { released: number; refused: number } }> {
  const r = await adminApi(proxy, "GET", "/failovers");
  return { rec: (r.body.failovers as FailoverRecord[])[0], buffer: r.body.buffer };
}

/** The finished record, once its standbys are repointed (that runs after the primary moved). */
async function settledRecord(proxy: RunningProxy, limitMs = 15_000): Promise<{ rec: FailoverRecord; buffer: { released: number; refused: number } }> {
  const t0 = performance.now();
  for (;;) {
    const v = await failoverView(proxy);
    const rec = v.rec;
    if (rec && rec.result !== "running" && (rec.result !== "done" || rec.repointed.length > 0)) return { rec, buffer: v.buffer };
    if (performance.now() - t0 > limitMs) {
      if (rec) return { rec, buffer: v.buffer };
      throw new Error(`no failover recorded after ${limitMs} ms\n${proxy.output().slice(-2000)}`);
    }
    await Bun.sleep(50);
  }
}

async function ledgerIds(c: PgCluster, node: string): Promise<number[]> {
  return (await c.psql(node, "SELECT id FROM ledger", { db: "app" })).split("\n").filter(Boolean).map(Number);
}

/** Warm-up before the event: 1.5 s, plus a phase offset spread over one probe interval across the runs. */
function warmupMs(s: Scenario, run: number, runs: number): number {
  return 1500 + ((run + 0.5) / runs) * s.interval * 1000;
}

/** What a run measured, from the load and the proxy's record. `event`: performance.now() of the kill or the POST; `eventWall`: Date.now() then. */
async function measure(
  c: PgCluster,
  proxy: RunningProxy,
  s: Scenario,
  run: number,
  load: WriteLoad,
  ev: { event: number; eventWall: number; first: LedgerWrite | null; apiEnd: number | null; otherCpu: number },
): Promise<Run> {
  const { rec, buffer } = await settledRecord(proxy);
  const all = [...load.acked, ...load.txAcked];
  const { missing, duplicated } = checkLedger(all, await ledgerIds(c, rec.to ?? "node2"));
  const startedAt = ev.event + (Date.parse(rec.started_at) - ev.eventWall);
  const firstAt = ev.first?.ackAt ?? Infinity;
  const sent = load.acked.filter((a) => a.sentAt >= ev.event && a.sentAt <= firstAt);
  const sentErr = load.errors.filter((e) => e.sentAt >= ev.event && e.sentAt <= firstAt);
  const across = ev.apiEnd === null ? [] : load.acked.filter((a) => a.ackAt >= ev.event && a.sentAt <= ev.apiEnd!);
  return {
    scenario: s.id,
    run,
    firstWriteMs: ev.first ? ev.first.ackAt - ev.event : NaN,
    detectMs: s.kind === "crash" ? startedAt - ev.event : null,
    writableMs: rec.duration_ms === null ? null : startedAt + rec.duration_ms - ev.event,
    durationMs: rec.duration_ms,
    holdMs: rec.hold_ms,
    repointMs: rec.repointed.map((r) => r.ms),
    repointOk: rec.repointed.length > 0 && rec.repointed.every((r) => r.ok),
    from: rec.from,
    to: rec.to,
    result: rec.result,
    reason: rec.reason,
    candidates: rec.candidates,
    steps: rec.steps,
    bufferReleased: buffer.released,
    bufferRefused: buffer.refused,
    gapMs: ev.apiEnd === null ? null : longestGap(all.map((a) => a.ackAt), ev.event, ev.apiEnd),
    slowestWriteMs: ev.apiEnd === null ? null : Math.max(0, ...across.map((a) => a.ackAt - a.sentAt)),
    apiMs: ev.apiEnd === null ? null : ev.apiEnd - ev.event,
    acked: load.acked.length,
    txCommitted: load.txAcked.length,
    errors: load.errors.map((e) => ({
      sentMs: e.sentAt - ev.event,
      atMs: e.at - ev.event,
      code: e.code,
      message: e.message,
      source: e.source,
      phase: e.sentAt < ev.event ? "in flight" : e.sentAt < startedAt ? "before failover" : "during failover",
    })),
    missing,
    duplicated,
    sentDuring: sent.length + sentErr.length,
    ackedDuring: sent.length,
    otherCpu: ev.otherCpu,
  };
}

async function crashRun(s: Scenario, run: number, runs: number): Promise<Run> {
  return withCluster(async (c) => {
    const proxy = await startProxyFor(c, s);
    try {
      const oldPort = c.node("node1").port;
      const cpu = new OtherCpu(c);
      const load = new WriteLoad(proxy.port, { ...LOAD[s.load], transactions: false });
      let first: LedgerWrite | null = null;
      let event = 0;
      let eventWall = 0;
      let otherCpu = NaN;
      try {
        await Bun.sleep(warmupMs(s, run, runs));
        if (load.acked.length === 0) throw new Error(`no write acknowledged before the kill: ${JSON.stringify(load.errors.slice(-3))}`);
        if (load.errors.length > 0) throw new Error(`errors before the kill: ${JSON.stringify(load.errors.slice(0, 3))}`);
        if (s.load === "idle") {
          load.paused = true;
          await Bun.sleep(50); // a sparse write takes a few ms: none is in flight now
        }
        cpu.beforeKill("node1");
        eventWall = Date.now();
        event = performance.now();
        await c.kill9("node1");
        if (s.load === "idle") {
          await settledRecord(proxy, 30_000);
          load.paused = false;
          await load.waitAckAfter(event, oldPort, 30_000);
        } else first = await load.waitAckAfter(event, oldPort, 30_000);
        await Bun.sleep(1000);
        otherCpu = cpu.share();
      } finally {
        await load.stop();
      }
      return await measure(c, proxy, s, run, load, { event, eventWall, first, apiEnd: null, otherCpu });
    } finally {
      await proxy.stop();
    }
  });
}

/** Longest interval between consecutive acknowledgements that overlaps [from, to]. */
function longestGap(acks: number[], from: number, to: number): number {
  const v = [...acks].sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! >= from && v[i - 1]! <= to) gap = Math.max(gap, v[i]! - v[i - 1]!);
  return gap;
}

async function switchoverRun(s: Scenario, run: number, runs: number): Promise<Run> {
  return withCluster(async (c) => {
    const proxy = await startProxyFor(c, s);
    try {
      const oldPort = c.node("node1").port;
      const cpu = new OtherCpu(c);
      const load = new WriteLoad(proxy.port, { ...LOAD[s.load], transactions: true });
      let event = 0;
      let eventWall = 0;
      let apiEnd = 0;
      let otherCpu = NaN;
      let first: LedgerWrite;
      try {
        await Bun.sleep(warmupMs(s, run, runs));
        if (load.acked.length === 0 || load.txAcked.length === 0) throw new Error(`no write acknowledged before the switchover: ${JSON.stringify(load.errors.slice(-3))}`);
        eventWall = Date.now();
        event = performance.now();
        const reply = await adminApi(proxy, "POST", "/switchover", {}, {});
        apiEnd = performance.now();
        if (reply.status !== 200) throw new Error(`POST /switchover: ${reply.status} ${JSON.stringify(reply.body)}`);
        first = await load.waitAckAfter(event, oldPort, 30_000);
        await Bun.sleep(1000);
        otherCpu = cpu.share();
      } finally {
        await load.stop();
      }
      return await measure(c, proxy, s, run, load, { event, eventWall, first, apiEnd, otherCpu });
    } finally {
      await proxy.stop();
    }
  });
}

// ---- statistics and the report ----------------------------------------------------------------

const nums = (xs: (number | null)[]): number[] => xs.filter((x): x is number => x !== null && Number.isFinite(x));
const ms = (x: number) => fmt(x, 0);
const triple = (xs: number[]) => `${ms(median(xs))} / ${ms(pct(xs, 99))} / ${ms(Math.max(...xs))}`;

function codes(errors: { code: string }[]): string {
  if (errors.length === 0) return "—";
  const m = new Map<string, number>();
  for (const e of errors) m.set(e.code, (m.get(e.code) ?? 0) + 1);
  return [...m].map(([k, n]) => `${k} ×${n}`).join(", ");
}

function report(o: Options, scenarios: Scenario[], results: Map<string, Run[]>, failed: FailedRun[], meta: { busyBefore: number; busyAfter: number; loadStart: string; loadEnd: string; minutes: number; pgVersion: string; started: string }): string {
  const crash = scenarios.filter((s) => s.kind === "crash");
  const sw = scenarios.find((s) => s.kind === "switchover");
  const runsOf = (s: Scenario) => results.get(s.id) ?? [];
  const all = scenarios.flatMap(runsOf);
  const medMax = (xs: number[]) => (xs.length ? `${ms(median(xs))} / ${ms(Math.max(...xs))}` : "n/a");
  const promoted = (r: Run[]) => {
    const m = new Map<string, number>();
    for (const x of r) m.set(x.to ?? "none", (m.get(x.to ?? "none") ?? 0) + 1);
    return [...m].sort().map(([k, n]) => `${k} ×${n}`).join(", ");
  };
  const pctOf = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : "n/a");
  const otherCpu = (r: Run[]) => {
    const v = nums(r.map((x) => x.otherCpu));
    return v.length ? `${pctOf(median(v))} / ${pctOf(Math.max(...v))}` : "n/a";
  };
  const phase = (r: Run[], p: RunError["phase"]) => sum(r, (x) => x.errors.filter((e) => e.phase === p).length);
  const repointed = (r: Run[]) => {
    const rp = nums(r.flatMap((x) => x.repointMs));
    return `${medMax(rp)}${r.some((x) => !x.repointOk) ? " (some failed)" : ""}`;
  };
  const lines: string[] = [
    "## Failover: kill -9 of the primary and planned switchover, under write load through HeliosProxy",
    "",
    "`bun bench/failover.ts` (also `npm run bench:failover`) builds a fresh local cluster with src/devcluster for every run (primary node1, sync standby node2, async standby node3; fsync off; ~3 s to build; `synchronous_standby_names = 'FIRST 1 (node2)'` in every node's postgresql.conf before the standbys are cloned, the layout pg_basebackup gives, unless HELIOS_SYNC_LAYOUT=primary), starts HeliosProxy in front of it as its own process (`bun src/cli/main.ts`, config from test/support's builder: transaction pooling, max_connections 20, `read_write_split = false`), runs a write load through the proxy from this script's process, then either SIGKILLs every process of the primary (DevNode.kill9) or calls `POST /switchover`, and afterwards reads GET /failovers and the ledger on the new primary. A fresh cluster per run, rather than rejoining the old primary as a standby, keeps every run identical (same roles, no earlier timeline) for ~3 s per run. Options: `--quick` (2 runs per scenario), `--runs N` (default 7), `--only ID,...` (" + SCENARIOS.map((s) => `\`${s.id}\``).join(", ") + "), `--json PATH` (every run's raw numbers), `--no-doc`, `--note TEXT`.",
    "",
    "```",
    commandLine("bench/failover.ts"),
    "```",
    "",
    `- Date: ${meta.started}; HeliosProxy code: commit ${codeVersion()}`,
    `- Machine: ${sh(["nproc"]).out.trim()} CPUs, Linux ${sh(["uname", "-r"]).out.trim()}; load average at start ${meta.loadStart}, at end ${meta.loadEnd}; CPU busy (all processes) over 2 s before the first run ${fmt(meta.busyBefore * 100)}%, after the last ${fmt(meta.busyAfter * 100)}%`,
    `- Versions: Bun ${Bun.version}; PostgreSQL ${meta.pgVersion}; node-postgres (pg) clients`,
    `- Proxy config: \`[failover] policy = "auto"\` (other [failover] keys default: confirm_interval_secs 0.2, buffer_timeout_secs 10, drain_timeout_secs 5, promote_timeout_secs 30); \`[health] check_interval_secs = 1\` or \`0.25\`, \`check_timeout_secs = 1\`, \`failure_threshold = 3\`, \`recovery_threshold = 1\`.`,
    `- Load: **busy** = ${LOAD.busy.clients} clients each sending autocommit \`INSERT INTO ledger ... RETURNING inet_server_port()\` back to back; **sparse** = ${LOAD.sparse.clients} clients each sending one such INSERT every ${LOAD.sparse.everyMs} ms (offset ${LOAD.sparse.everyMs / LOAD.sparse.clients} ms from each other); **no traffic** = the sparse clients, paused from 50 ms before the kill until the failover is over (only the health probes can notice the crash). The switchover runs add one client doing \`BEGIN; INSERT; 20 ms pause; UPDATE; COMMIT\` in a loop. A client whose statement fails records the error (SQLSTATE, or \`client\` for a broken connection) and reconnects. The event comes after 1.5 s of load plus an offset spread evenly over one probe interval across the runs (so the kill lands at different points of the probe cycle). ${o.runs} runs per scenario. Wall time ${meta.minutes.toFixed(1)} min.`,
    ...(o.note ? [`- Note: ${o.note}`] : []),
    ...(o.quick ? ["- **Quick run** (`--quick`): 2 runs per scenario; indicative only."] : []),
    "",
  ];

  if (crash.length > 0) {
    lines.push(
      "### Crash failover (kill -9 of the primary)",
      "",
      "- **first write**: from the SIGKILL to the first INSERT acknowledged by the new primary, as the client saw it;",
      "- **writable**: from the SIGKILL to the controller handing requests to the new primary (record `started_at` + `duration_ms`; the only measure for the runs without traffic);",
      "- **detection**: from the SIGKILL to the controller starting (`started_at`, wall clock, ms resolution);",
      "- **duration_ms / hold_ms**: the record's own (hold: how long requests for the primary waited);",
      "- **repointed**: `repointed[].ms` of the standby that was not promoted (from the primary change until it streams from the new primary);",
      "- **client errors**, by when the failed statement was sent: before the kill (in flight on the killed server) / after the kill but before the controller started (it reached a server connection that had just died) / after the controller started (should have been held);",
      "- **lost / doubled**: acknowledged ids missing from, or present twice in, the ledger on the new primary;",
      "- **other CPU**: share of the machine's CPU time used during the run (load start to end) by processes that are not this bench, its proxy or its cluster — other work sharing the machine.",
      "",
      "Median / p99 / max, or median / max, over the runs; p99 is nearest-rank, so with fewer than 100 runs it is the largest value.",
      "",
      "| scenario | runs | first write ms (median / p99 / max) | writable ms (median / p99 / max) | detection ms (median / max) | duration_ms (median / max) | hold_ms (median / max) | repointed ms (median / max) | promoted | client errors: in flight / before failover / during failover | SQLSTATEs | writes sent during the failover: acknowledged / sent | lost / doubled acknowledged writes | other CPU (median / max) |",
      "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|---|--:|--:|--:|",
    );
    for (const s of crash) {
      const r = runsOf(s);
      if (r.length === 0) continue;
      const first = nums(r.map((x) => x.firstWriteMs));
      lines.push(
        `| ${s.label} | ${r.length} | ${first.length ? triple(first) : "n/a (nothing sent)"} | ${triple(nums(r.map((x) => x.writableMs)))} | ${medMax(nums(r.map((x) => x.detectMs)))} | ${medMax(nums(r.map((x) => x.durationMs)))} | ${medMax(nums(r.map((x) => x.holdMs)))} | ${repointed(r)} | ${promoted(r)} | ${phase(r, "in flight")} / ${phase(r, "before failover")} / ${phase(r, "during failover")} | ${codes(r.flatMap((x) => x.errors))} | ${s.load === "idle" ? "—" : `${sum(r, (x) => x.ackedDuring)} / ${sum(r, (x) => x.sentDuring)}`} | ${sum(r, (x) => x.missing.length)} / ${sum(r, (x) => x.duplicated.length)} (of ${fmt(sum(r, (x) => x.acked))}) | ${otherCpu(r)} |`,
      );
    }
    lines.push("");
  }

  if (sw) {
    const r = runsOf(sw);
    if (r.length > 0) {
      lines.push(
        "### Planned switchover (POST /switchover, no target: the controller picks)",
        "",
        "Write pause = the longest interval between consecutive acknowledgements (INSERTs and transaction COMMITs, all clients) that overlaps the POST /switchover call; slowest write = the longest latency of an INSERT in flight during the call; first write = from the POST to the first INSERT acknowledged by the new primary. Median / p99 / max over the runs.",
        "",
        "| runs | write pause ms | hold_ms | slowest write ms | first write ms | duration_ms | repointed ms (median / max) | promoted | client errors (INSERTs / transactions) | SQLSTATEs | transactions committed | lost / doubled acknowledged writes | other CPU (median / max) |",
        "|--:|--:|--:|--:|--:|--:|--:|---|--:|---|--:|--:|--:|",
        `| ${r.length} | ${triple(nums(r.map((x) => x.gapMs)))} | ${triple(nums(r.map((x) => x.holdMs)))} | ${triple(nums(r.map((x) => x.slowestWriteMs)))} | ${triple(nums(r.map((x) => x.firstWriteMs)))} | ${triple(nums(r.map((x) => x.durationMs)))} | ${repointed(r)} | ${promoted(r)} | ${sum(r, (x) => x.errors.filter((e) => e.source === "write").length)} / ${sum(r, (x) => x.errors.filter((e) => e.source === "tx").length)} | ${codes(r.flatMap((x) => x.errors))} | ${fmt(sum(r, (x) => x.txCommitted))} | ${sum(r, (x) => x.missing.length)} / ${sum(r, (x) => x.duplicated.length)} (of ${fmt(sum(r, (x) => x.acked + x.txCommitted))}) | ${otherCpu(r)} |`,
        "",
      );
    }
  }

  // Targets (issue 4 and the shared HA notes).
  const verdict = (ok: boolean | null) => (ok === null ? "not measured" : ok ? "**met**" : "**missed**");
  const loaded1 = crash.filter((s) => s.interval === 1 && s.load !== "idle").flatMap(runsOf);
  const idle1 = crash.filter((s) => s.interval === 1 && s.load === "idle").flatMap(runsOf);
  const crashAll = crash.flatMap(runsOf);
  const swRuns = sw ? runsOf(sw) : [];
  const p99First1 = pct(loaded1.map((x) => x.firstWriteMs), 99);
  const p99Idle1 = pct(nums(idle1.map((x) => x.writableMs)), 99);
  const lost = sum(all, (x) => x.missing.length);
  const doubled = sum(all, (x) => x.duplicated.length);
  const swErrors = sum(swRuns, (x) => x.errors.length);
  const swGap = pct(nums(swRuns.map((x) => x.gapMs)), 99);
  const swHold = pct(nums(swRuns.map((x) => x.holdMs)), 99);
  const rpAll = nums(all.flatMap((x) => x.repointMs));
  const rpMax = rpAll.length ? Math.max(...rpAll) : NaN;
  const during = phase(crashAll, "during failover");
  lines.push(
    "### Targets",
    "",
    "| target | measured | verdict |",
    "|---|---|---|",
    `| crash failover under load: first write < 2 s p99 with 1 s probes | p99 ${ms(p99First1)} ms over ${loaded1.length} runs (busy and sparse) | ${verdict(loaded1.length ? p99First1 < 2000 : null)} |`,
    `| the same bound with no traffic (detection by probes alone): writable < 2 s p99 with 1 s probes | p99 ${ms(p99Idle1)} ms over ${idle1.length} runs | ${verdict(idle1.length ? p99Idle1 < 2000 : null)} |`,
    `| 0 lost acknowledged commits (and 0 doubled) | ${lost} lost, ${doubled} doubled over ${all.length} runs | ${verdict(all.length ? lost === 0 && doubled === 0 : null)} |`,
    `| autocommit statements issued during a failover are held and succeed | ${during} errors for statements sent after the controller started; ${phase(crashAll, "before failover")} for statements sent in the moment between the kill and the start (they reached a server connection that had just died); ${phase(crashAll, "in flight")} for statements in flight at the kill | ${verdict(crashAll.length ? during === 0 : null)} |`,
    `| planned switchover: 0 client errors | ${swErrors} over ${swRuns.length} runs | ${verdict(swRuns.length ? swErrors === 0 : null)} |`,
    `| planned switchover: pause < 1 s p99 | write pause p99 ${ms(swGap)} ms, hold_ms p99 ${ms(swHold)} ms | ${verdict(swRuns.length ? swGap < 1000 && swHold < 1000 : null)} |`,
    `| standbys repointed < 1 s | max ${ms(rpMax)} ms over ${rpAll.length} repoints${all.some((x) => !x.repointOk) ? "; some failed" : ""} | ${verdict(rpAll.length ? rpMax < 1000 && all.every((x) => x.repointOk) : null)} |`,
    "",
    "For comparison: a client connected straight to the primary, or through PgBouncer (which does no failover), never gets its writes back after the kill: it keeps failing to connect to the dead address until someone reconfigures it or moves the address.",
  );
  lines.push("", ...reading(crash, runsOf, swRuns));

  // Per-run detail.
  lines.push(
    "",
    "<details><summary>Every run</summary>",
    "",
    "| scenario | run | first write ms | writable ms | detection ms | duration_ms | hold_ms | repointed ms | write pause ms | promoted | errors (sent ms after the event: SQLSTATE) | buffer released / refused | acknowledged | other CPU | controller steps (ms from its start) |",
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|--:|--:|--:|---|",
  );
  for (const s of scenarios) {
    for (const x of runsOf(s)) {
      const steps = x.steps.map((st) => `${fmt(st.at_ms)} ${st.step.replace(/\|/g, "/")}`).join("; ");
      const errs = x.errors.map((e) => `${fmt(e.sentMs, 1)}: ${e.code}`).join(", ") || "—";
      const opt = (v: number | null) => (v === null || !Number.isFinite(v) ? "—" : ms(v));
      lines.push(
        `| ${s.id} | ${x.run + 1} | ${opt(x.firstWriteMs)} | ${opt(x.writableMs)} | ${opt(x.detectMs)} | ${opt(x.durationMs)} | ${opt(x.holdMs)} | ${x.repointMs.map((v) => (v === null ? "failed" : ms(v))).join(", ") || "none"} | ${opt(x.gapMs)} | ${x.to ?? "none"} (${x.result}) | ${errs} | ${x.bufferReleased} / ${x.bufferRefused} | ${fmt(x.acked + x.txCommitted)} | ${pctOf(x.otherCpu)} | ${steps} |`,
      );
    }
  }
  lines.push("", "</details>", "");
  lines.push(
    failed.length === 0
      ? "Every run completed (none failed and had to be repeated)."
      : `Runs that failed and were repeated (${failed.length}):\n\n${failed.map((f) => `- ${f.scenario} run ${f.run + 1}: ${f.message.replace(/`/g, "'")}`).join("\n")}`,
  );
  const messages = [...new Set(all.flatMap((x) => x.errors.map((e) => `${e.code}: ${e.message}`)))];
  if (messages.length > 0) lines.push("", "Client error messages seen:", "", ...messages.slice(0, 12).map((m) => `- \`${m.replace(/`/g, "'")}\``));
  return lines.join("\n");
}

/** Milliseconds between two controller steps (first matches), or NaN. */
function stepGap(r: Run, from: RegExp, to: RegExp): number {
  const a = r.steps.find((x) => from.test(x.step));
  const b = r.steps.find((x) => to.test(x.step));
  return a && b ? b.at_ms - a.at_ms : NaN;
}

/** How to read this run's numbers: where the time goes and what the errors were, from the runs themselves. */
function reading(crash: Scenario[], runsOf: (s: Scenario) => Run[], swRuns: Run[]): string[] {
  const out: string[] = ["### Reading it", ""];
  const loaded = crash.filter((s) => s.load !== "idle").flatMap(runsOf);
  const idle = (interval: number) => crash.filter((s) => s.load === "idle" && s.interval === interval).flatMap(runsOf);
  const crashAll = crash.flatMap(runsOf);
  if (loaded.length > 0) {
    const promote = median(nums(loaded.map((r) => stepGap(r, /^candidate /, / promoted$/))));
    const byInterval = (i: number) => median(loaded.filter((r) => crash.find((s) => s.id === r.scenario)?.interval === i).map((r) => r.firstWriteMs));
    out.push(
      `- **Under load the probe interval hardly matters** (median first write ${ms(byInterval(1))} ms with 1 s probes, ${ms(byInterval(0.25))} ms with 0.25 s). A client's next request after the kill finds its server connection gone, the proxy's new connect is refused, and that failed connect makes the proxy probe the primary at once (or 0.2 s after the previous probe started, if that was more recent); the primary is declared down after failure_threshold = 3 failed probes at least confirm_interval_secs = 0.2 s apart. So detection (median ${ms(median(nums(loaded.map((r) => r.detectMs))))} ms, min ${ms(Math.min(...nums(loaded.map((r) => r.detectMs))))} ms) is those 0.4 s plus up to 0.2 s. The controller then takes ~${ms(median(nums(loaded.map((r) => r.durationMs))))} ms, nearly all of it pg_promote() (median ${ms(promote)} ms from choosing the candidate to the promoted standby answering out of recovery).`,
      "- **Sparse load is no slower than busy**: a sparse client's next write comes at most 200 ms after the kill and gives the same signal (a refused connect) as a busy client's. Detection by the scheduled probes alone happens only when no request reaches the dead primary — the runs without traffic.",
    );
  }
  const i1 = nums(idle(1).map((r) => r.writableMs));
  const i25 = nums(idle(0.25).map((r) => r.writableMs));
  if (i1.length > 0 || i25.length > 0) {
    out.push(
      `- **With no traffic the probe interval is the difference**: the first miss comes at the next scheduled probe, anywhere in one interval after the kill, then two confirmations 0.2 s apart and the promotion. Writable after ${i1.length ? `${ms(Math.min(...i1))}–${ms(Math.max(...i1))} ms with 1 s probes` : "n/a"}${i25.length ? `, ${ms(Math.min(...i25))}–${ms(Math.max(...i25))} ms with 0.25 s probes` : ""} (the runs spread the kill over the probe cycle).`,
    );
  }
  if (crashAll.length > 0) {
    const errs = crashAll.flatMap((r) => r.errors);
    const before = errs.filter((e) => e.phase === "before failover");
    const during = errs.filter((e) => e.phase === "during failover");
    const latest = before.length ? Math.max(...before.map((e) => e.sentMs)) : NaN;
    out.push(
      during.length === 0
        ? `- **Client errors** (${errs.length} over ${crashAll.length} crash runs; ${codes(errs)}) all belong to statements that reached the killed server: in flight at the kill, or sent${before.length ? ` at most ${fmt(latest, 1)} ms` : ""} after it and forwarded on a server connection the proxy did not yet know was dead.${errs.some((e) => e.code === "08006") ? " 08006 is the proxy's `server connection lost while serving this client`." : ""}${errs.some((e) => e.code === "57P01") ? " 57P01 (`terminating connection due to unexpected postmaster exit`) is relayed from a backend that saw the postmaster go first." : ""}${errs.some((e) => e.code !== "08006" && e.code !== "57P01") ? " Other codes are listed below." : ""} No statement sent after the controller started failed: those waited in the switchover buffer (\`buffer released\` in the runs) and ran on the new primary. Answering the in-flight ones without an error would need the transaction journal and replay, which this bench does not exercise.`
        : `- **Client errors**: ${errs.length} over ${crashAll.length} crash runs (${codes(errs)}); ${during.length} of them for statements sent after the controller started, which should have waited in the switchover buffer — see the runs above.`,
    );
    const async = crashAll.filter((r) => r.to !== null && r.candidates.find((c) => c.name === r.to)?.sync === false);
    if (async.length > 0) {
      const ahead = async.map((r) => {
        const [a, b] = [r.candidates.find((c) => c.name === r.to), r.candidates.find((c) => c.sync)];
        return a?.position != null && b?.position != null ? a.position - b.position : NaN;
      });
      out.push(
        `- **The async standby was promoted in ${async.length} of ${crashAll.length} crash runs** (${[...new Set(async.map((r) => r.scenario))].join(", ")}): at the kill it had received ${nums(ahead).map((x) => fmt(x)).join(", ")} bytes more WAL than the sync standby, and candidates are ranked by WAL position first (the sync standby wins ties). The sync standby was then repointed to it and the ledger held in those runs too.`,
      );
    }
  }
  if (swRuns.length > 0) {
    const fence = median(nums(swRuns.map((r) => stepGap(r, /^open transactions finished/, /^old primary fenced/))));
    const promote = median(nums(swRuns.map((r) => stepGap(r, /has received all WAL$/, / promoted$/))));
    const errors = sum(swRuns, (r) => r.errors.length);
    out.push(
      `- **Switchover**: the pause is the controller's whole run (median ${ms(median(nums(swRuns.map((r) => r.durationMs))))} ms): open transactions finish, CHECKPOINT and the soft fence of the old primary (median ${ms(fence)} ms), the check that the target has all WAL, then pg_promote() (median ${ms(promote)} ms). New requests wait in the buffer meanwhile${errors === 0 ? "; no client saw an error, and the transaction client's open transactions finished on the old primary before the fence" : `; ${errors} client errors — see the runs above`}.`,
    );
  }
  return out;
}

function sum<T>(xs: T[], f: (x: T) => number): number {
  return xs.reduce((a, x) => a + f(x), 0);
}

// ---- main ------------------------------------------------------------------------------------

const o = parseArgs(process.argv.slice(2));
const scenarios = SCENARIOS.filter((s) => o.only === null || o.only.includes(s.id));
const started = new Date().toISOString().replace(/\.\d+Z$/, "Z");
const t0 = performance.now();
const loadStart = loadavg();
const busyBefore = cpuBusy(2000);
console.log(`CPU busy before start: ${fmt(busyBefore * 100)}% (load average ${loadStart})`);
const results = new Map<string, Run[]>();
const failed: FailedRun[] = [];
for (const s of scenarios) {
  for (let i = 0; i < o.runs; i++) {
    let r: Run | null = null;
    for (let attempt = 1; r === null; attempt++) {
      try {
        r = s.kind === "crash" ? await crashRun(s, i, o.runs) : await switchoverRun(s, i, o.runs);
      } catch (e) {
        // Reported in the results (whatever failed: the cluster, the proxy or the failover), then the run is repeated.
        const message = (e as Error).message.split("\n")[0]!.slice(0, 300);
        failed.push({ scenario: s.id, run: i, message });
        console.error(`${s.id} run ${i + 1} attempt ${attempt} failed: ${message}`);
        if (attempt >= 3) throw e;
      }
    }
    results.set(s.id, [...(results.get(s.id) ?? []), r]);
    console.log(
      `${s.id.padEnd(20)} run ${i + 1}: first write ${ms(r.firstWriteMs)} ms, writable ${ms(r.writableMs ?? NaN)} ms${r.detectMs !== null ? `, detect ${ms(r.detectMs)} ms` : ""}, duration ${r.durationMs} ms, hold ${r.holdMs} ms, repoint ${r.repointMs.join(",")} ms${r.gapMs !== null ? `, pause ${ms(r.gapMs)} ms` : ""}, ${r.from}->${r.to} ${r.result}, errors ${r.errors.map((e) => `${e.phase} ${e.code}`).join(", ") || "none"}, lost ${r.missing.length}, doubled ${r.duplicated.length}, acked ${r.acked + r.txCommitted}, other CPU ${Math.round(r.otherCpu * 100)}%`,
    );
  }
}
const md = report(o, scenarios, results, failed, {
  busyBefore,
  busyAfter: cpuBusy(2000),
  loadStart,
  loadEnd: loadavg(),
  minutes: (performance.now() - t0) / 60000,
  pgVersion,
  started,
});
console.log("\n" + md);
if (o.json) writeFileSync(o.json, JSON.stringify({ started, command: commandLine("bench/failover.ts"), commit: codeVersion(), runs: Object.fromEntries(results), failed }, null, 2));
if (o.doc) updateDoc("failover", md);
