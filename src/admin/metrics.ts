// Prometheus metrics for /metrics: one prom-client registry per proxy, filled from the context on each scrape.

import { Counter, Gauge, Registry } from "prom-client";
import type { ProxyContext } from "../core/context.ts";
import { isPaused } from "../core/pause.ts";
import { LATENCY_BUCKETS, LATENCY_SAMPLE_EVERY } from "../util/latency.ts";
import { transitionBugs } from "../util/state-bugs.ts";
import { buildProfile } from "../modules/index.ts";
import { pgbouncerMetrics } from "./metrics-pgbouncer.ts";
import { VERSION } from "./console-show.ts";

type Labels = Record<string, string>;

type Collector = (registry: Registry) => void;

/**
 * The process series of prom-client's default metrics: CPU, start time, memory, file descriptors.
 * Not collectDefaultMetrics(): under Bun its event-loop-lag series are nonsense (a min of ~9.2e9 s
 * and a NaN mean when nothing was sampled) and its delay monitor wakes the process every 10 ms.
 */
const PROCESS_COLLECTORS: Collector[] = [
  require("prom-client/lib/metrics/processCpuTotal"),
  require("prom-client/lib/metrics/processStartTime"),
  require("prom-client/lib/metrics/osMemoryHeap"),
  require("prom-client/lib/metrics/processOpenFileDescriptors"),
  require("prom-client/lib/metrics/processMaxFileDescriptors"),
];

/** Sum `value` per label set (pools of one node share a label set for per-node series). */
function sumBy<T>(items: Iterable<T>, key: (x: T) => Labels, value: (x: T) => number): { labels: Labels; value: number }[] {
  const acc = new Map<string, { labels: Labels; value: number }>();
  for (const x of items) {
    const labels = key(x);
    const k = JSON.stringify(labels);
    const cur = acc.get(k);
    if (cur) cur.value += value(x);
    else acc.set(k, { labels, value: value(x) });
  }
  return [...acc.values()];
}

/**
 * A summary with only _sum and _count (no quantiles): pool stats keep totals, not samples, and
 * the hot path stays untouched. rate(_sum)/rate(_count) gives the mean wait.
 */
function waitSummary(ctx: ProxyContext, registry: Registry): void {
  const name = "heliosproxy_pool_wait_seconds";
  const help = "Time clients waited for a server connection (clients served at once are not counted)";
  registry.registerMetric({
    name,
    help,
    type: "summary",
    aggregator: "sum",
    get: async () => {
      const values = [];
      for (const p of ctx.clientPools()) {
        const labels = { node: p.node, database: p.database, user: p.user };
        values.push({ metricName: `${name}_sum`, labels, value: p.stats.totalWaitUs / 1e6 });
        values.push({ metricName: `${name}_count`, labels, value: p.stats.waitCount });
      }
      return { name, help, type: "summary", aggregator: "sum", values };
    },
    reset() {},
  } as unknown as Gauge);
}

/**
 * Request round-trip time through the proxy's servers, per node and the route that chose it
 * (primary or standby), from the pools' sampled histograms.
 */
function latencyHistogram(ctx: ProxyContext, registry: Registry): void {
  const name = "heliosproxy_query_duration_seconds";
  const help = `Request round trip (first message forwarded to ReadyForQuery), sampled 1 in ${LATENCY_SAMPLE_EVERY}`;
  registry.registerMetric({
    name,
    help,
    type: "histogram",
    aggregator: "sum",
    get: async () => {
      const perNode = new Map<string, { role: string; counts: number[]; sum: number; count: number }>();
      for (const p of ctx.nodeStats()) {
        const role = ctx.cluster.node(p.node)?.role ?? "primary";
        const acc = perNode.get(p.node) ?? { role, counts: new Array(LATENCY_BUCKETS.length + 1).fill(0), sum: 0, count: 0 };
        p.stats.latency.cumulative().forEach((c, i) => (acc.counts[i] += c));
        acc.sum += p.stats.latency.sum;
        acc.count += p.stats.latency.count;
        perNode.set(p.node, acc);
      }
      const values = [];
      for (const [node, h] of perNode) {
        const base = { node, route: h.role };
        h.counts.forEach((c, i) =>
          values.push({ metricName: `${name}_bucket`, labels: { ...base, le: i < LATENCY_BUCKETS.length ? String(LATENCY_BUCKETS[i]) : "+Inf" }, value: c }),
        );
        values.push({ metricName: `${name}_sum`, labels: base, value: h.sum });
        values.push({ metricName: `${name}_count`, labels: base, value: h.count });
      }
      return { name, help, type: "histogram", aggregator: "sum", values };
    },
    reset() {},
  } as unknown as Gauge);
}

