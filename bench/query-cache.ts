// Query cache: hit latency (proxy-side and end to end vs direct), hot-set throughput vs direct and PgBouncer, overhead when nothing is cacheable, Zipf hit ratio and RSS; writes docs/benchmarks.md.
//
//   bun bench/query-cache.ts [--quick] [--rounds N] [--duration SECS] [--scale N] [--db NAME] [--tpcb-scale N] [--tpcb-rounds N] [--no-doc] [--note TEXT]

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  PG,
  type PgbenchResult,
  type Proc,
  type RoundsOptions,
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
  startHelios,
  startPgbouncer,
  unsetRounds,
  updateDoc,
} from "./lib.ts";

interface Options extends RoundsOptions {
  scale: number;
  db: string;
  latencyQueries: number;
  tpcbScale: number;
  tpcbRounds: number;
}

function usage(exitCode = 0): never {
  console.log(`usage: bun bench/query-cache.ts [options]
  --quick            1 s runs, 1 round, fewer latency samples (development; numbers are rough)
  --rounds N         interleaved rounds; the median of each cell is reported (default 3)
  --duration SECS    pgbench -T per run (default 10)
  --scale N          pgbench scale of the bench database (default 1: 100,000 accounts)
  --db NAME          bench database (default helios_cache_bench; created and initialised if needed)
  --tpcb-scale N     pgbench scale of the tpcb (nothing cacheable) database, helios_cache_bench_tpcb (default 10:
                     at least the client count, as pgbench's documentation asks, else it measures update contention)
  --tpcb-rounds N    interleaved cache off/on tpcb rounds; the median of the per-round ratios is reported (default 7)
  --no-doc           print only; do not update docs/benchmarks.md
  --note TEXT        a note recorded with the results`);
  process.exit(exitCode);
}

const o: Options = { ...unsetRounds(), scale: 1, db: "helios_cache_bench", latencyQueries: 20_000, tpcbScale: 10, tpcbRounds: 7 };
const rounds = roundsFlags(o);
parseFlags(process.argv.slice(2), usage, {
  ...rounds,
  "--scale": (v) => (o.scale = Number(v())),
  "--db": (v) => (o.db = v()),
  "--tpcb-scale": (v) => (o.tpcbScale = Number(v())),
  "--tpcb-rounds": (v) => (o.tpcbRounds = Number(v())),
});
settleRounds(o, 1, 10);
if (o.quick) {
  o.latencyQueries = 2000;
  o.tpcbRounds = 1;
}
const TPCB_DB = "helios_cache_bench_tpcb";

const CACHE_ON = (l1: number) => `[query_cache]\nl1_max_bytes = ${l1}\nl2_max_bytes = 0\nttl_secs = 3600\n`;
const LARGE_L1 = 256 * 1024 * 1024;

/** pgbench script files for the custom workloads. */
const scripts = mkdtempSync(join(tmpdir(), "helios-bench-cache-"));
const HOT = join(scripts, "hot.sql");
writeFileSync(HOT, "\\set aid random(1, 1000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n");
const ZIPF = join(scripts, "zipf.sql");
writeFileSync(ZIPF, `\\set aid random_zipfian(1, ${100_000 * o.scale}, 1.1)\nSELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE aid = :aid;\n`);

// ---- hit latency: one client, one cached point select, raw protocol -------------------------

/** A raw protocol client: trust login, then simple Queries timed one by one. */
async function rawLatencies(port: number, sql: string, n: number): Promise<number[]> {
  const enc = new TextEncoder();
  const msg = (type: string, body: Uint8Array) => {
    const out = new Uint8Array(5 + body.length);
    out[0] = type.charCodeAt(0);
    new DataView(out.buffer).setInt32(1, 4 + body.length);
    out.set(body, 5);
    return out;
  };
  const params = enc.encode(`user\0${PG.user}\0database\0${o.db}\0\0`);
  const startup = new Uint8Array(8 + params.length);
  new DataView(startup.buffer).setInt32(0, startup.length);
  new DataView(startup.buffer).setInt32(4, 196608);
  startup.set(params, 8);
  const query = msg("Q", enc.encode(sql + "\0"));
  let buf = new Uint8Array(0);
  let waiter: (() => void) | null = null;
  const sock = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, chunk) {
        const next = new Uint8Array(buf.length + chunk.length);
        next.set(buf);
        next.set(chunk, buf.length);
        buf = next;
        waiter?.();
      },
    },
  });
  /** Wait until a ReadyForQuery has arrived; drop everything through it. */
  const untilReady = async () => {
    for (;;) {
      let pos = 0;
      while (pos + 5 <= buf.length) {
        const len = new DataView(buf.buffer, buf.byteOffset + pos + 1, 4).getInt32(0);
        if (pos + 1 + len > buf.length) break;
        if (buf[pos] === 90) {
          buf = buf.slice(pos + 1 + len);
          return;
        }
        if (buf[pos] === 69) throw new Error(`server error: ${new TextDecoder().decode(buf.subarray(pos + 5, pos + 1 + len))}`);
        pos += 1 + len;
      }
      await new Promise<void>((r) => (waiter = r));
      waiter = null;
    }
  };
  sock.write(startup);
  await untilReady();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    sock.write(query);
    await untilReady();
    times.push((performance.now() - t) * 1000);
  }
  sock.end();
  return times;
}

