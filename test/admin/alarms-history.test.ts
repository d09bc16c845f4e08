// Alarm board, the cluster's derived alarms, and the server-side history behind the dashboard charts (no servers: state set by hand).

import { expect, test } from "bun:test";
import { AlarmBoard } from "../../src/util/alarms.ts";
import { ProxyContext } from "../../src/core/context.ts";
import { parseConfig } from "../../src/config/load.ts";
import { clusterAlarms } from "../../src/admin/alarms-view.ts";
import { MetricHistory, quantileMs } from "../../src/admin/history.ts";
import { LATENCY_BUCKETS } from "../../src/util/latency.ts";
import { connectionStats, type ConnectionStats } from "../../src/server/connection.ts";
import type { NodeStatus } from "../../src/cluster/cluster.ts";
import type { FailoverController } from "../../src/cluster/failover.ts";
import { SyncWatch } from "../../src/cluster/sync-watch.ts";

test("alarm board: raising again keeps the start, reconcile clears only its own prefix, critical first then oldest", () => {
  const b = new AlarmBoard();
  b.raise({ key: "redis_down", severity: "warning", title: "Redis unreachable", detail: "a" }, 1000);
  b.raise({ key: "redis_down", severity: "warning", title: "Redis unreachable", detail: "b" }, 5000);
  b.reconcile("cluster:", [{ key: "cluster:no_primary", severity: "critical", title: "No primary", detail: "" }], 6000);
  expect(b.list().map((a) => [a.key, a.since, a.detail])).toEqual([
    ["cluster:no_primary", 6000, ""],
    ["redis_down", 1000, "b"],
  ]);
  b.reconcile("cluster:", [], 7000);
  expect(b.list().map((a) => a.key)).toEqual(["redis_down"]);
  b.clear("redis_down");
  expect(b.list()).toEqual([]);
});

test("percentiles from the latency buckets: interpolated inside the bucket, null when nothing was timed", () => {
  const counts = new Array(LATENCY_BUCKETS.length + 1).fill(0);
  expect(quantileMs(counts, 0.5)).toBeNull();
  counts[3] = 100; // (0.5 ms, 1 ms]
  expect(quantileMs(counts, 0.5)).toBeCloseTo(0.75, 6);
  counts[9] = 100; // (50 ms, 100 ms]
  expect(quantileMs(counts, 0.99)).toBeCloseTo(99, 6);
  counts[LATENCY_BUCKETS.length] = 1000; // above 10 s: the last bound
  expect(quantileMs(counts, 0.99)).toBe(10_000);
});

const stats = (): ConnectionStats => connectionStats();

test("history: one point per step from the pools' counter differences; a new or reset pool counts from zero; an hour kept", () => {
  const a = { stats: stats() };
  const b = { stats: stats() };
  let pools = [a];
  const h = new MetricHistory(() => pools, 5000);
  a.stats.queryCount = 40; // before the baseline: not counted
  h.sample(1_000_000);
  expect(h.list()).toEqual([]);
  a.stats.queryCount = 140;
  for (let i = 0; i < 10; i++) a.stats.latency.observe(0.002);
  a.stats.errors.set("22012", 3);
  pools = [a, b];
  b.stats.queryCount = 50;
  b.stats.errors.set("42P01", 1);
  h.sample(1_005_000);
  expect(h.list()).toHaveLength(1);
  const p = h.list()[0]!;
  expect(p.qps).toBe(30); // (100 + 50) / 5 s
  expect(p.timed).toBe(10);
  expect(p.p50_ms).toBeGreaterThan(1);
  expect(p.p50_ms).toBeLessThanOrEqual(2.5);
  expect(p.errors).toEqual({ "22012": 3, "42P01": 1 });
  // Pool b replaced by a fresh one with the same numbers below the old: counted from zero.
  b.stats = stats();
  b.stats.queryCount = 10;
  h.sample(1_010_000);
  expect(h.list()[1]).toMatchObject({ qps: 2, errors: {}, timed: 0, p50_ms: null });
  for (let i = 0; i < 800; i++) h.sample(1_015_000 + i * 5000);
  expect(h.list()).toHaveLength(720);
  expect(h.list()[0]!.t).toBeGreaterThan(h.list()[719]!.t - 3_600_000);
});

const CONFIG = `
[proxy]
listen_address = "127.0.0.1:6432"
admin_address = "127.0.0.1:9090"
[[nodes]]
name = "node1"
host = "127.0.0.1"
port = 5432
role = "primary"
[[nodes]]
name = "node2"
host = "127.0.0.1"
port = 5433
role = "standby"
sync = true
[[nodes]]
name = "node3"
host = "127.0.0.1"
port = 5434
role = "standby"
`;

const standby = (lsn: number, applicationName: string, syncNames = ""): NodeStatus => ({
  inRecovery: true,
  timeline: 1,
  systemId: "7",
  walLsn: lsn,
  receiveLsn: lsn,
  replayLsn: lsn,
  replicas: [],
  applicationName,
  syncNames,
});

test("cluster alarms: a down standby, a synchronous layout that would hang (the controller's sync watch), no safe candidate, then no primary", () => {
  const ctx = new ProxyContext(parseConfig(CONFIG, "t.toml"));
  const c = ctx.cluster;
  const sync = new SyncWatch({ cluster: () => c, mode: () => "keep", waitTimeoutSecs: () => 0, endRequest: () => false });
  ctx.failover = { alarm: "", sync } as unknown as FailoverController;
  c.setStatus("node1", {
    inRecovery: false,
    timeline: 1,
    systemId: "7",
    walLsn: 1000,
    receiveLsn: null,
    replayLsn: null,
    replicas: [
      { applicationName: "node2", syncState: "sync", flushLsn: 1000, replayLsn: 1000 },
      { applicationName: "node3", syncState: "async", flushLsn: 900, replayLsn: 900 },
    ],
  });
  // node2, once promoted, would wait for node3 as its synchronous standby.
  c.setStatus("node2", standby(1000, "node2", "FIRST 1 (node3)"));
  c.setStatus("node3", standby(900, "node3"));
  const keys = () => clusterAlarms(ctx).map((a) => `${a.severity} ${a.key}`);
  expect(keys()).toEqual([]);

  c.setHealth("node3", "down", "connection refused");
  expect(keys()).toEqual(["warning cluster:down:node3", "warning cluster:sync_hang"]);
  const hang = clusterAlarms(ctx).find((a) => a.key === "cluster:sync_hang")!;
  expect(hang.title).toBe("Synchronous replication would hang after a failover");
  expect(hang.detail).toBe(sync.report().problems.join("; "));
  expect(hang.detail).toContain("node2");
  expect(clusterAlarms(ctx).find((a) => a.key === "cluster:down:node3")!.detail).toBe("connection refused; it takes no reads and its lag and latency are stale.");

  c.setHealth("node2", "down", "timeout");
  expect(keys()).toEqual(["warning cluster:down:node2", "warning cluster:down:node3", "critical cluster:no_candidate"]);
  expect(clusterAlarms(ctx).find((a) => a.key === "cluster:no_candidate")!.detail).toBe("If node1 failed now no standby could take over (node2: down: timeout; node3: down: connection refused).");

  c.setHealth("node1", "down", "connection refused");
  expect(keys()).toContain("critical cluster:primary_down");
  expect(keys()).not.toContain("critical cluster:no_candidate");
});