type Mirror = (name: string, help: string, labelNames: string[], read: () => { labels: Labels; value: number }[]) => unknown;

/** Failover controller and switchover buffer: counts by kind and result, the epoch, the alarm, what is held. */
function haMetrics(ctx: ProxyContext, registry: Registry, mirror: Mirror): void {
  const registers = [registry];
  const history = () => ctx.failover?.history() ?? [];
  mirror("heliosproxy_failovers_total", "Failovers and switchovers that finished since start, by kind, trigger and result", ["kind", "trigger", "result"], () =>
    (ctx.failover?.finished() ?? []).map(({ kind, trigger, result, count }) => ({ labels: { kind, trigger, result }, value: count })),
  );
  mirror("heliosproxy_switchover_buffer_requests_total", "Requests held for the primary while it changed, by outcome", ["outcome"], () => [
    { labels: { outcome: "released" }, value: ctx.buffer.stats.released },
    { labels: { outcome: "refused" }, value: ctx.buffer.stats.refused },
  ]);
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  gauge("heliosproxy_failover_epoch", "Failover epoch: moves on each time the primary changes", () => ctx.cluster.epoch);
  gauge("heliosproxy_failover_alarm", "1 while a failover needs an operator (primary down under policy manual, no safe candidate, etcd unreachable under coordination)", () => (ctx.failover?.alarm || ctx.fleet?.degraded() ? 1 : 0));
  if (ctx.fleet !== null) {
    const fleet = ctx.fleet;
    gauge("heliosproxy_fleet_leader", "1 while this proxy is the acting leader of its fleet ([coordination] backend etcd)", () => (fleet.isLeader ? 1 : 0));
    gauge("heliosproxy_fleet_etcd_reachable", "1 while etcd answers this proxy's keepalives and watch", () => (fleet.degraded() === null ? 1 : 0));
    gauge("heliosproxy_fleet_proxies", "Proxies with a live heartbeat key in etcd, as this proxy last saw them", () => fleet.memberCount());
  }
  gauge("heliosproxy_sync_layout_problems", "Standbys whose first commit after promotion would wait forever (synchronous_standby_names against the topology)", () => ctx.failover?.sync.report().problems.length ?? 0);
  gauge("heliosproxy_sync_wait_alarm", "1 while commits on the primary wait for synchronous replication with no listed standby connected", () => (ctx.failover?.sync.report().alarm ? 1 : 0));
  gauge("heliosproxy_sync_waiting", "Backends on the primary waiting for a synchronous standby now", () => ctx.failover?.sync.report().waiting ?? 0);
  mirror("heliosproxy_failover_requests_cut_total", "Requests on a fenced old primary that never answered, cut after failover.buffer_timeout_secs", [], () => [
    { labels: {}, value: ctx.failover?.requestsCut ?? 0 },
  ]);
  mirror("heliosproxy_sync_waits_ended_total", "Requests ended with 08007 after failover.sync_wait_timeout_secs waiting for synchronous replication", [], () => [
    { labels: {}, value: ctx.failover?.sync.waitsEnded ?? 0 },
  ]);
  gauge("heliosproxy_failover_in_progress", "1 while a failover or switchover runs", () => (ctx.failover?.inProgress ? 1 : 0));
  gauge("heliosproxy_switchover_buffer_held", "Requests waiting for the primary now", () => ctx.buffer.size);
  gauge("heliosproxy_switchover_buffer_max_wait_seconds", "Longest wait of a released request since start", () => ctx.buffer.stats.maxWaitMs / 1000);
  gauge("heliosproxy_failover_last_duration_seconds", "Duration of the last finished failover or switchover", () => {
    const last = history().findLast((r) => r.duration_ms !== null);
    return last ? last.duration_ms! / 1000 : 0;
  });
  if (ctx.replay !== null) {
    const replay = ctx.replay;
    mirror("heliosproxy_session_recoveries_total", "Sessions recovered after a lost server connection or a retried conflict, by outcome (ha-tr)", ["outcome"], () =>
      Object.entries(replay.counts).map(([outcome, value]) => ({ labels: { outcome }, value })),
    );
    gauge("heliosproxy_journal_open_transactions", "Sessions with an open journaled transaction now (ha-tr)", () => replay.open().length);
  }
}