const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};

type Json = Record<string, any>;
const cacheOf = async (p: { adminPort: number }): Promise<Json> => (await fetch(`http://127.0.0.1:${p.adminPort}/cache?top=1`)).json() as Promise<Json>;

// ---- main ---------------------------------------------------------------------------------

const startedAt = Date.now();
ensurePgbenchDatabase(o.db, o.scale);
ensurePgbenchDatabase(TPCB_DB, o.tpcbScale);
const machine = machineInfo();
const lines: string[] = [];
const say = (s: string) => {
  console.log(s);
  lines.push(s);
};

// 1. Hit latency.
const POINT = "SELECT aid, bid, abalance FROM pgbench_accounts WHERE aid = 42";
const latency: { target: string; p50: number; p99: number }[] = [];
let proxySide: Json = {};
{
  const cached = await startHelios({ toml: CACHE_ON(LARGE_L1) });
  const plain = await startHelios({});
  try {
    for (const [target, port] of [["direct", PG.port], ["proxy, no cache", plain.port], ["proxy, cache", cached.port]] as const) {
      await rawLatencies(port, POINT, Math.min(500, o.latencyQueries));
      const t = await rawLatencies(port, POINT, o.latencyQueries);
      latency.push({ target, p50: pct(t, 0.5), p99: pct(t, 0.99) });
    }
    proxySide = (await cacheOf(cached)).hit_us as Json;
  } finally {
    await cached.stop();
    await plain.stop();
  }
}

// 2. Hot-set throughput, interleaved rounds.
interface Target {
  id: string;
  label: string;
  proc: Proc | null;
}
// Idle servers go after 1 s, so the poolers' connections do not count against PostgreSQL's
// max_connections while the direct clients (-c 50) run.
const IDLE = "idle_timeout_secs = 1";
const helios = await startHelios({ maxConnections: 20, poolExtra: IDLE, toml: CACHE_ON(LARGE_L1) });
const heliosOff = await startHelios({ maxConnections: 20, poolExtra: IDLE });
let bouncer: Proc | null = null;
try {
  bouncer = await startPgbouncer({ poolSize: 20, serverIdleTimeout: 1 });
} catch (e) {
  console.log(`PgBouncer left out: ${(e as Error).message}`);
}
const targets: Target[] = [
  { id: "direct", label: "direct", proc: null },
  ...(bouncer ? [{ id: "pgbouncer", label: "PgBouncer", proc: bouncer }] : []),
  { id: "off", label: "HeliosProxy, cache off", proc: heliosOff },
  { id: "on", label: "HeliosProxy, cache on", proc: helios },
];
const portOf = (t: Target) => (t.proc === null ? PG.port : t.proc.port);
const results = new Map<string, PgbenchResult[]>();
const record = (k: string, r: PgbenchResult) => (results.get(k) ?? results.set(k, []).get(k)!).push(r);
const WORKLOADS = [
  { id: "hot-simple", args: ["-n", "-f", HOT, "-M", "simple", "-c", "50", "-j", "2"], targets: ["direct", "pgbouncer", "off", "on"] },
  { id: "hot-extended", args: ["-n", "-f", HOT, "-M", "extended", "-c", "50", "-j", "2"], targets: ["direct", "pgbouncer", "off", "on"] },
];
let rssOn = 0;
try {
  // Warm the cache and the JIT.
  await runPgbench(["-n", "-f", HOT, "-M", "simple", "-c", "10", "-j", "2", "-T", "1"], helios.port, o.db);
  await runPgbench(["-n", "-f", HOT, "-M", "extended", "-c", "10", "-j", "2", "-T", "1"], helios.port, o.db);
  for (let round = 1; round <= o.rounds; round++) {
    for (const w of WORKLOADS) {
      const ts = targets.filter((t) => w.targets.includes(t.id));
      const k = round % ts.length;
      for (const t of [...ts.slice(k), ...ts.slice(0, k)]) {
        if (t.id === "direct") await Bun.sleep(2500); // the poolers' idle servers close first
        const r = await runPgbench([...w.args, "-T", String(o.duration)], portOf(t), o.db);
        record(`${w.id}/${t.id}`, r);
        say(`round ${round} ${w.id.padEnd(13)} ${t.label.padEnd(24)} ${fmt(r.tps).padStart(8)} tps${r.exitCode !== 0 || r.abortedClients > 0 ? ` ✗ ${r.firstError}` : ""}`);
      }
    }
  }
  rssOn = memKb(helios.pid).rss / 1024;
} finally {
  await helios.stop();
  await heliosOff.stop();
  await bouncer?.stop();
}
const tps = (k: string) => median((results.get(k) ?? []).map((r) => r.tps));

