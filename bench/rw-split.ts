// pgbench -S through HeliosProxy with read/write split over primary + 2 standbys vs primary only (split off), same run, interleaved; writes docs/benchmarks.md.
//
//   bun bench/rw-split.ts [--quick] [--rounds N] [--duration SECS] [--clients N] [--scale N] [--modes simple,prepared] [--no-doc] [--note TEXT]

import { readFileSync } from "node:fs";
import { parseConfig } from "../src/config/load.ts";
import { startProxy, type RunningProxy } from "../src/proxy.ts";
import { DevCluster } from "../src/devcluster/cluster.ts";
import { freePort } from "../src/devcluster/pg-bin.ts";
import { codeVersion, commandLine, fmt, median, parseFlags, pgbenchInit, roundsFlags, runPgbench, settleRounds, sh, unsetRounds, updateDoc, type PgbenchResult, type RoundsOptions } from "./lib.ts";
import { configureLogging } from "../src/util/log.ts";
import { configText } from "../test/support/proxy.ts";

interface Options extends RoundsOptions {
  clients: number;
  scale: number;
  modes: string[];
}

function usage(exitCode = 0): never {
  console.log(`usage: bun bench/rw-split.ts [options]
  --quick              3 s runs, 1 round (development; numbers are rough)
  --rounds N           interleaved rounds; medians are reported (default 3)
  --duration SECS      pgbench -T per run (default 10)
  --clients N          pgbench -c (default 20)
  --scale N            pgbench scale of the bench database (default 10)
  --modes LIST         pgbench -M modes (default simple,prepared)
  --no-doc             print only; do not update docs/benchmarks.md
  --note TEXT          a note recorded with the results`);
  process.exit(exitCode);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { ...unsetRounds(), clients: 20, scale: 10, modes: ["simple", "prepared"] };
  parseFlags(argv, usage, {
    ...roundsFlags(o),
    "--clients": (v) => (o.clients = Number(v())),
    "--scale": (v) => (o.scale = Number(v())),
    "--modes": (v) => (o.modes = v().split(",")),
  });
  settleRounds(o, 3, 10);
  return o;
}

type Target = "direct" | "off" | "split";
const LABEL: Record<Target, string> = {
  direct: "direct to the primary (reference)",
  off: "HeliosProxy, split off (all on the primary)",
  split: "HeliosProxy, split on (reads over 2 standbys)",
};

interface Run extends PgbenchResult {
  /** CPU of this process (the in-process proxy) per transaction, µs. */
  cpuPerTx: number;
  /** Classifier cache hits and misses during the run, and parse time per miss (µs). */
  hits: number;
  misses: number;
  parseUsPerMiss: number;
  /** Share of the requests each node served (primary, sync, async), from the proxy's pool counters. */
  perNode: number[];
}

function proxyToml(cluster: DevCluster, port: number, adminPort: number, split: boolean): string {
  const nodes = [cluster.primary(), ...cluster.standbys()];
  return configText(port, adminPort, {
    maxConnections: 20,
    nodes: [],
    toml: [
      "[health]",
      "check_interval_secs = 1",
      "[load_balancer]",
      `strategy = "round_robin"`,
      `read_write_split = ${split}`,
      ...nodes.flatMap((n) => ["[[nodes]]", `name = "${n.name}"`, `host = "${n.host}"`, `port = ${n.port}`, `role = "${n.role}"`, `sync = ${n.sync}`]),
      "",
    ].join("\n"),
  });
}

async function start(cluster: DevCluster, split: boolean): Promise<RunningProxy> {
  const port = freePort();
  const cfg = parseConfig(proxyToml(cluster, port, freePort(), split), `rw-split-${split ? "on" : "off"}.toml`);
  return startProxy(cfg, { configPath: "" });
}