export function createMetrics(ctx: ProxyContext): Registry {
  const registry = new Registry();
  for (const collect of PROCESS_COLLECTORS) collect(registry);
  const registers = [registry];

  new Gauge({
    name: "heliosproxy_build_info",
    help: "Always 1: the running version, build profile and Bun version as labels",
    labelNames: ["version", "profile", "bun_version"],
    registers,
  }).set({ version: VERSION, profile: buildProfile(), bun_version: Bun.version }, 1);

  new Gauge({
    name: "heliosproxy_client_connections",
    help: "Logged-in client connections",
    labelNames: ["database", "user"],
    registers,
    collect() {
      this.reset();
      for (const s of sumBy(ctx.clientPools(), (p) => ({ database: p.database, user: p.user }), (p) => p.clients)) this.set(s.labels, s.value);
    },
  });

  new Gauge({
    name: "heliosproxy_server_connections",
    help: "Server connections by node, pool and state",
    labelNames: ["node", "database", "user", "state"],
    registers,
    collect() {
      this.reset();
      for (const p of ctx.clientPools()) {
        const c = p.counts();
        const base = { node: p.node, database: p.database, user: p.user };
        this.set({ ...base, state: "active" }, c.active);
        this.set({ ...base, state: "idle" }, c.idle);
        this.set({ ...base, state: "connecting" }, c.connecting);
      }
    },
  });

  new Gauge({
    name: "heliosproxy_clients_waiting",
    help: "Clients queued for a server connection",
    labelNames: ["node", "database", "user"],
    registers,
    collect() {
      this.reset();
      for (const p of ctx.clientPools()) this.set({ node: p.node, database: p.database, user: p.user }, p.waiting);
    },
  });

  waitSummary(ctx, registry);

  new Gauge({
    name: "heliosproxy_pool_wait_max_seconds",
    help: "Longest time a client has waited for a server connection since start",
    labelNames: ["node", "database", "user"],
    registers,
    collect() {
      this.reset();
      for (const p of ctx.clientPools()) this.set({ node: p.node, database: p.database, user: p.user }, p.stats.maxWaitUs / 1e6);
    },
  });

  /** A counter that mirrors totals kept elsewhere (set, never incremented here). */
  const mirror = (name: string, help: string, labelNames: string[], read: () => { labels: Labels; value: number }[]) =>
    new Counter({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const s of read()) this.inc(s.labels, s.value);
      },
    });

  // Per node and database, over live pools and the totals of reclaimed ones: these sums only grow.
  const byNodeDb = (value: (p: ReturnType<ProxyContext["nodeStats"]> extends IterableIterator<infer P> ? P : never) => number) => () =>
    sumBy(ctx.nodeStats(), (p) => ({ node: p.node, database: p.database }), value);
  mirror("heliosproxy_queries_total", "Requests answered by servers (ReadyForQuery relayed)", ["node", "database"], byNodeDb((p) => p.stats.queryCount));
  mirror("heliosproxy_transactions_total", "Server leases completed (transactions in transaction mode)", ["node", "database"], byNodeDb((p) => p.stats.xactCount));
  mirror("heliosproxy_query_time_seconds_total", "Time servers spent on client requests (first message to ReadyForQuery)", ["node", "database"],
    byNodeDb((p) => p.stats.queryTimeUs / 1e6));
  mirror("heliosproxy_transaction_time_seconds_total", "Time servers spent in client transactions (first request to ReadyForQuery idle)", ["node", "database"],
    byNodeDb((p) => p.stats.xactTimeUs / 1e6));
  mirror("heliosproxy_bytes_total", "Bytes relayed: in = clients to servers, out = servers to clients", ["node", "database", "direction"], () => [
    ...sumBy(ctx.nodeStats(), (p) => ({ node: p.node, database: p.database, direction: "in" }), (p) => p.stats.bytesIn),
    ...sumBy(ctx.nodeStats(), (p) => ({ node: p.node, database: p.database, direction: "out" }), (p) => p.stats.bytesOut),
  ]);
  mirror("heliosproxy_errors_total", "ErrorResponses relayed to clients, by node, database and SQLSTATE", ["node", "database", "sqlstate"], () => {
    const out: { labels: Labels; value: number }[] = [];
    for (const p of ctx.nodeStats()) for (const [sqlstate, n] of p.stats.errors) out.push({ labels: { node: p.node, database: p.database, sqlstate }, value: n });
    return sumBy(out, (x) => x.labels, (x) => x.value);
  });
  latencyHistogram(ctx, registry);
  mirror("heliosproxy_state_transition_bugs_total", "Impossible client or server connection state transitions refused (each one a bug, logged with both states)", ["connection"], () => [
    { labels: { connection: "client" }, value: transitionBugs.client },
    { labels: { connection: "server" }, value: transitionBugs.server },
  ]);
  mirror("heliosproxy_logins_total", "Client login attempts by result", ["result"], () => [
    { labels: { result: "ok" }, value: ctx.stats.loginsOk },
    { labels: { result: "failed" }, value: ctx.stats.loginsFailed },
    { labels: { result: "refused" }, value: ctx.stats.clientsRefused },
  ]);

  /** One gauge series per node, skipped where the value is unknown (never NaN). */
  const perNode = (name: string, help: string, read: (n: ReturnType<ProxyContext["cluster"]["snapshot"]>[number]) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ["node"],
      registers,
      collect() {
        this.reset();
        for (const n of ctx.cluster.snapshot()) {
          const v = read(n);
          if (v !== null && Number.isFinite(v)) this.set({ node: n.name }, v);
        }
      },
    });

  perNode("heliosproxy_node_up", "1 when the node passes health checks, else 0", (n) => (n.health === "up" ? 1 : 0));
  perNode("heliosproxy_node_drained", "1 when the node is drained (out of rotation)", (n) => (n.drained ? 1 : 0));
  perNode("heliosproxy_node_primary", "1 on the node the proxy sends writes to", (n) => (n.role === "primary" ? 1 : 0));
  perNode("heliosproxy_replication_lag_bytes", "Bytes of WAL the node's replay is behind the primary", (n) => n.lagBytes);
  perNode("heliosproxy_replication_lag_seconds", "Seconds the node's replay is behind the primary", (n) => n.lagSeconds);
  perNode("heliosproxy_node_latency_seconds", "Moving average of probe and query latency", (n) => (n.latencyMs === null ? null : n.latencyMs / 1000));

  perNode("heliosproxy_node_fenced", "1 on an old primary taken out by failover or switchover until it rejoins as a standby", (n) => (n.fenced ? 1 : 0));
  perNode("heliosproxy_node_timeline", "Timeline the node last reported", (n) => n.status?.timeline ?? null);
  haMetrics(ctx, registry, mirror);

  new Gauge({
    name: "heliosproxy_paused",
    help: "1 while the whole proxy is paused (PAUSE without a database, POST /pause)",
    registers,
    collect() {
      this.set(isPaused(ctx) ? 1 : 0);
    },
  });

  pgbouncerMetrics(ctx, registry);
  return registry;
}