// 3. Overhead when nothing is cacheable: pgbench tpcb, cache off and on side by side in each round
// (the order alternating), the ratio taken within the round: tps drifts between rounds more than
// the difference measured.
const tpcb: { off: number; on: number }[] = [];
{
  const on = await startHelios({ maxConnections: 20, toml: CACHE_ON(LARGE_L1) });
  const off = await startHelios({ maxConnections: 20 });
  try {
    const args = ["-n", "-c", "10", "-j", "2"];
    for (const p of [off, on]) await runPgbench([...args, "-T", "2"], p.port, TPCB_DB); // JIT and pools warm
    for (let round = 1; round <= o.tpcbRounds; round++) {
      const got: Record<string, number> = {};
      for (const [id, p] of round % 2 === 0 ? [["on", on], ["off", off]] as const : [["off", off], ["on", on]] as const) {
        const r = await runPgbench([...args, "-T", String(o.duration)], p.port, TPCB_DB);
        if (r.exitCode !== 0 || r.failed > 0) throw new Error(`pgbench tpcb failed: ${r.firstError}`);
        got[id] = r.tps;
      }
      tpcb.push({ off: got.off!, on: got.on! });
      say(`round ${round} tpcb          off ${fmt(got.off!)} tps, on ${fmt(got.on!)} tps, ratio ${fmt(got.on! / got.off!, 3)}`);
    }
  } finally {
    await on.stop();
    await off.stop();
  }
}
const tpcbRatios = tpcb.map((r) => r.on / r.off);

// 4. Zipf reads at three cache sizes: hit ratio and RSS.
const zipf: { l1: number; ratio: number; rssMb: number; bytes: number; tps: number }[] = [];
for (const l1 of [1 << 20, 8 << 20, 64 << 20]) {
  const p = await startHelios({ maxConnections: 20, toml: CACHE_ON(l1) });
  try {
    const r = await runPgbench(["-n", "-f", ZIPF, "-M", "extended", "-c", "20", "-j", "2", "-T", String(Math.max(o.duration, 1))], p.port, o.db);
    const c = await cacheOf(p);
    zipf.push({ l1, ratio: c.hit_ratio, rssMb: memKb(p.pid).rss / 1024, bytes: c.tiers.l1.bytes, tps: r.tps });
  } finally {
    await p.stop();
  }
}

// ---- report -------------------------------------------------------------------------------

const md = [
  ...sectionHead("Query cache", "bench/query-cache.ts", machine, startedAt, o.note),
  "",
  `Hit latency, one client, \`${POINT}\` repeated (${o.latencyQueries} queries, raw protocol, simple Query):`,
  "",
  "| target | p50 µs | p99 µs |",
  "|---|---|---|",
  ...latency.map((l) => `| ${l.target} | ${fmt(l.p50, 1)} | ${fmt(l.p99, 1)} |`),
  "",
  `Proxy-side time of a hit (onQuery start to reply built, recent ${proxySide.samples ?? 0} hits): p50 ${fmt(proxySide.p50 ?? NaN, 1)} µs, p99 ${fmt(proxySide.p99 ?? NaN, 1)} µs (target p50 ≤ 50 µs).`,
  "",
  `Hot set (1,000 keys, \`SELECT abalance ... WHERE aid = :aid\`), pgbench -c 50, cache warm, median of ${o.rounds} round(s) of ${o.duration} s (tps):`,
  "",
  "| workload | direct | PgBouncer | proxy, cache off | proxy, cache on | on / direct (≥ 1.5) | on / PgBouncer (≥ 2) |",
  "|---|---|---|---|---|---|---|",
  ...["hot-simple", "hot-extended"].map(
    (w) =>
      `| ${w} | ${fmt(tps(`${w}/direct`))} | ${fmt(tps(`${w}/pgbouncer`))} | ${fmt(tps(`${w}/off`))} | ${fmt(tps(`${w}/on`))} | ${fmt(tps(`${w}/on`) / tps(`${w}/direct`), 2)} | ${fmt(tps(`${w}/on`) / tps(`${w}/pgbouncer`), 2)} |`,
  ),
  "",
  `Nothing cacheable (pgbench tpcb -c 10 -j 2 at scale ${o.tpcbScale}, ${o.tpcbRounds} round(s) of ${o.duration} s, cache off and on side by side in each round): median tps off ${fmt(median(tpcb.map((r) => r.off)))}, on ${fmt(median(tpcb.map((r) => r.on)))}; **on / off ${fmt(median(tpcbRatios), 3)}** (median of the per-round ratios ${tpcbRatios.map((x) => fmt(x, 3)).join(", ")}; target ≥ 0.97). RSS of the cache-on proxy after the hot-set runs: ${fmt(rssOn)} MB.`,
  "",
  `Zipf reads (s = 1.1 over ${100_000 * o.scale} accounts, -c 20, ${Math.max(o.duration, 1)} s) at three L1 sizes (no L2):`,
  "",
  "| L1 bytes | hit ratio | L1 bytes used | RSS MB | tps |",
  "|---|---|---|---|---|",
  ...zipf.map((z) => `| ${z.l1} | ${fmt(z.ratio, 3)} | ${z.bytes} | ${fmt(z.rssMb)} | ${fmt(z.tps)} |`),
];
console.log(md.join("\n"));
if (o.doc) updateDoc("query-cache", md.join("\n"));