/** Requests the proxy sent to each node so far (primary first); direct: all on the primary. */
function served(cluster: DevCluster, proxy: RunningProxy | null, transactions = 0): number[] {
  const nodes = [cluster.primary(), ...cluster.standbys()];
  if (proxy === null) return nodes.map((_, i) => (i === 0 ? transactions : 0));
  const n = nodes.map(() => 0);
  for (const p of proxy.ctx.allPools()) {
    const i = nodes.findIndex((x) => x.name === p.node);
    if (i >= 0) n[i]! += p.stats.queryCount;
  }
  return n;
}

async function measure(cluster: DevCluster, target: Target, port: number, proxy: RunningProxy | null, mode: string, o: Options): Promise<Run> {
  const stats0 = proxy ? { ...proxy.ctx.classifier.stats } : null;
  const cpu0 = process.cpuUsage();
  const c0 = served(cluster, proxy);
  const args = ["-n", "-S", "-M", mode, "-c", String(o.clients), "-j", "2", "-T", String(o.duration)];
  const r = await runPgbench(args, port, "bench");
  const cpu = process.cpuUsage(cpu0);
  const c1 = served(cluster, proxy, r.transactions);
  const deltas = c1.map((v, i) => Math.max(0, v - c0[i]!));
  const total = deltas.reduce((a, b) => a + b, 0) || 1;
  const s = proxy?.ctx.classifier.stats;
  const hits = s && stats0 ? s.hits - stats0.hits : 0;
  const misses = s && stats0 ? s.misses - stats0.misses : 0;
  return {
    ...r,
    cpuPerTx: target !== "direct" && r.transactions > 0 ? (cpu.user + cpu.system) / r.transactions : NaN,
    hits,
    misses,
    parseUsPerMiss: s && stats0 && misses > 0 ? (s.parseUs - stats0.parseUs) / misses : NaN,
    perNode: deltas.map((d) => d / total),
  };
}

const o = parseArgs(process.argv.slice(2));
configureLogging("warn");
const started = performance.now();
console.log("building the cluster (primary + sync standby + async standby) ...");
const cluster = await DevCluster.create();
process.on("SIGINT", () => void cluster.destroy().then(() => process.exit(130)));
try {
  await cluster.createDatabase("bench");
  pgbenchInit("bench", o.scale, { host: "127.0.0.1", port: cluster.primary().port, user: "postgres" });
  await cluster.setup("VACUUM ANALYZE", "bench");
  const off = await start(cluster, false);
  const split = await start(cluster, true);
  const ports: Record<Target, number> = { direct: cluster.primary().port, off: off.port, split: split.port };
  const proxies: Record<Target, RunningProxy | null> = { direct: null, off, split };
  const targets: Target[] = ["direct", "off", "split"];
  const results = new Map<string, Run[]>();
  // Warm-up: pools and the standbys' caches.
  for (const t of targets) await runPgbench(["-n", "-S", "-c", String(o.clients), "-j", "2", "-T", "2"], ports[t], "bench");
  for (let round = 0; round < o.rounds; round++) {
    for (const mode of o.modes) {
      const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
      for (const t of order) {
        const r = await measure(cluster, t, ports[t], proxies[t], mode, o);
        const key = `${mode}\u0000${t}`;
        results.set(key, [...(results.get(key) ?? []), r]);
        console.log(`round ${round + 1} -M ${mode} ${t.padEnd(6)} ${fmt(r.tps)} tps, ${r.latencyMs} ms, failed ${r.failed}${r.firstError ? ` (${r.firstError})` : ""}`);
      }
    }
  }
  await off.stop();
  await split.stop();
  report(results, targets, (performance.now() - started) / 60000, await cluster.primary().psql("SHOW server_version"));
} finally {
  await cluster.destroy();
}

function report(results: Map<string, Run[]>, targets: Target[], minutes: number, pgVersion: string): void {
  const m = (runs: Run[], f: (r: Run) => number) => median(runs.map(f));
  const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : "n/a");
  const lines: string[] = [
    "## Read/write split: pgbench -S over primary + 2 standbys vs primary only",
    "",
    "`bun bench/rw-split.ts` builds its own cluster with src/devcluster (it needs the PostgreSQL server binaries, not the server on 5432) and removes it afterwards. Options: `--quick` (3 s, 1 round), `--rounds N` (default 3), `--duration SECS` (default 10), `--clients N` (default 20), `--scale N` (default 10), `--modes simple,prepared`, `--no-doc`, `--note TEXT`.",
    "",
    "```",
    commandLine("bench/rw-split.ts"),
    "```",
    "",
    `- Date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}; HeliosProxy code: commit ${codeVersion()}`,
    `- Machine: ${sh(["nproc"]).out.trim()} CPUs, Linux ${sh(["uname", "-r"]).out.trim()}; load average at end: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
    `- Versions: Bun ${Bun.version}; PostgreSQL ${pgVersion}; ${sh(["pgbench", "--version"]).out.trim()}`,
    `- Setup: a local cluster built by src/devcluster (primary, sync standby, async standby; fsync off) on the same machine; pgbench scale ${o.scale}; \`pgbench -n -S -c ${o.clients} -j 2 -T ${o.duration}\`; ${o.rounds} interleaved round(s), target order rotated each round, medians shown. Both proxies run in this script's process (transaction pooling, max_connections 20 per pool, round_robin, health checks every 1 s) with the same three [[nodes]]; they differ only in \`read_write_split\`. Wall time ${minutes.toFixed(1)} min.`,
    ...(o.note ? [`- Note: ${o.note}`] : []),
    ...(o.quick ? ["- **Quick run** (`--quick`): short runs, one round; indicative only."] : []),
    "",
    "| -M | target | TPS | avg latency ms | failed | share primary / sync / async | proxy CPU µs/tx | classifier hits / misses | parse µs per miss |",
    "|---|---|--:|--:|--:|---|--:|---|--:|",
  ];
  for (const mode of o.modes) {
    for (const t of targets) {
      const runs = results.get(`${mode}\u0000${t}`) ?? [];
      const share = [0, 1, 2].map((i) => pct(m(runs, (r) => r.perNode[i] ?? NaN))).join(" / ");
      const hits = runs.reduce((a, r) => a + r.hits, 0);
      const misses = runs.reduce((a, r) => a + r.misses, 0);
      lines.push(
        `| ${mode} | ${LABEL[t]} | ${fmt(m(runs, (r) => r.tps))} | ${fmt(m(runs, (r) => r.latencyMs), 3)} | ${runs.reduce((a, r) => a + r.failed + r.abortedClients, 0)} | ${share} | ${t === "direct" ? "—" : fmt(m(runs, (r) => r.cpuPerTx), 1)} | ${t === "split" ? `${fmt(hits)} / ${fmt(misses)} (${pct(hits / (hits + misses || 1))} hits)` : "not classified"} | ${t === "split" ? fmt(m(runs, (r) => r.parseUsPerMiss), 1) : "—"} |`,
      );
    }
  }
  const ratio = (mode: string) => {
    const get = (t: Target) => m(results.get(`${mode}\u0000${t}`) ?? [], (r) => r.tps);
    return get("split") / get("off");
  };
  lines.push(
    "",
    `Split on / split off: ${o.modes.map((mode) => `-M ${mode} ${fmt(ratio(mode), 2)}x`).join(", ")}. "Share" is each node's part of the requests the proxy forwarded during the run (its per-pool counters). Classifier counts are summed over rounds. The classifier is asked once per Query message and once per Parse (a Bind reuses its statement's answer), and parses each distinct text once, keyed by the text with its literals masked (LRU of 10,000): with \`-M prepared\` pgbench prepares once per connection, so there are only a few dozen classifications in a whole run; with \`-M simple\` every query carries a different literal (\`WHERE aid = 123\`) but they all share one masked key, so after the first parse every request is a cache hit. The parse cost per miss is measured over a handful of first parses.`,
    "On one machine the standbys compete for the same CPUs as the primary, pgbench and the proxy, so a split cannot add capacity here; the numbers show what routing costs, not what more servers would give.",
  );
  const md = lines.join("\n");
  console.log("\n" + md);
  if (o.doc) updateDoc("rw-split", md);
}
